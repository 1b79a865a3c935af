"""Shared fixtures: paths to the real captures (skipped with a reason when absent) and a tiny
LLFF scene written from known cameras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real capture {name!r} not found at {path} (CI and the team have ../shared)")
    return path


@pytest.fixture
def fern_dir() -> Path:
    return _shared("fern")


@pytest.fixture
def cup_dir() -> Path:
    return _shared("cup")


def look_at_stored(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """A 3x4 c2w in the stored LLFF [down, right, back] column convention."""
    back = position - target
    back = back / np.linalg.norm(back)
    right = np.cross(np.array([0.0, 1.0, 0.0]), back)
    right = right / np.linalg.norm(right)
    up = np.cross(back, right)
    return np.stack([-up, right, back, position], 1)


def write_llff(
    root: Path,
    n: int = 6,
    height: int = 24,
    width: int = 32,
    focal: float = 30.0,
    factor_folder: int | None = None,
    with_images: bool = True,
    seed: int = 0,
) -> Path:
    """A small forward-facing LLFF capture on disk; returns the scene folder."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        pos = np.array([0.3 * np.cos(k), 0.2 * np.sin(k), 4.0]) + rng.normal(0, 0.01, 3)
        pose = look_at_stored(pos, np.array([0.0, 0.0, 0.0]))
        hwf = np.array([[height], [width], [focal]])
        rows.append(np.concatenate([np.concatenate([pose, hwf], 1).ravel(), [2.0, 8.0]]))
    np.save(root / "poses_bounds.npy", np.array(rows))
    if with_images:
        import imageio.v3 as iio

        folder = root / ("images" if factor_folder is None else f"images_{factor_folder}")
        folder.mkdir(exist_ok=True)
        for k in range(n):
            img = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            iio.imwrite(folder / f"img{k:03d}.png", img)
    return root


@pytest.fixture
def tiny_llff(tmp_path: Path) -> Path:
    return write_llff(tmp_path / "tiny")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and do not fight a busy machine for cores).
    Modules opt in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def settings_args(settings: dict) -> list[str]:
    """{'train.lr': 3e-3} -> ['--set', 'train.lr=0.003'] for the CLI."""
    args: list[str] = []
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    return args


# `--set` values of a classic model with 16-wide, 3-deep networks (a skip after layer 1), for
# unit tests that build the model from a config.
SMALL_CLASSIC = [
    "model.name=nerf",
    "model.nerf.netwidth=16",
    "model.nerf.netwidth_fine=16",
    "model.nerf.netdepth=3",
    "model.nerf.netdepth_fine=3",
    "model.nerf.skips=[1]",
]


def tiny_nerf_args(
    width: int = 32,
    depth: int = 4,
    skips: str = "[2]",
    samples: int = 16,
    fine_samples: int | None = None,
    **train,
) -> list[str]:
    """`nerf train` options for a classic NeRF shrunk so a step takes milliseconds; keyword
    arguments add train.KEY=VALUE settings (batch_rays=64, eval_every=0, ...)."""
    settings = {
        "model.nerf.netwidth": width,
        "model.nerf.netwidth_fine": width,
        "model.nerf.netdepth": depth,
        "model.nerf.netdepth_fine": depth,
        "model.nerf.skips": skips,
        "render.n_samples": samples,
        "render.n_importance": samples if fine_samples is None else fine_samples,
        **{f"train.{key}": value for key, value in train.items()},
    }
    return ["--model", "nerf", "--factor", "1", *settings_args(settings)]
