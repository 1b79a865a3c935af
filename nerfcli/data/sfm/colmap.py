"""The three pycolmap stages of `nerf sfm`: SIFT extraction, matching, incremental mapping.

pycolmap is an optional extra (`pip install 'nerfcli[sfm]'`), imported only inside these
functions, so the rest of the tool works without it. Each call runs in a worker thread (pycolmap
releases the GIL) while the calling thread polls for progress and stays responsive to Ctrl-C,
which cancels the running stage through pycolmap's CancellationToken. COLMAP's own log (glog)
goes to one file in the build folder, never to the terminal: the CLI prints one line per error.
"""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nerfcli.errors import DataError, NerfError

INSTALL_HINT = "pip install 'nerfcli[sfm]'"
EXTRACT_BATCH = 8  # images per extract_features call: the progress bar's step
POLL_SECONDS = 0.2
SEED = 0  # COLMAP's RANSAC and mapper seeds: reruns give the same model (up to threading)

# Shared-camera models get one camera for the whole capture (LLFF stores one); OPENCV gets one
# camera per photo, as transforms.json can carry per-frame intrinsics and distortion.
SHARED_CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL")
PER_VIEW_CAMERA_MODELS = ("OPENCV",)
CAMERA_MODEL_CHOICES = SHARED_CAMERA_MODELS + PER_VIEW_CAMERA_MODELS

ProgressFn = Callable[[str, int, "int | None"], None]  # (stage, done, total or None)


def import_pycolmap() -> Any:
    """The pycolmap module, or a NerfError saying how to install it."""
    try:
        import pycolmap
    except ImportError:
        raise NerfError(
            "`nerf sfm` needs pycolmap (COLMAP's Python bindings, CPU SIFT included), which is "
            f"not installed: run pip install pycolmap, or {INSTALL_HINT}; the other commands "
            "work without it"
        ) from None
    return pycolmap


def pycolmap_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("pycolmap")
    except Exception:  # not installed, or installed without metadata
        return None


@dataclass(frozen=True)
class ColmapSettings:
    """What the stages need; built by nerfcli.data.sfm from the user's options."""

    database: Path
    image_dir: Path
    image_names: list[str]  # relative to image_dir, in name order
    camera_model: str  # one of CAMERA_MODEL_CHOICES
    matcher: str  # "exhaustive" or "sequential"
    max_image_size: int | None
    threads: int | None  # None: every core

    @property
    def shared_camera(self) -> bool:
        return self.camera_model in SHARED_CAMERA_MODELS


@contextmanager
def colmap_log(log_prefix: Path) -> Iterator[None]:
    """Send COLMAP's log to `log_prefix`<timestamp> (glog names it) and nowhere else."""
    pycolmap = import_pycolmap()
    logging = pycolmap.logging
    saved = (logging.alsologtostderr, logging.logtostderr, logging.stderrthreshold)
    logging.alsologtostderr = False
    logging.logtostderr = False
    logging.stderrthreshold = 3  # only FATAL, which aborts anyway
    for level in (logging.WARNING, logging.ERROR, logging.FATAL):
        logging.set_log_destination(level, "")  # INFO's file already holds every severity
    logging.set_log_destination(logging.INFO, str(log_prefix))
    try:
        yield
    finally:
        logging.set_log_destination(logging.INFO, "")  # closes the file
        logging.alsologtostderr, logging.logtostderr, logging.stderrthreshold = saved


def collect_log(log_prefix: Path, destination: Path) -> Path | None:
    """Concatenate the file(s) glog wrote under `log_prefix` into `destination`."""
    parts = sorted(glob.glob(glob.escape(str(log_prefix)) + "*"))
    if not parts:
        return None
    with open(destination, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                out.write(handle.read())
            os.unlink(part)
    return destination


def run_cancellable(
    what: str, call: Callable[[Any], Any], poll: Callable[[], None] | None = None
) -> Any:
    """Run `call(token)` in a worker thread; Ctrl-C cancels it and re-raises KeyboardInterrupt.

    pycolmap's failures (ValueError/RuntimeError from its checks) become a DataError naming the
    stage, so the CLI prints one line instead of a traceback.
    """
    pycolmap = import_pycolmap()
    token = pycolmap.CancellationToken()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = call(token)
        except BaseException as exc:  # handed to the calling thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"pycolmap-{what}", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(POLL_SECONDS)
            if poll is not None:
                poll()
    except KeyboardInterrupt:
        token.cancel()
        worker.join()
        raise
    error = outcome.get("error")
    if error is not None:
        if isinstance(error, NerfError):
            raise error
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DataError(f"pycolmap {what} failed: {reason}") from None
    return outcome.get("value")


def _threads(threads: int | None) -> int:
    return -1 if threads is None else int(threads)


def extract_features(settings: ColmapSettings, on_progress: ProgressFn | None = None) -> None:
    """Create the database, import the photos (one shared camera or one per photo) and extract
    SIFT features, EXTRACT_BATCH photos per call so the progress bar moves."""
    pycolmap = import_pycolmap()
    database = str(settings.database)
    pycolmap.Database.open(database).close()  # an empty database with COLMAP's tables
    camera_mode = (
        pycolmap.CameraMode.SINGLE if settings.shared_camera else pycolmap.CameraMode.PER_IMAGE
    )
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = settings.camera_model
    run_cancellable(
        "image import",
        lambda token: pycolmap.import_images(
            database,
            str(settings.image_dir),
            camera_mode=camera_mode,
            image_names=settings.image_names,
            options=reader,
        ),
    )
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = _threads(settings.threads)
    if settings.max_image_size is not None:
        extraction.max_image_size = int(settings.max_image_size)
    names = settings.image_names
    for start in range(0, len(names), EXTRACT_BATCH):
        batch = names[start : start + EXTRACT_BATCH]
        run_cancellable(
            "feature extraction",
            lambda token, batch=batch: pycolmap.extract_features(
                database,
                str(settings.image_dir),
                image_names=batch,
                camera_mode=camera_mode,
                reader_options=reader,
                extraction_options=extraction,
                cancellation_token=token,
            ),
        )
        if on_progress is not None:
            on_progress("extract", min(start + EXTRACT_BATCH, len(names)), len(names))


@dataclass(frozen=True)
class DatabaseStats:
    num_images: int
    num_keypoints: dict[str, int]  # per image name
    num_verified_pairs: int


def database_stats(database: Path) -> DatabaseStats:
    pycolmap = import_pycolmap()
    db = pycolmap.Database.open(str(database))
    try:
        images = db.read_all_images()
        keypoints = {
            image.name: int(db.num_keypoints_for_image(image.image_id)) for image in images
        }
        return DatabaseStats(len(images), keypoints, int(db.num_verified_image_pairs()))
    finally:
        db.close()


def match_features(settings: ColmapSettings) -> None:
    """Exhaustive (every pair) or sequential (each photo with its next ones in name order)."""
    pycolmap = import_pycolmap()
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = _threads(settings.threads)
    database = str(settings.database)
    if settings.matcher == "exhaustive":
        run_cancellable(
            "exhaustive matching",
            lambda token: pycolmap.match_exhaustive(
                database, matching_options=matching, cancellation_token=token
            ),
        )
        return
    pairing = pycolmap.SequentialPairingOptions()
    pairing.num_threads = _threads(settings.threads)
    run_cancellable(
        "sequential matching",
        lambda token: pycolmap.match_sequential(
            database, matching_options=matching, pairing_options=pairing, cancellation_token=token
        ),
    )


def incremental_mapping(
    settings: ColmapSettings,
    output: Path,
    on_progress: ProgressFn | None = None,
    seed: int = SEED,
) -> list[Any]:
    """COLMAP's incremental mapper, seeded; the reconstructions it found, largest first."""
    pycolmap = import_pycolmap()
    pycolmap.set_random_seed(seed)
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = _threads(settings.threads)
    options.random_seed = seed
    output.mkdir(parents=True, exist_ok=True)
    total = len(settings.image_names)
    registered = [0]

    def next_image() -> None:
        registered[0] += 1

    def poll() -> None:
        if on_progress is not None:
            on_progress("map", min(registered[0], total), total)

    models = run_cancellable(
        "incremental mapping",
        lambda token: pycolmap.incremental_mapping(
            str(settings.database),
            str(settings.image_dir),
            str(output),
            options=options,
            next_image_callback=next_image,
            cancellation_token=token,
        ),
        poll=poll,
    )
    reconstructions = list((models or {}).values())
    return sorted(reconstructions, key=lambda rec: -rec.num_reg_images())


def registered_names(reconstruction: Any) -> list[str]:
    """Names of the photos a reconstruction registered, in name order."""
    images = reconstruction.images
    return sorted(images[image_id].name for image_id in reconstruction.reg_image_ids())
