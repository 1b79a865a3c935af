"""`nerf inspect-poses`: the summary, --json, --plot, --path-out and the image checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.data.formats.llff import load_llff_data
from tests.conftest import write_llff

runner = CliRunner()
HWF = np.array([[24.0], [32.0], [30.0]])


def invoke(*args: str):
    return runner.invoke(app, ["inspect-poses", *map(str, args)])


def check_map(doc: dict) -> dict[str, dict]:
    return {check["name"]: check for check in doc["checks"]}


def test_fern_json_numbers(fern_dir):
    result = invoke(fern_dir / "poses_bounds.npy", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert doc["num_views"] == 20
    assert (doc["stored_height"], doc["stored_width"]) == (3024, 4032)
    assert doc["stored_focal"] == pytest.approx(3260.5, abs=0.1)
    assert doc["factor"] == 8
    assert (doc["height"], doc["width"]) == (378, 504) and doc["format"] == "llff"
    assert doc["focal"] == pytest.approx(407.57, abs=0.01)
    assert doc["test_views"] == [0, 8, 16]
    assert doc["rescaled_near_min"] == pytest.approx(1 / 0.75, rel=1e-6)
    assert doc["near_min"] == pytest.approx(16.985, abs=1e-3)
    assert doc["far_max"] == pytest.approx(80.002, abs=1e-3)
    assert doc["capture"] == "forward-facing"
    assert doc["focus_depth"] == pytest.approx(4.306, abs=1e-3)
    assert doc["fov_x_deg"] == pytest.approx(63.46, abs=0.01)
    checks = check_map(doc)
    assert all(check["ok"] for check in doc["checks"])
    assert {"finite", "rotation", "intrinsics", "bounds", "images_8"} <= set(checks)
    assert set(checks["finite"]) == {"name", "ok", "message"}
    # Given the file, the images beside it (fern/images_8) are still checked.
    assert doc["image_folders"] == [
        {"folder": "images_8", "factor": 8, "count": 20, "height": 378, "width": 504}
    ]


def test_fern_human_view_is_on_stderr(fern_dir):
    result = invoke(fern_dir)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    for text in (
        "3024 x 4032 full; 378 x 504 at --factor 8",
        "focal",
        "field of view",
        "near bound",
        "camera extent",
        "mean neighbour baseline",
        "forward-facing",
        "focus depth 4.306",
        "checks",
        "images_8: 20 images of 378 x 504",
    ):
        assert text in result.stderr


def test_factor_option(fern_dir):
    doc = json.loads(invoke(fern_dir, "--json", "--factor", "4").stdout)
    assert (doc["height"], doc["width"]) == (756, 1008)
    assert doc["focal"] == pytest.approx(3260.526 / 4, abs=1e-3)
    # images_8 is fine, but there is no images/ or images_4/ to train at factor 4 from.
    failed = [c for c in doc["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["images_for_factor"]


def test_surround_capture_is_reported_in_the_frame_train_uses(cup_dir, tmp_path):
    out = tmp_path / "orbit.npy"
    result = invoke(cup_dir, "--path-out", out)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stderr.split())
    assert "surround" in text and "scene type unbounded, the walk-around frame" in text
    # --path-out is the orbit `nerf train` and `nerf render-video` use on this capture
    from nerfcli.models.resolve import ConfigRequest, resolve
    from nerfcli.training.session import load_training_scene

    cfg, plan = resolve(ConfigRequest(cup_dir))
    scene = load_training_scene(cup_dir, cfg, load_images=False, plan=plan)
    assert scene.render_path == "orbit"
    np.testing.assert_array_equal(np.load(out), scene.render_poses)
    doc = json.loads(invoke(cup_dir, "--json").stdout)
    assert (doc["scene_type"], doc["frame"], doc["render_path"]) == (
        "unbounded",
        "walk-around",
        "orbit",
    )
    doc = json.loads(invoke(cup_dir, "--json", "--spherify").stdout)
    assert doc["capture"] == "surround" and doc["frame"] == "spherified"
    assert doc["render_path"] == "circle" and doc["focus_depth"] is None
    doc = json.loads(invoke(cup_dir, "--json", "--scene-type", "forward").stdout)
    assert (doc["scene_type"], doc["frame"], doc["render_path"]) == (
        "forward",
        "reference",
        "spiral",
    )


def test_plot_writes_a_png(tiny_llff, tmp_path):
    out = tmp_path / "cameras.png"
    result = invoke(tiny_llff, "--plot", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert width > 600 and height > 300
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 10  # something was drawn
    assert str(out) in result.stderr


def test_plot_and_path_out_refuse_to_overwrite(tiny_llff, tmp_path):
    out = tmp_path / "path.npy"
    out.write_bytes(b"keep me")
    result = invoke(tiny_llff, "--path-out", out)
    assert result.exit_code == 1
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert out.read_bytes() == b"keep me"
    result = invoke(tiny_llff, "--path-out", out, "--force")
    assert result.exit_code == 0, result.output
    assert np.load(out).shape == (120, 3, 4)


@pytest.mark.parametrize("spherify", [False, True])
def test_path_out_is_the_training_render_path(tiny_llff, tmp_path, spherify):
    out = tmp_path / "path.npy"
    args = [tiny_llff, "--path-out", out, "--frames", "30"] + (["--spherify"] if spherify else [])
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    path = np.load(out)
    assert path.shape == (30, 3, 4)
    assert path.dtype == np.float32
    scene = load_llff_data(tiny_llff, spherify=spherify, render_frames=30, load_imgs=False)
    np.testing.assert_array_equal(path, scene.render_poses)
    np.testing.assert_allclose(
        path[:, :, :3].transpose(0, 2, 1) @ path[:, :, :3],
        np.broadcast_to(np.eye(3), (30, 3, 3)),
        atol=1e-5,
    )


def test_fern_path_out(fern_dir, tmp_path):
    out = tmp_path / "fern_path.npy"
    result = invoke(fern_dir, "--path-out", out, "--json")
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)  # still exactly one JSON document on stdout
    path = np.load(out)
    assert path.shape == (120, 3, 4) and path.dtype == np.float32


def test_wrong_output_suffixes_are_usage_errors(tiny_llff, tmp_path):
    result = invoke(tiny_llff, "--plot", tmp_path / "cameras.jpg")
    assert result.exit_code == 2
    assert "--plot" in result.output and ".png" in result.output
    result = invoke(tiny_llff, "--path-out", tmp_path / "path.txt")
    assert result.exit_code == 2
    assert not (tmp_path / "path.txt").exists()


def test_file_without_images_skips_image_checks(tmp_path):
    root = write_llff(tmp_path / "bare", with_images=False)
    doc = json.loads(invoke(root / "poses_bounds.npy", "--json").stdout)
    assert doc["ok"] is True
    assert doc["image_folders"] == []
    assert not any(c["name"].startswith("images") for c in doc["checks"])


def test_image_checks_pass_on_a_good_folder(tiny_llff):
    result = invoke(tiny_llff, "--json", "--factor", "2")
    assert result.exit_code == 0, result.output
    checks = check_map(json.loads(result.stdout))
    assert checks["images"]["ok"] and "6 images of 24 x 32" in checks["images"]["message"]
    assert "resizes the 6 images of images/" in checks["images_for_factor"]["message"]


def test_wrong_sized_factor_folder_fails(tmp_path):
    root = write_llff(tmp_path / "s", height=24, width=32, factor_folder=4)
    # images_4 should hold 6 x 8 images at factor 4; these are 24 x 32.
    result = invoke(root, "--json", "--factor", "4")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    checks = check_map(doc)
    assert not checks["images_4"]["ok"]
    assert "images are 24 x 32" in checks["images_4"]["message"]
    assert "6 x 8" in checks["images_4"]["message"]


def test_image_count_mismatch_is_a_failed_check(tiny_llff, tmp_path):
    sorted((tiny_llff / "images").iterdir())[0].unlink()
    plot = tmp_path / "cameras.png"
    result = invoke(tiny_llff, "--json", "--plot", plot)
    assert result.exit_code == 1
    doc = json.loads(result.stdout)  # the report is still printed
    assert doc["ok"] is False
    checks = check_map(doc)
    assert not checks["images"]["ok"]
    assert "5 images but poses_bounds.npy has 6 poses" in checks["images"]["message"]
    assert checks["finite"]["ok"] and checks["rotation"]["ok"]
    assert not plot.exists()  # nothing is written when a check fails
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "images" in lines[0] and "Traceback" not in result.output


def test_every_bad_view_is_reported(tmp_path):
    root = write_llff(tmp_path / "s", with_images=False)
    arr = np.load(root / "poses_bounds.npy")
    arr[[1, 3], 15] = -1.0
    arr[4, 2] = np.nan
    np.save(root / "poses_bounds.npy", arr)
    result = invoke(root, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    checks = check_map(doc)
    assert "views 1, 3" in checks["bounds"]["message"]
    assert "view 4 has non-finite" in checks["finite"]["message"]
    assert checks["rotation"]["ok"] and checks["intrinsics"]["ok"]
    # Stored numbers are still reported; training-frame ones are not (the loader refuses).
    assert doc["num_views"] == 6 and doc["stored_height"] == 24 and doc["near_min"] == -1.0
    assert doc["rescaled_near_min"] is None and doc["focus_depth"] is None
    # The human view shows the table and the failed marks too.
    human = invoke(root)
    assert human.exit_code == 1
    assert "bounds" in human.stderr and "2 of" in human.stderr.splitlines()[-1]


def test_help_lists_every_option():
    result = runner.invoke(app, ["inspect-poses", "--help"])
    assert result.exit_code == 0
    for option in ("--json", "--plot", "--path-out", "--factor", "--spherify", "--frames"):
        assert option in result.output


def test_inspect_does_not_write_into_the_scene(tiny_llff):
    before = sorted(p.relative_to(tiny_llff) for p in tiny_llff.rglob("*"))
    assert invoke(tiny_llff, "--factor", "2").exit_code == 0
    assert sorted(p.relative_to(tiny_llff) for p in tiny_llff.rglob("*")) == before


def test_relative_scene_path(tiny_llff, monkeypatch):
    monkeypatch.chdir(tiny_llff.parent)
    result = invoke(Path(tiny_llff.name), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["path"] == str(Path(tiny_llff.name) / "poses_bounds.npy")


def test_undefined_training_frame_is_a_failed_check(tmp_path):
    from tests.conftest import look_at_stored

    # Two cameras facing each other: their viewing directions cancel, so no average pose for
    # nerf-pytorch's frame (scene type forward; auto picks the walk-around frame, which has one).
    rows = []
    for z in (2.0, -2.0):
        pose = np.concatenate([look_at_stored(np.array([0.0, 0.0, z]), np.zeros(3)), HWF], 1)
        rows.append(np.concatenate([pose.ravel(), [1.0, 3.0]]))
    np.save(tmp_path / "poses_bounds.npy", np.array(rows))
    assert json.loads(invoke(tmp_path, "--json").stdout)["frame"] == "walk-around"
    result = invoke(tmp_path, "--json", "--scene-type", "forward")
    assert result.exit_code == 1
    checks = check_map(json.loads(result.stdout))
    assert not checks["training_frame"]["ok"]
    assert "cannot bring the poses into the training frame" in checks["training_frame"]["message"]
    assert all(checks[name]["ok"] for name in ("finite", "rotation", "intrinsics", "bounds"))


def test_inspecting_imports_nothing_from_training(tiny_llff, tmp_path):
    """inspect-poses resolves its config in nerfcli.models.resolve, as train does, without
    the training layer (LLFF and transforms.json captures)."""
    import subprocess
    import sys

    from tests.unit.test_transforms import write_transforms

    json_scene = write_transforms(tmp_path / "json")
    code = (
        "import sys; from typer.testing import CliRunner; from nerfcli.cli.app import app\n"
        "for scene in sys.argv[1:]:\n"
        "    result = CliRunner().invoke(app, ['inspect-poses', scene, '--json'])\n"
        "    assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.startswith('nerfcli.training')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tiny_llff), str(json_scene)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
