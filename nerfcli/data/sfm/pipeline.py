"""`nerf sfm`: a folder of photos (or a video) -> camera poses, in-process with pycolmap.

Stages: (frames from the video) -> check the photos -> SIFT extraction -> matching (exhaustive,
sequential, or sequence: sfm.sequence) -> incremental mapping -> the pose checks (sfm.quality:
a suspect model is refused before anything is written) -> write. The results are
    SCENE/sparse/0/          the largest reconstruction, COLMAP binary (COLMAP 4 also writes
                             rigs.bin and frames.bin beside cameras, images and points3D)
    SCENE/poses_bounds.npy   through nerfcli.data.formats.colmap, the code of `colmap2poses`
    SCENE/transforms.json    with --transforms (nerfstudio's convention, see sfm_transforms)
    SCENE/colmap/            database.db and sfm.log (COLMAP's own log)
Everything is built in a temp folder inside SCENE and renamed into place at the end (see
sfm_inputs.commit): a failed or interrupted run leaves the scene as it was. Too few registered
photos is an error, not a partial result. pycolmap is imported lazily (sfm_colmap).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nerfcli.data.formats import colmap, colmap_io
from nerfcli.data.sfm import colmap as sfm_colmap
from nerfcli.data.sfm.colmap import CAMERA_MODEL_CHOICES, ColmapSettings, ProgressFn
from nerfcli.data.sfm.inputs import (
    FRAMES_RECORD,
    Targets,
    check_photos,
    check_targets,
    commit,
    listing,
    make_targets,
    write_frames_record,
)
from nerfcli.data.sfm.mapping import map_checked
from nerfcli.data.sfm.quality import assess_colmap_model, refuse_suspect
from nerfcli.data.sfm.sequence import default_matcher, match_sequence
from nerfcli.errors import DataError, NerfError

MATCHERS = ("exhaustive", "sequential", "sequence")


@dataclass(frozen=True)
class SfmOptions:
    images: Path | None = None  # default SCENE/images
    video: Path | None = None  # extract frames into SCENE/images first
    fps: float = 2.0
    sharpest: bool = False
    matcher: str | None = None  # None: sfm.sequence.default_matcher
    camera_model: str = "SIMPLE_PINHOLE"
    max_image_size: int | None = None  # None: COLMAP's default (3200)
    threads: int | None = None  # None: every core
    transforms: bool = False
    prune_images: bool = False
    force: bool = False
    accept_suspect: bool = False  # keep a result whose pose checks fail (sfm.quality)


@dataclass
class ModelSummary:
    num_images: int
    images: list[str]  # registered names, in name order


@dataclass
class SfmResult:
    """What `nerf sfm --json` prints."""

    scene: str
    images_dir: str
    num_images: int
    num_registered: int
    registered_fraction: float
    unregistered_images: list[str]
    models: list[ModelSummary]  # largest first; the first is the one written
    matcher: str
    camera_model: str
    num_cameras: int
    width: int
    height: int
    focal: float  # mean focal length over the cameras, pixels
    num_points: int
    mean_reprojection_error: float  # pixels
    seconds: dict[str, float]  # per stage, and "total"
    written: dict[str, str]
    video: dict | None
    moved_to: str | None
    warnings: list[str] = field(default_factory=list)
    pycolmap: str | None = None
    quality: dict | None = None  # pose_checks.PoseQuality.to_json() of the written model
    sequence_matching: dict | None = None  # sfm.sequence.SequenceMatching with that matcher


@contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = round(time.perf_counter() - started, 3)


def _check_options(options: SfmOptions) -> None:
    if options.matcher is not None and options.matcher not in MATCHERS:
        raise NerfError(f"--matcher must be one of {', '.join(MATCHERS)}, got {options.matcher!r}")
    if options.camera_model not in CAMERA_MODEL_CHOICES:
        raise NerfError(
            f"--camera-model must be one of {', '.join(CAMERA_MODEL_CHOICES)}, "
            f"got {options.camera_model!r}"
        )
    if options.video is not None and options.images is not None:
        raise NerfError("--video writes its frames into SCENE/images; do not pass --images too")
    if options.max_image_size is not None and options.max_image_size < 64:
        raise NerfError(
            f"--max-image-size must be at least 64 pixels, got {options.max_image_size}"
        )
    if options.threads is not None and options.threads < 1:
        raise NerfError(f"--threads must be at least 1, got {options.threads}")


def run_sfm(
    scene: str | Path, options: SfmOptions = SfmOptions(), on_progress: ProgressFn | None = None
) -> SfmResult:
    """Run the whole pipeline on `scene` (see the module docstring); `on_progress(stage, done,
    total)` reports stages "frames", "check", "extract", "match", "map", "write"."""
    sfm_colmap.import_pycolmap()  # the install hint comes before anything else
    _check_options(options)
    scene = Path(scene)
    video = options.video is not None
    targets = make_targets(scene, options.transforms, video)
    check_targets(targets, options.force)
    image_dir = targets.images if video else Path(options.images or scene / "images")
    created = video and not scene.exists()
    if created:
        try:
            scene.mkdir(parents=True)
        except OSError as exc:
            raise NerfError(f"{scene}: cannot create ({exc.strerror or exc})") from None
    elif not scene.is_dir():
        raise DataError(
            f"{scene}: no such folder; pass the scene folder that holds images/ (with --images, "
            "create it first: the results are written there)"
        )
    try:
        return _run_in_build(targets, image_dir, options, on_progress or (lambda *args: None))
    except BaseException:
        if created and scene.is_dir() and not any(scene.iterdir()):
            scene.rmdir()  # a failed --video run leaves no empty scene folder behind
        raise


def _run_in_build(
    targets: Targets, image_dir: Path, options: SfmOptions, report: ProgressFn
) -> SfmResult:
    """Run in a temp folder inside the scene (same filesystem: renames are atomic), removed after."""
    try:
        build = Path(tempfile.mkdtemp(prefix=".sfm-build.", dir=targets.scene))
    except OSError as exc:
        raise NerfError(f"{targets.scene}: cannot write here ({exc.strerror or exc})") from None
    try:
        return _run(build, targets, image_dir, options, report)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _run(
    build: Path, targets: Targets, image_dir: Path, options: SfmOptions, report: ProgressFn
) -> SfmResult:
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    warnings: list[str] = []
    video_doc = None
    work_images = image_dir
    if options.video is not None:
        from nerfcli.data.sfm.video import extract_frames

        work_images = build / "images"
        with _timed(seconds, "frames"):
            frames = extract_frames(
                Path(options.video),
                work_images,
                options.fps,
                options.sharpest,
                lambda done, total: report("frames", done, total),
            )
        video_doc = {
            "source": str(frames.source),
            "video_fps": frames.video_fps,
            "fps": frames.fps,
            "sharpest": frames.sharpest,
            "decoded": frames.decoded,
            "frames": len(frames.names),
        }
    shared = options.camera_model in sfm_colmap.SHARED_CAMERA_MODELS
    with _timed(seconds, "check"):
        photos = check_photos(
            work_images, shared, lambda d, t: report("check", d, t), options.video is not None
        )
    warnings += photos.warnings
    matcher = options.matcher or default_matcher(photos.names, options.video is not None)
    (build / "colmap").mkdir()
    settings = ColmapSettings(
        database=build / "colmap" / "database.db",
        image_dir=work_images,
        image_names=photos.names,
        camera_model=options.camera_model,
        matcher=matcher,
        max_image_size=options.max_image_size,
        threads=options.threads,
    )
    matched: dict = {}  # the sequence matcher's summary
    reconstructions, chosen = _reconstruct(
        settings, build, seconds, report, matched, image_dir, warnings
    )
    with _timed(seconds, "write"):
        report("write", 0, 1)
        result = _write(chosen, build, targets, image_dir, work_images, options, warnings, matcher)
        report("write", 1, 1)
    seconds["total"] = round(time.perf_counter() - started, 3)
    result.update(seconds=seconds, matcher=matcher, video=video_doc, num_images=len(photos.names))
    result.update(matched)
    return _summary(result, reconstructions, targets, image_dir, options, warnings)


def _reconstruct(
    settings: ColmapSettings,
    build: Path,
    seconds: dict[str, float],
    report: ProgressFn,
    matched: dict,
    image_dir: Path,
    warnings: list[str],
) -> tuple[list[Any], Any]:
    """Features, matches and the mapping: (the reconstructions, largest first, and the one
    to write: mapping.map_checked's)."""
    log_prefix = build / "colmap" / "sfm.log."
    total = len(settings.image_names)
    with sfm_colmap.colmap_log(log_prefix):
        with _timed(seconds, "extract"):
            report("extract", 0, total)
            sfm_colmap.extract_features(settings, report)
        with _timed(seconds, "match"):
            report("match", 0, None)
            if settings.matcher == "sequence":
                matched["sequence_matching"] = asdict(match_sequence(settings))
            else:
                sfm_colmap.match_features(settings)
            report("match", 1, 1)
        with _timed(seconds, "map"):
            report("map", 0, total)
            reconstructions = sfm_colmap.incremental_mapping(settings, build / "mapper", report)
            report("map", total, total)
        found = map_checked(reconstructions, settings, build, seconds, report, image_dir, warnings)
    sfm_colmap.collect_log(log_prefix, build / "colmap" / "sfm.log")
    return found


def _write(
    chosen: Any,
    build: Path,
    targets: Targets,
    image_dir: Path,
    work_images: Path,
    options: SfmOptions,
    warnings: list[str],
    matcher: str,
) -> dict:
    """Convert and write everything in `build`, then rename it into place (see commit)."""
    from nerfcli.data.sfm.transforms import image_prefix, write_transforms

    sparse = build / "sparse0"
    sparse.mkdir()
    chosen.write_binary(str(sparse))
    model = colmap_io.read_model(sparse, "bin")
    poses = colmap.colmap_to_poses_bounds(model)  # the conversion `colmap2poses` uses
    quality = assess_colmap_model(model)  # a failed check stops here, before the commit
    suspect = refuse_suspect(quality, image_dir, matcher, options.accept_suspect)
    warnings += [suspect] if suspect else []
    warnings += _pose_warnings(model, poses, options)
    colmap.save_poses_bounds(build / "poses_bounds.npy", poses.poses_bounds)
    moves = [(build / "colmap" / "database.db", targets.database)]
    if (build / "colmap" / "sfm.log").is_file():
        moves.append((build / "colmap" / "sfm.log", targets.log))
    if targets.images is not None:
        record = build / "colmap" / FRAMES_RECORD
        names = sorted(p.name for p in work_images.iterdir())
        write_frames_record(record, Path(options.video), options.fps, options.sharpest, names)
        moves += [(record, targets.colmap_dir / FRAMES_RECORD), (work_images, targets.images)]
    moves.append((sparse, targets.sparse))
    if targets.transforms is not None:
        prefix = image_prefix(image_dir, targets.transforms.parent)
        if prefix.startswith(".."):
            warnings.append(
                f"transforms.json names photos outside {targets.scene} ({prefix}/); nerfcli's "
                "loader reads photos inside the scene folder only, so move them into it"
            )
        write_transforms(model, build / "transforms.json", prefix)
        moves.append((build / "transforms.json", targets.transforms))
    moves.append((build / "poses_bounds.npy", targets.poses_bounds))

    registered = set(poses.names)
    unregistered = colmap.unregistered_images(work_images, poses.names)
    destination = image_dir.parent / colmap.UNREGISTERED_FOLDER
    if options.prune_images and unregistered:
        colmap.check_move_aside(unregistered, destination)  # fail before anything is replaced
    commit(moves, build / "trash")
    moved_to = None
    if options.prune_images and unregistered:
        colmap.move_aside([image_dir / p.name for p in unregistered], destination)
        moved_to = str(destination)
    elif unregistered:
        warnings.append(
            f"{len(unregistered)} photo(s) were not registered and have no pose: "
            f"{listing([p.name for p in unregistered])}; the folder loads for training only once "
            f"they are moved aside: `nerf colmap2poses {targets.scene} --prune-images --force` "
            "does that without running SfM again"
        )
    return {
        "model": model,
        "poses": poses,
        "registered": sorted(registered),
        "unregistered": [p.name for p in unregistered],
        "moved_to": moved_to,
        "quality": quality.to_json(),
    }


def _pose_warnings(model, poses, options: SfmOptions) -> list[str]:
    """The conversion's warnings; with a camera per photo, one line instead of one per camera
    (the user asked for per-photo intrinsics and distortion)."""
    if options.camera_model in sfm_colmap.SHARED_CAMERA_MODELS:
        return list(poses.warnings)
    per_camera = set(colmap.camera_warnings(model))
    focals = [float(camera.params[0]) for camera in model.cameras]
    return [w for w in poses.warnings if w not in per_camera] + [
        f"{len(model.cameras)} {options.camera_model} cameras, one per photo (focal "
        f"{min(focals):.6g} to {max(focals):.6g} px, with distortion): poses_bounds.npy keeps "
        f"only the first camera's focal and no distortion; transforms.json (--transforms) "
        "keeps each photo's; --camera-model SIMPLE_PINHOLE gives one shared camera"
    ]


def _summary(
    result: dict,
    reconstructions: list[Any],
    targets: Targets,
    image_dir: Path,
    options: SfmOptions,
    warnings: list[str],
) -> SfmResult:
    model, poses, chosen = result["model"], result["poses"], reconstructions[0]
    used = {image.camera_id for image in model.images}
    cameras = [camera for camera in model.cameras if camera.camera_id in used]
    written = {
        "sparse": str(targets.sparse),
        "poses_bounds": str(targets.poses_bounds),
        "database": str(targets.database),
        "log": str(targets.log),
    }
    if targets.transforms is not None:
        written["transforms"] = str(targets.transforms)
    num_images = result["num_images"]
    return SfmResult(
        scene=str(targets.scene),
        images_dir=str(image_dir),
        num_images=num_images,
        num_registered=poses.num_views,
        registered_fraction=round(poses.num_views / num_images, 4),
        unregistered_images=result["unregistered"],
        models=[
            ModelSummary(rec.num_reg_images(), sfm_colmap.registered_names(rec))
            for rec in reconstructions
        ],
        matcher=result["matcher"],
        camera_model=options.camera_model,
        num_cameras=len(cameras),
        width=poses.width,
        height=poses.height,
        focal=float(sum(float(c.params[0]) for c in cameras) / len(cameras)),
        num_points=poses.num_points,
        mean_reprojection_error=float(chosen.compute_mean_reprojection_error()),
        seconds=result["seconds"],
        written=written,
        video=result["video"],
        moved_to=result["moved_to"],
        warnings=warnings,
        pycolmap=sfm_colmap.pycolmap_version(),
        quality=result["quality"],
        sequence_matching=result.get("sequence_matching"),
    )
