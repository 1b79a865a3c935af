"""Hostile inputs: every file nerfcli reads either loads correctly or raises our error type
(NerfError or a subclass) with a one-line message; never another exception, a traceback at the
CLI, a hang or a half-written output.

Covered here: poses_bounds.npy through the whole scene loader (random arrays of any shape and
dtype, extreme values, damaged headers), images (every PNG/JPEG flavour, damaged or not), YAML
configs (random text and documents, through build_config, the CLI and a one-step training run),
checkpoints (damaged files, random payloads, hand-edited values, a malicious pickle) and camera
path files. COLMAP files are fuzzed in test_colmap.py; the poses_bounds parser's own
corruptions (truncation, byte flips, content checks) in test_llff.py.
Examples are bounded (max_examples 15-50 each); the file runs in well under a minute.
"""

from __future__ import annotations

import ast
import io
import shutil
import struct
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.data.formats.llff import load_llff_data
from nerfcli.data.scene import Scene
from nerfcli.errors import CheckpointError, ConfigError, DataError, NerfError
from nerfcli.evaluation.video import load_path_file
from nerfcli.models.config import Config, build_config
from nerfcli.models.registry import build_model
from nerfcli.training.checkpoint import load_checkpoint, restore_model
from tests.conftest import look_at_stored, tiny_nerf_args, write_llff

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


def fuzz(max_examples: int) -> settings:
    """Bounded examples, no deadline (file and process work varies with machine load)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


TINY = tiny_nerf_args(16, 2, "[]", 8, batch_rays=32, eval_every=0, ckpt_every=0)


@contextmanager
def fresh_dir():
    """A new folder per hypothesis example (tmp_path is shared by all examples of a test)."""
    with tempfile.TemporaryDirectory(prefix="nerf-fuzz-") as folder:
        yield Path(folder)


def assert_cli_error(result, allow_success: bool = False) -> None:
    """A clean exit: 0 when allowed, else 1 with exactly one `error:` line or 2 (usage)."""
    exception = result.exception
    assert exception is None or isinstance(exception, SystemExit), repr(exception)
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert allow_success, result.output
        return
    assert result.exit_code in (1, 2), result.output
    if result.exit_code == 1:
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.output


def assert_one_line(exc: NerfError, path: Path | None = None) -> None:
    assert "\n" not in str(exc) and str(exc)
    if path is not None:
        assert path.name in str(exc), str(exc)


# ----------------------------------------------------------------------------- poses_bounds.npy

NUMERIC_DTYPES = ["<f2", "<f4", ">f4", "<f8", ">f8", "i1", "<i4", ">i8", "u1", "<u8"]
OTHER_DTYPES = ["?", "<c8", "<c16", "U4", "S3", "O", "V8", [("a", "<f8"), ("b", "<i4")]]


@st.composite
def any_arrays(draw) -> np.ndarray:
    """Arrays of any shape (17 columns often) and any dtype, values extreme or not."""
    dims = draw(st.integers(0, 3))
    shape = tuple(draw(st.integers(0, 6)) for _ in range(dims))
    if dims == 2 and draw(st.booleans()):
        shape = (max(shape[0], 1), 17)
    dtype = np.dtype(draw(st.sampled_from(NUMERIC_DTYPES + OTHER_DTYPES)))
    if dtype.kind in "fiuc?":
        elements = None
        if dtype.kind == "f" and draw(st.booleans()):
            elements = st.sampled_from([0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e-300, 1e300])
            elements = elements.map(lambda v: dtype.type(v))
        return draw(hnp.arrays(dtype, shape, elements=elements))
    if dtype.kind == "O":
        values = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.floats())
        flat = draw(st.lists(values, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
        return arr.reshape(shape)
    return np.zeros(shape, dtype=dtype)


def check_scene(scene: Scene) -> None:
    """What every loaded scene must satisfy, whatever file it came from."""
    n = scene.num_views
    assert n >= 1 and scene.c2w.shape == (n, 3, 4) and scene.bounds.shape == (n, 2)
    assert np.isfinite(scene.c2w).all() and np.isfinite(scene.render_poses).all()
    assert np.isfinite(scene.bounds).all() and (scene.bounds > 0).all()
    assert scene.height >= 1 and scene.width >= 1 and np.isfinite(scene.K).all()
    assert (scene.K[:, 0, 0] > 0).all()
    if scene.images is not None:
        assert scene.images.shape == (n, scene.height, scene.width, 3)
        assert scene.images.dtype == np.float32
        assert scene.images.min() >= 0.0 and scene.images.max() <= 1.0


def load_or_data_error(path: Path, **kwargs) -> Scene | None:
    try:
        scene = load_llff_data(path, **kwargs)
    except DataError as exc:
        assert_one_line(exc)
        return None
    check_scene(scene)
    return scene


@fuzz(60)
@given(arr=any_arrays(), fortran=st.booleans(), spherify=st.booleans())
def test_poses_bounds_any_array_loads_or_raises_data_error(arr, fortran, spherify):
    with fresh_dir() as folder:
        path = folder / "poses_bounds.npy"
        np.save(path, np.asfortranarray(arr) if fortran else arr, allow_pickle=True)
        load_or_data_error(path, factor=1, load_imgs=False, spherify=spherify)


@st.composite
def plausible_rows(draw) -> np.ndarray:
    """Proper rotations with extreme translations, bounds and intrinsics."""
    n = draw(st.integers(1, 5))
    extreme = st.sampled_from([1e-300, 1e-30, 1e-8, 1.0, 1e8, 1e30, 1e300])
    rows = []
    for k in range(n):
        position = np.array([np.cos(k), np.sin(k), 4.0]) * draw(extreme)
        pose = look_at_stored(position + 1e-3 * k, np.zeros(3))
        if not np.isfinite(pose).all():
            pose = look_at_stored(np.array([0.0, 0.0, 4.0 + k]), np.zeros(3))
        near = draw(extreme)
        far = near * draw(st.sampled_from([1.0 + 1e-9, 2.0, 1e10, 1e300]))
        hwf = [draw(st.sampled_from([1.0, 24.0, 4e4])), 32.0, draw(extreme)]
        rows.append(
            np.concatenate([np.concatenate([pose, np.array(hwf)[:, None]], 1).ravel(), [near, far]])
        )
    return np.array(rows)


@fuzz(50)
@given(arr=plausible_rows(), spherify=st.booleans(), dtype=st.sampled_from(["<f8", "<f4"]))
def test_poses_bounds_extreme_values_load_finite_or_raise_data_error(arr, spherify, dtype):
    with fresh_dir() as folder:
        path = folder / "poses_bounds.npy"
        with np.errstate(over="ignore"):
            np.save(path, arr.astype(dtype))
        load_or_data_error(path, factor=1, load_imgs=False, spherify=spherify)


@fuzz(40)
@given(
    field=st.sampled_from(["descr", "fortran_order", "shape"]),
    value=st.one_of(
        st.text(alphabet="()[]{}<>',:.0123456789fiuObSUV ", max_size=14),
        st.sampled_from(["'<f8'", "'|O'", "(1, 17, 99999999999999)", "(-1, 17)", "()", "None"]),
    ),
)
def test_poses_bounds_damaged_header_raises_data_error(field, value):
    """A valid capture's header damaged: the loader reads it exactly when numpy itself reads
    the same 2 x 17 numbers back (a harmless edit), and otherwise raises a DataError."""
    with fresh_dir() as folder:
        valid = np.load(write_llff(folder / "s", n=2, with_images=False) / "poses_bounds.npy")
    buffer = io.BytesIO()
    np.save(buffer, valid)
    raw = buffer.getvalue()
    end = raw.index(b"}") + 1
    header = ast.literal_eval(raw[10:end].decode("latin1"))  # the dict numpy wrote
    text = (
        "{"
        + ", ".join(f"'{key}': {value if key == field else repr(header[key])}" for key in header)
        + "}"
    )
    padded = text.encode("latin1", "replace").ljust(end - 10, b" ")[: max(end - 10, len(text))]
    damaged = raw[:8] + struct.pack("<H", len(padded)) + padded + raw[end:]
    try:
        same = np.load(io.BytesIO(damaged), allow_pickle=False)
        harmless = same.shape == valid.shape and np.array_equal(same, valid)
    except Exception:
        harmless = False
    with fresh_dir() as folder:
        path = folder / "poses_bounds.npy"
        path.write_bytes(damaged)
        scene = load_or_data_error(path, factor=1, load_imgs=False)
    assert (scene is not None) == harmless


# ----------------------------------------------------------------------------- images

HEIGHT, WIDTH = 8, 10


def png_bytes(array: np.ndarray, bit_depth: int, color_type: int) -> bytes:
    """A PNG written by hand (any bit depth and colour type PIL may not write)."""
    height, width = array.shape[:2]
    data = array.astype(">u2" if bit_depth == 16 else np.uint8)
    raw = b"".join(b"\0" + data[row].tobytes() for row in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def pil_bytes(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def make_image(kind: str, rng: np.random.Generator, height: int, width: int):
    """(file bytes, suffix, expected RGB uint8 [H, W, 3] or None when lossy)."""
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (height, width), dtype=np.uint8)
    wide = rng.integers(0, 65536, (height, width, 4))
    if kind == "rgb":
        return pil_bytes(Image.fromarray(rgb), "PNG"), ".png", rgb
    if kind == "grey":
        return pil_bytes(Image.fromarray(grey), "PNG"), ".png", np.repeat(grey[..., None], 3, -1)
    if kind == "rgba":
        rgba = np.concatenate([rgb, grey[..., None]], -1)
        return pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"), ".PNG", rgb
    if kind == "grey_alpha":
        la = np.stack([grey, 255 - grey], -1)
        return (
            pil_bytes(Image.fromarray(la, "LA"), "PNG"),
            ".png",
            np.repeat(grey[..., None], 3, -1),
        )
    if kind == "palette":
        image = Image.fromarray(rgb).convert("P")
        return pil_bytes(image, "PNG"), ".png", np.asarray(image.convert("RGB"))
    if kind == "one_bit":
        bits = grey > 127
        expected = np.repeat((bits * 255).astype(np.uint8)[..., None], 3, -1)
        return pil_bytes(Image.fromarray(bits), "PNG"), ".png", expected
    if kind == "grey16":
        return png_bytes(wide[..., 0], 16, 0), ".png", np.repeat((wide[..., :1] >> 8), 3, -1)
    if kind == "rgb16":
        return png_bytes(wide[..., :3], 16, 2), ".png", wide[..., :3] >> 8
    if kind == "rgba16":
        return png_bytes(wide, 16, 6), ".png", wide[..., :3] >> 8
    if kind == "jpeg":
        return pil_bytes(Image.fromarray(rgb), "JPEG"), ".jpg", None
    if kind == "grey_jpeg":
        return pil_bytes(Image.fromarray(grey), "JPEG"), ".jpeg", None
    if kind == "cmyk_jpeg":
        return pil_bytes(Image.fromarray(rgb).convert("CMYK"), "JPEG"), ".jpg", None
    raise AssertionError(kind)


IMAGE_KINDS = [
    "rgb",
    "grey",
    "rgba",
    "grey_alpha",
    "palette",
    "one_bit",
    "grey16",
    "rgb16",
    "rgba16",
    "jpeg",
    "grey_jpeg",
    "cmyk_jpeg",
]


def write_scene_with_image(folder: Path, data: bytes, suffix: str, view: int) -> Path:
    """A 3-view HEIGHT x WIDTH capture whose image `view` is `data` (with `suffix`)."""
    root = write_llff(folder / "scene", n=3, height=HEIGHT, width=WIDTH, focal=12.0)
    images = sorted((root / "images").iterdir())
    images[view].unlink()
    (root / "images" / (images[view].stem + suffix)).write_bytes(data)
    return root


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_every_image_flavour_loads_with_the_right_pixels(tmp_path, kind):
    data, suffix, expected = make_image(kind, np.random.default_rng(7), HEIGHT, WIDTH)
    root = write_scene_with_image(tmp_path, data, suffix, view=1)
    scene = load_or_data_error(root, factor=1)
    assert scene is not None, kind
    loaded = np.round(scene.images[1] * 255.0).astype(int)
    if expected is None:  # lossy: compare with an independent decode
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert np.abs(loaded - expected).mean() < 40, kind
    else:
        assert np.abs(loaded - np.asarray(expected, dtype=int)).max() <= 1, kind


@fuzz(50)
@given(
    kind=st.sampled_from(IMAGE_KINDS),
    damage=st.sampled_from(["truncate", "flip", "garbage", "empty", "resize", "rename"]),
    factor=st.sampled_from([1, 2]),
    data=st.data(),
)
def test_damaged_images_load_or_raise_data_error(kind, damage, factor, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    raw, suffix, _ = make_image(kind, rng, HEIGHT, WIDTH)
    if damage == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif damage == "flip":
        flipped = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 8))):
            flipped[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        raw = bytes(flipped)
    elif damage == "garbage":
        raw = data.draw(st.binary(max_size=300))
    elif damage == "empty":
        raw = b""
    elif damage == "resize":
        size = data.draw(st.sampled_from([(1, 1), (HEIGHT, WIDTH + 3), (2 * HEIGHT, 2 * WIDTH)]))
        raw, suffix, _ = make_image(kind, rng, *size)
    else:  # a PNG named .jpg or the other way round
        suffix = ".jpg" if suffix.lower() == ".png" else ".png"
    with fresh_dir() as folder:
        root = write_scene_with_image(folder, raw, suffix, data.draw(st.integers(0, 2)))
        load_or_data_error(root, factor=factor)


# ----------------------------------------------------------------------------- YAML configs

SECTIONS = {
    "data": ["factor", "llff", "blender", "transforms", "llffhold", "ndc", "render_frames"],
    "model": ["name", "nerf", "tensorf", "bogus"],
    "render": ["n_samples", "n_importance", "perturb", "lindisp", "raw_noise_std", "chunk"],
    "train": ["iters", "batch_rays", "lr", "lr_decay_rate", "log_every", "ckpt_every", "seed"],
}
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(["nerf", "tensorf", "1e-3", ".inf", "[4]", "llff"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=2)
    ),
    max_leaves=6,
)


@st.composite
def config_documents(draw):
    doc = {}
    for section in draw(st.lists(st.sampled_from([*SECTIONS, "base", "extra"]), max_size=4)):
        if section in SECTIONS:
            keys = st.sampled_from(SECTIONS[section]) | st.text(max_size=5)
            doc[section] = draw(st.dictionaries(keys, values, max_size=4))
        elif section == "base":
            doc["base"] = draw(st.sampled_from(["llff", "fern", "nope", 3, "/etc", "surround"]))
        else:
            doc[draw(st.text(max_size=5))] = draw(values)
    return draw(st.sampled_from([doc, [doc], doc.get("data"), "text"]))


YAML_TOKENS = list("datrin:-[]{}&*!|>'\"%@`#,? \n\t0.e5\x00\u00e9") + [
    "train:",
    "data:",
    "\n  ",
    "lr: ",
    "factor: ",
    "base: ",
    "&a ",
    "*a",
    "!!python/object:os.system ",
]
yaml_text = st.lists(st.sampled_from(YAML_TOKENS), max_size=40).map("".join)


def build_or_config_error(path: Path) -> Config | None:
    try:
        cfg = build_config(path)
    except ConfigError as exc:
        assert_one_line(exc)
        return None
    assert isinstance(cfg, Config)
    return cfg


@fuzz(60)
@given(doc=config_documents(), text=yaml_text, use_text=st.booleans())
def test_random_yaml_configs_build_or_raise_config_error(doc, text, use_text):
    with fresh_dir() as folder:
        path = folder / "my config.yaml"
        path.write_text(text if use_text else yaml.safe_dump(doc), encoding="utf-8")
        cfg = build_or_config_error(path)
        if cfg is not None and cfg.model.name == "nerf":
            build_model(cfg)  # a config that loads builds its model


@pytest.mark.parametrize(
    "text",
    [
        "[" * 5000,  # nesting deep enough to overflow PyYAML's recursive composer
        "train: {iters: " + "[" * 3000 + "]" * 3000 + "}",
        "train:\n  iters: " + "9" * 5000,  # an int too long for Python's int() limit
        "train:\n  lr: " + "9" * 400,  # a number too large for a float
        "data:\n  factor: .inf\n",
        "data:\n  factor: .nan\n",
        "train:\n  log_every: 0\n",
        "model:\n  name: nerf\n  nerf:\n    netwidth: -4\n",
        "\x00\x01binary",
        "a: &a [*a]",  # a recursive alias
    ],
)
def test_pathological_yaml_is_a_config_error(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(ConfigError) as caught:
        build_config(path)
    assert_one_line(caught.value)


@fuzz(25)
@given(doc=config_documents(), text=yaml_text, use_text=st.booleans())
def test_train_with_a_random_config_file_is_a_clean_exit(tmp_path, doc, text, use_text):
    # The scene's poses_bounds.npy is damaged: a config that builds ends in the DataError
    # naming that file (the config was validated first), one that does not in its ConfigError;
    # both one line, exit 1, and no run folder.
    with fresh_dir() as folder:
        path = folder / "cfg.yaml"
        path.write_text(text if use_text else yaml.safe_dump(doc), encoding="utf-8")
        scene = folder / "scene"
        scene.mkdir()
        (scene / "poses_bounds.npy").write_bytes(b"not an array")
        out = folder / "run"
        result = runner.invoke(app, ["train", str(scene), "--config", str(path), "--out", str(out)])
        assert_cli_error(result)
        assert not out.exists()
        try:
            build_config(str(path))
        except ConfigError:
            assert "poses_bounds.npy" not in result.output, result.output
        else:
            assert "poses_bounds.npy" in result.output, result.output


@pytest.fixture(scope="module")
def small_scene(tmp_path_factory) -> Path:
    return write_llff(
        tmp_path_factory.mktemp("small") / "scene", n=3, height=8, width=10, focal=12.0
    )


@fuzz(15)
@given(
    nerf=st.fixed_dictionaries(
        {},
        optional={
            "netdepth": st.integers(-1, 3),
            "netwidth": st.integers(-1, 16),
            "multires": st.integers(-1, 3),
            "multires_views": st.integers(-1, 2),
            "skips": st.lists(st.integers(-1, 3), max_size=2),
            "use_viewdirs": st.booleans(),
        },
    ),
    render=st.fixed_dictionaries(
        {},
        optional={
            "n_samples": st.integers(-1, 6),
            "n_importance": st.integers(-1, 6),
            "perturb": st.booleans(),
            "lindisp": st.booleans(),
            "raw_noise_std": st.floats(-1, 2),
            "chunk": st.integers(-1, 64),
        },
    ),
    train=st.fixed_dictionaries(
        {},
        optional={
            "batch_rays": st.integers(-1, 40),
            "lr": st.floats(-1e-3, 1e-2),
            "lr_decay_rate": st.floats(-0.5, 1.0),
            "log_every": st.integers(-1, 2),
            "eval_every": st.integers(-1, 2),
            "eval_downscale": st.integers(-1, 3),
            "ckpt_every": st.integers(-1, 2),
            "keep_checkpoints": st.integers(-1, 2),
            "grad_chunk_rays": st.integers(-1, 16),
        },
    ),
    data=st.fixed_dictionaries(
        {},
        optional={
            "llffhold": st.integers(-1, 4),
            "background": st.sampled_from(["auto", "black", "white", "random"]),
            "llff": st.fixed_dictionaries({}, optional={"bd_factor": st.floats(-1, 2)}),
            "ndc": st.booleans(),
        },
    ),
)
def test_training_with_random_valid_looking_values_is_clean(small_scene, nerf, render, train, data):
    doc = {
        "model": {"name": "nerf", "nerf": {"netwidth": 8, "netdepth": 2, "skips": [], **nerf}},
        "render": {"n_samples": 4, "n_importance": 4, **render},
        "train": {"batch_rays": 16, "eval_every": 0, **train},
        "data": {"factor": 1, **data},
    }
    with fresh_dir() as folder:
        path = folder / "cfg.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        out = folder / "run"
        result = runner.invoke(
            app,
            ["train", str(small_scene), "--config", str(path), "--iters", "2", "--out", str(out)]
            + ["--device", "cpu", "--quiet"],
        )
        assert_cli_error(result, allow_success=True)
        if result.exit_code == 0:
            assert load_checkpoint(out / "ckpt.pt").step == 2


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, small_scene) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "run"
    result = runner.invoke(
        app, ["train", str(small_scene), *TINY, "--iters", "2", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    return out


def load_or_checkpoint_error(path: Path) -> None:
    try:
        ckpt = load_checkpoint(path)
        restore_model(ckpt)
    except CheckpointError as exc:
        assert_one_line(exc, path)


def test_a_checkpoint_naming_an_unknown_model_is_a_checkpoint_error(real_run, tmp_path):
    # found by the fuzz test below: one flipped byte turned the model name into 'oerf'
    payload = torch.load(real_run / "ckpt.pt", map_location="cpu", weights_only=False)
    payload["config"]["model"]["name"] = "oerf"
    path = tmp_path / "ckpt.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="unknown model 'oerf'") as info:
        restore_model(load_checkpoint(path))
    assert_one_line(info.value, path)


@fuzz(40)
@given(data=st.data())
def test_damaged_checkpoint_files_load_or_raise_checkpoint_error(real_run, data):
    raw = (real_run / "ckpt.pt").read_bytes()
    damage = data.draw(st.sampled_from(["truncate", "flip", "garbage", "prefix"]))
    if damage == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif damage == "flip":
        flipped = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 16))):
            flipped[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        raw = bytes(flipped)
    elif damage == "garbage":
        raw = data.draw(st.binary(max_size=500))
    else:
        raw = data.draw(st.binary(min_size=1, max_size=64)) + raw
    with fresh_dir() as folder:
        path = folder / "ckpt.pt"
        path.write_bytes(raw)
        load_or_checkpoint_error(path)


random_tensors = st.builds(
    lambda shape, dtype: torch.zeros(shape, dtype=dtype),
    st.lists(st.integers(0, 5), max_size=4),
    st.sampled_from(
        [
            torch.float32,
            torch.float16,
            torch.bfloat16,
            torch.int64,
            torch.bool,
            torch.complex64,
            torch.uint8,
        ]
    ),
)
leaf_values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=5)
    | random_tensors
    | st.lists(st.integers(-3, 10), max_size=4)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)


def leaf_paths(node, prefix=()):
    """Every path (tuple of keys/indices) to a value in nested dicts and lists."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaf_paths(value, (*prefix, key))
    elif isinstance(node, list) and len(node) < 20:
        for index, value in enumerate(node):
            yield from leaf_paths(value, (*prefix, index))


def edit(payload, path, value, delete: bool):
    node = payload
    for key in path[:-1]:
        node = node[key]
    if delete and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value


@fuzz(50)
@given(data=st.data())
def test_edited_checkpoint_payloads_load_or_raise_checkpoint_error(real_run, data):
    payload = torch.load(real_run / "ckpt.pt", weights_only=True)
    paths = [p for p in leaf_paths(payload) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        try:
            edit(payload, path, data.draw(leaf_values), data.draw(st.booleans()))
        except (KeyError, IndexError, TypeError):
            pass  # an earlier edit removed or replaced a parent
    if data.draw(st.integers(0, 9)) == 0:
        payload = data.draw(
            st.dictionaries(
                st.sampled_from(["format_version", "config", "model", "step", "scene"]), leaf_values
            )
        )
    with fresh_dir() as folder:
        path = folder / "ckpt.pt"
        torch.save(payload, path)
        load_or_checkpoint_error(path)


@fuzz(12)
@given(data=st.data())
def test_eval_render_and_resume_of_edited_checkpoints_exit_cleanly(real_run, small_scene, data):
    payload = torch.load(real_run / "ckpt.pt", weights_only=True)
    paths = [p for p in leaf_paths(payload) if p and p[0] != "config"]
    path = data.draw(st.sampled_from(paths))
    edit(payload, path, data.draw(leaf_values), data.draw(st.booleans()))
    with fresh_dir() as folder:
        run = folder / "run"
        shutil.copytree(real_run, run)
        torch.save(payload, run / "ckpt.pt")
        for args in (
            ["eval", str(run), "--downscale", "4", "--out", str(folder / "eval"), "-q"],
            ["render-video", str(run), "--frames", "1", "--downscale", "4"]
            + ["--out", str(folder / "v.gif"), "-q"],
            ["train", str(small_scene), "--out", str(run), "--resume", "--iters", "3", "-q"],
        ):
            result = runner.invoke(app, args)
            assert_cli_error(result, allow_success=True)
        if not (folder / "v.gif").exists():
            assert list(folder.glob(".v.gif*")) == []  # no half-written video


class Exploit:
    """Unpickling this runs `marker.touch()` unless the loader refuses code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_malicious_pickle_is_refused_not_run(real_run, tmp_path):
    marker = tmp_path / "pwned"
    payload = torch.load(real_run / "ckpt.pt", weights_only=True)
    payload["scene"]["root"] = Exploit(marker)
    path = tmp_path / "evil.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="evil.pt: not a readable nerfcli checkpoint"):
        load_checkpoint(path)
    for command in (["eval", str(path)], ["render-video", str(path)]):
        result = runner.invoke(app, command)
        assert_cli_error(result)
    assert not marker.exists()


# ----------------------------------------------------------------------------- camera paths


@fuzz(50)
@given(
    arr=any_arrays()
    | hnp.arrays(
        st.sampled_from(["<f4", ">f8", "<i2", "<f2"]),
        st.tuples(st.integers(0, 3), st.sampled_from([3, 4]), st.sampled_from([4, 5])),
    ),
    kind=st.sampled_from(["npy", "npz", "pickle", "bytes"]),
    raw=st.binary(max_size=200),
)
def test_camera_path_files_load_or_raise_data_error(arr, kind, raw):
    with fresh_dir() as folder:
        path = folder / "path.npy"
        if kind == "npy":
            np.save(path, arr, allow_pickle=False) if arr.dtype != object else path.write_bytes(raw)
        elif kind == "npz":
            with open(path, "wb") as handle:
                np.savez(handle, poses=arr)
        elif kind == "pickle":
            np.save(path, np.array([{"c2w": arr}], dtype=object), allow_pickle=True)
        else:
            path.write_bytes(raw)
        try:
            poses = load_path_file(path)
        except DataError as exc:
            assert_one_line(exc, path)
            return
        assert poses.dtype == np.float32 and poses.ndim == 3 and poses.shape[1:] == (3, 4)
        assert len(poses) >= 1 and np.isfinite(poses).all()


def test_render_video_with_bad_path_files_exits_cleanly(real_run, tmp_path):
    bad = {
        "archive.npy": lambda p: (
            np.savez(str(p) + ".npz", poses=np.zeros((2, 3, 4))) or Path(str(p) + ".npz").rename(p)
        ),
        "strings.npy": lambda p: np.save(p, np.full((2, 3, 4), "x")),
        "nan.npy": lambda p: np.save(p, np.full((2, 3, 4), np.nan)),
        "shape.npy": lambda p: np.save(p, np.zeros((2, 4, 3))),
        "empty.npy": lambda p: p.write_bytes(b""),
    }
    for name, make in bad.items():
        path = tmp_path / name
        make(path)
        out = tmp_path / f"{name}.gif"
        result = runner.invoke(
            app, ["render-video", str(real_run), "--path", str(path), "--out", str(out)]
        )
        assert_cli_error(result)
        assert name in result.output and not out.exists()
        assert list(tmp_path.glob(f".{name}.gif*")) == []


@pytest.mark.parametrize("switch", ["capturable", "amsgrad", "maximize"])
def test_a_stored_adam_switch_other_than_ours_is_refused(switch):
    """Hypothesis's find: a checkpoint whose Adam group says capturable=True loaded, and the
    first step raised AssertionError on the CPU (a traceback). Adam's switches must be the
    ones nerfcli trains with; a flipped one is a ValueError naming it (resume turns it into
    one error line)."""
    from nerfcli.training.optim import check_adam_state

    weight = torch.nn.Parameter(torch.ones(3))
    trained = torch.optim.Adam([weight], lr=0.1)
    weight.grad = torch.ones(3)
    trained.step()
    state = trained.state_dict()
    state["param_groups"][0][switch] = True
    resumed = torch.optim.Adam([weight], lr=0.1)
    fresh = [dict(group) for group in resumed.param_groups]
    resumed.load_state_dict(state)
    with pytest.raises(ValueError, match=f"optimizer setting '{switch}' is True"):
        check_adam_state(resumed, fresh)
