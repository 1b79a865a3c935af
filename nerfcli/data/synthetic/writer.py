"""Writing the generated capture to a folder (LLFF layout, built aside and renamed into place)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nerfcli.data.synthetic.capture import (
    LLFFHOLD,
    make_cameras,
    render_view,
    training_to_stored_axes,
)
from nerfcli.data.synthetic.raycast import SceneSpec
from nerfcli.data.synthetic.still_life import scene_spec
from nerfcli.data.synthetic.symmetric import symmetric_spec, walk_cameras
from nerfcli.errors import ConfigError, NerfError
from nerfcli.fsutil import current_umask

GENERATOR = "nerfcli.synth"  # kept stable: scenes written by earlier versions say so
GENERATOR_VERSION = 1
FOCAL_PER_WIDTH = 0.875  # focal = 0.875 * width: a 59 degree horizontal field of view
SCENE_FILE = "scene.json"


@dataclass(frozen=True)
class Preset:
    views: int
    height: int
    width: int
    supersample: int  # s x s rays per pixel, averaged (antialiasing)
    textured: bool = False  # "noise" textures everywhere (scene_spec), for SIFT
    layout: str = "forward"  # "forward": the still life; "walk": the symmetric walk-around


PRESETS: dict[str, Preset] = {
    # tests: 16 views at 64 x 48 (views 0, 8 held out); ~0.6 s of CPU to generate
    "small": Preset(views=16, height=48, width=64, supersample=3),
    # `nerf demo`: 25 views at 160 x 120 (views 0, 8, 16, 24 held out); ~2.5 s of CPU
    "demo": Preset(views=25, height=120, width=160, supersample=2),
    # `nerf sfm` tests: 12 views at 256 x 192 with non-repeating texture; ~4 s of CPU
    "sfm": Preset(views=12, height=192, width=256, supersample=2, textured=True),
    # `nerf sfm` on doppelgangers: a symmetric can on a tiled floor, 36 views walking around it
    # (nerfcli.data.synthetic.symmetric); ~15 s of CPU
    "symmetric": Preset(views=36, height=192, width=256, supersample=2, layout="walk"),
}


def _layout(chosen: Preset, seed: int, num_views: int) -> tuple[SceneSpec, np.ndarray, list]:
    """(scene, camera-to-world [N, 3, 4], grid cell of each view) of a preset."""
    if chosen.layout == "walk":
        c2w = walk_cameras(num_views, np.random.default_rng([seed, 2]))
        return symmetric_spec(seed), c2w, [(0, k) for k in range(num_views)]
    c2w, cells = make_cameras(num_views, np.random.default_rng([seed, 2]))
    return scene_spec(seed, textured=chosen.textured), c2w, cells


# ----------------------------------------------------------------------------- the scene folder


@dataclass
class SynthInfo:
    """What make_scene wrote."""

    path: Path
    preset: str
    seed: int
    num_views: int
    height: int
    width: int
    focal: float
    supersample: int
    textured: bool
    near: float  # smallest near bound over the views
    far: float  # largest far bound
    depth_min: float  # true depth range over all pixels
    depth_max: float
    test_views: list[int]  # held out by the default llffhold (8)
    seconds: float  # wall time to render and write

    def to_dict(self) -> dict:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


def _preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown scene preset {name!r}; choose one of: {', '.join(PRESETS)}"
        ) from None


def _check_size(name: str, value: int, low: int, high: int) -> int:
    if not low <= int(value) <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return int(value)


def _looks_generated(folder: Path) -> bool:
    try:
        meta = json.loads((folder / SCENE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("generator") == GENERATOR


def _check_target(out_dir: Path, force: bool) -> None:
    """Refuse to replace anything but an empty folder or (with force) a generated scene."""
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_dir() and not out_dir.is_symlink() and not any(out_dir.iterdir()):
        return
    if not force:
        raise NerfError(
            f"{out_dir}: already exists and is not empty; pass --force to replace it or choose "
            "another folder"
        )
    if out_dir.is_symlink() or not out_dir.is_dir() or not _looks_generated(out_dir):
        raise NerfError(
            f"{out_dir}: exists and is not a generated scene (no {SCENE_FILE} from {GENERATOR}); "
            "--force only replaces generated scenes, so remove it yourself or choose another folder"
        )


def _swap_into_place(built: Path, out_dir: Path) -> None:
    """Rename the finished folder onto out_dir; an old scene there is removed only afterwards."""
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if not out_dir.exists():
        os.replace(built, out_dir)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
    os.replace(out_dir, retired / out_dir.name)
    try:
        os.replace(built, out_dir)
    except OSError:
        os.replace(retired / out_dir.name, out_dir)  # put the old scene back
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


def _build_folder(out_dir: Path) -> Path:
    """An empty folder beside out_dir (same filesystem, so the final rename is atomic)."""
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.build.", dir=out_dir.parent))
        os.chmod(build, 0o777 & ~current_umask())  # mkdtemp makes it private; the scene is not
    except OSError as exc:
        raise NerfError(
            f"{out_dir}: cannot create the scene folder ({exc.strerror or exc})"
        ) from None
    return build


def _render_views(
    build: Path,
    spec: SceneSpec,
    c2w: np.ndarray,
    size: tuple[int, int, float, int],
    on_view: Callable[[int, int], None] | None,
) -> tuple[list[str], np.ndarray, list[float]]:
    """Render every view into build/images and build/depth: (names, bounds [N, 2], depth range)."""
    import imageio.v3 as iio

    height, width, focal, supersample = size
    num_views = c2w.shape[0]
    (build / "images").mkdir()
    (build / "depth").mkdir()
    bounds = np.zeros((num_views, 2))
    depth_range = [np.inf, -np.inf]
    names = []
    for k in range(num_views):
        rgb, depth = render_view(spec, c2w[k], height, width, focal, supersample)
        name = f"image{k:03d}"
        names.append(name + ".png")
        iio.imwrite(build / "images" / f"{name}.png", np.round(rgb * 255.0).astype(np.uint8))
        np.save(build / "depth" / f"{name}.npy", depth.astype(np.float32))
        bounds[k] = 0.9 * depth.min(), 1.1 * depth.max()
        depth_range = [min(depth_range[0], depth.min()), max(depth_range[1], depth.max())]
        if on_view is not None:
            on_view(k + 1, num_views)
    return names, bounds, depth_range


def make_scene(
    out_dir: str | Path,
    preset: str = "small",
    seed: int = 0,
    views: int | None = None,
    height: int | None = None,
    width: int | None = None,
    force: bool = False,
    on_view: Callable[[int, int], None] | None = None,
) -> SynthInfo:
    """Render the generated capture into out_dir (LLFF layout); see the module docstring.

    `views`, `height`, `width` override the preset (focal is 0.875 * width). The folder is built
    beside out_dir and renamed into place; an existing non-empty out_dir is refused unless
    `force`, and even then only a previously generated scene is replaced. `on_view(done, total)`
    is called after each view (progress).
    """
    started = time.perf_counter()
    chosen = _preset(preset)
    num_views = _check_size("views", chosen.views if views is None else views, 2, 400)
    height = _check_size("height", chosen.height if height is None else height, 8, 2048)
    width = _check_size("width", chosen.width if width is None else width, 8, 2048)
    focal = FOCAL_PER_WIDTH * width
    supersample = chosen.supersample

    out_dir = Path(out_dir)
    _check_target(out_dir, force)
    build = _build_folder(out_dir)
    spec, c2w, cells = _layout(chosen, seed, num_views)
    try:
        size = (height, width, focal, supersample)
        names, bounds, depth_range = _render_views(build, spec, c2w, size, on_view)
        hwf = np.broadcast_to(np.array([height, width, focal], dtype=np.float64), (num_views, 3))
        stored = np.concatenate([training_to_stored_axes(c2w), hwf[:, :, None]], 2)  # [N, 3, 5]
        np.save(build / "poses_bounds.npy", np.concatenate([stored.reshape(-1, 15), bounds], 1))
        test_views = list(range(0, num_views, LLFFHOLD))
        meta = {
            "generator": GENERATOR,
            "version": GENERATOR_VERSION,
            "preset": preset,
            "seed": int(seed),
            "views": num_views,
            "height": height,
            "width": width,
            "focal": focal,
            "supersample": supersample,
            "textured": chosen.textured,
            "depth": "z-depth of the pixel-centre ray (distance along the viewing axis)",
            "pose_convention": "poses_bounds.npy rotation columns [down, right, back]",
            "test_views": test_views,
            "cameras": [
                {"image": name, "grid_row": int(r), "grid_column": int(c)}
                for name, (r, c) in zip(names, cells, strict=True)
            ],
            **spec.to_json(),
        }
        (build / SCENE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        _swap_into_place(build, out_dir)
    except OSError as exc:
        raise NerfError(f"{out_dir}: cannot write the scene ({exc.strerror or exc})") from None
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    return SynthInfo(
        path=out_dir,
        preset=preset,
        seed=int(seed),
        num_views=num_views,
        height=height,
        width=width,
        focal=float(focal),
        supersample=supersample,
        textured=chosen.textured,
        near=float(bounds[:, 0].min()),
        far=float(bounds[:, 1].max()),
        depth_min=float(depth_range[0]),
        depth_max=float(depth_range[1]),
        test_views=test_views,
        seconds=round(time.perf_counter() - started, 3),
    )


def load_spec(scene_dir: str | Path) -> SceneSpec:
    """The SceneSpec of a generated scene folder (rebuilt from the seed in its scene.json)."""
    path = Path(scene_dir) / SCENE_FILE
    try:
        meta = json.loads(path.read_text())
        seed = int(meta["seed"])
        textured = bool(meta.get("textured", False))
        walk = PRESETS.get(str(meta.get("preset")), PRESETS["small"]).layout == "walk"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise NerfError(
            f"{path}: not a generated scene description; regenerate with `nerf make-scene`"
        ) from None
    return symmetric_spec(seed) if walk else scene_spec(seed, textured=textured)
