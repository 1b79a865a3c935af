"""`nerf rays`: --out arrays, --pixel/--json values, --ndc/--no-ndc, --factor, --spherify."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.data.formats.llff import load_llff_data
from tests.conftest import write_llff

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["rays", *map(str, args)])


def test_out_arrays(tiny_llff, tmp_path):
    out = tmp_path / "rays.npz"
    result = invoke(tiny_llff, "--view", "2", "--factor", "2", "--no-ndc", "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    scene = load_llff_data(tiny_llff, factor=2, load_imgs=False)
    with np.load(out) as data:
        arrays = dict(data)
    assert {"rays_o", "rays_d", "viewdirs", "K", "c2w", "near", "far"} <= set(arrays)
    for name in ("rays_o", "rays_d", "viewdirs"):
        assert arrays[name].shape == (12, 16, 3), name
        assert arrays[name].dtype == np.float32, name
    np.testing.assert_array_equal(arrays["c2w"], scene.c2w[2])
    np.testing.assert_allclose(arrays["K"], [[15.0, 0, 8.0], [0, 15.0, 6.0], [0, 0, 1]])
    assert arrays["K"].shape == (3, 3) and arrays["c2w"].shape == (3, 4)
    # World rays: every origin is the camera centre; near/far from the rescaled bounds.
    np.testing.assert_array_equal(
        arrays["rays_o"], np.broadcast_to(scene.c2w[2, :, 3], (12, 16, 3))
    )
    assert float(arrays["near"]) == pytest.approx(0.9 * scene.bounds.min())
    assert float(arrays["far"]) == pytest.approx(scene.bounds.max())
    # viewdirs are the normalised world directions.
    norms = np.linalg.norm(arrays["viewdirs"], axis=-1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-6)
    unit = arrays["rays_d"] / np.linalg.norm(arrays["rays_d"], axis=-1, keepdims=True)
    np.testing.assert_allclose(arrays["viewdirs"], unit, atol=1e-6)
    # The principal pixel (column W/2, row H/2) looks along the camera's -z.
    np.testing.assert_allclose(arrays["viewdirs"][6, 8], -scene.c2w[2, :, 2], atol=1e-6)


def test_ndc_is_the_default_for_forward_facing(tiny_llff, tmp_path):
    out = tmp_path / "rays.npz"
    assert invoke(tiny_llff, "--view", "0", "--out", out).exit_code == 0
    with np.load(out) as data:
        assert (float(data["near"]), float(data["far"])) == (0.0, 1.0)
        np.testing.assert_allclose(data["rays_o"][..., 2], -1.0, atol=1e-5)
        np.testing.assert_allclose((data["rays_o"] + data["rays_d"])[..., 2], 1.0, atol=1e-5)
        # viewdirs stay the world-frame (pre-NDC) directions.
        assert data["viewdirs"][..., 2].max() < 0


def test_pixel_values_equal_the_out_rows(tiny_llff, tmp_path):
    out = tmp_path / "rays.npz"
    result = invoke(
        tiny_llff, "--view", "4", "--factor", "1", "--out", out,
        "--pixel", "0,0", "--pixel", "31,23", "--pixel", "5,17", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["out"] == str(out)
    with np.load(out) as data:
        for pixel in doc["pixels"]:
            x, y = pixel["x"], pixel["y"]
            for name in ("rays_o", "rays_d", "viewdirs"):
                np.testing.assert_array_equal(np.float32(pixel[name]), data[name][y, x])
    assert [(p["x"], p["y"]) for p in doc["pixels"]] == [(0, 0), (31, 23), (5, 17)]


def test_pixel_json_without_out_equals_a_later_out(tiny_llff, tmp_path):
    # Separate runs: the per-pixel path and the full-image path give identical numbers.
    doc = json.loads(
        invoke(tiny_llff, "--view", "1", "--factor", "1", "--pixel", "7,3", "--json").stdout
    )
    out = tmp_path / "rays.npz"
    assert invoke(tiny_llff, "--view", "1", "--factor", "1", "--out", out).exit_code == 0
    with np.load(out) as data:
        np.testing.assert_array_equal(np.float32(doc["pixels"][0]["rays_d"]), data["rays_d"][3, 7])


def test_json_document(tiny_llff):
    result = invoke(
        tiny_llff, "--view", "3", "--factor", "8", "--no-ndc", "--json", "--pixel", "3,2"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    scene = load_llff_data(tiny_llff, load_imgs=False)
    assert doc["view"] == 3 and doc["ndc"] is False and doc["factor"] == 8
    assert (doc["height"], doc["width"]) == (3, 4)
    np.testing.assert_array_equal(np.float32(doc["c2w"]), scene.c2w[3])
    np.testing.assert_array_equal(np.float32(doc["K"]), scene.K[3])
    assert doc["near"] == pytest.approx(0.9 * scene.bounds.min())
    [pixel] = doc["pixels"]
    assert (pixel["x"], pixel["y"]) == (3, 2)
    np.testing.assert_array_equal(np.float32(pixel["rays_o"]), scene.c2w[3, :, 3])
    assert np.linalg.norm(pixel["viewdirs"]) == pytest.approx(1.0)


def test_human_output(tiny_llff):
    result = invoke(tiny_llff, "--view", "0", "--factor", "1", "--pixel", "16,12")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    text = " ".join(result.stderr.split())
    assert "view 0 of 6, 24 x 32 (H x W) at --factor 1" in text
    assert "[right, up, back | position]" in text
    assert "-1.00000]" in text  # the NDC origin z of the principal pixel


def test_poses_file_without_images(tmp_path):
    root = write_llff(tmp_path / "bare", with_images=False)
    result = invoke(root / "poses_bounds.npy", "--view", "5", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scene"] == str(root / "poses_bounds.npy")


def test_spherify_uses_the_spherified_frame_without_ndc(tmp_path):
    from tests.conftest import look_at_stored

    rows = []
    for k in range(10):
        angle = 2 * np.pi * k / 10
        position = np.array([3 * np.cos(angle), 0.3, 3 * np.sin(angle)])
        pose = np.concatenate([look_at_stored(position, np.zeros(3)), [[24], [32], [30]]], 1)
        rows.append(np.concatenate([pose.ravel(), [1.0, 6.0]]))
    np.save(tmp_path / "poses_bounds.npy", np.array(rows))
    doc = json.loads(invoke(tmp_path, "--view", "2", "--spherify", "--json").stdout)
    scene = load_llff_data(tmp_path, spherify=True, load_imgs=False)
    assert doc["ndc"] is False and doc["spherify"] is True
    np.testing.assert_array_equal(np.float32(doc["c2w"]), scene.c2w[2])
    assert doc["near"] == pytest.approx(0.9 * scene.bounds.min())
    forced = json.loads(invoke(tmp_path, "--view", "2", "--spherify", "--ndc", "--json").stdout)
    assert forced["ndc"] is True and forced["near"] == 0.0


def test_fern_view_at_factor_8(fern_dir, tmp_path):
    out = tmp_path / "fern_rays.npz"
    result = invoke(fern_dir, "--view", "0", "--out", out, "--pixel", "252,189", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["height"], doc["width"]) == (378, 504)
    assert doc["focal"] == pytest.approx(407.57, abs=0.01)
    with np.load(out) as data:
        assert data["rays_o"].shape == (378, 504, 3)
        # The principal pixel's view direction is the camera's -z axis.
        np.testing.assert_allclose(data["viewdirs"][189, 252], -data["c2w"][:, 2], atol=1e-6)


def test_out_refuses_to_overwrite(tiny_llff, tmp_path):
    out = tmp_path / "rays.npz"
    out.write_bytes(b"keep")
    result = invoke(tiny_llff, "--view", "0", "--out", out)
    assert result.exit_code == 1 and "--force" in result.stderr
    assert out.read_bytes() == b"keep"
    assert invoke(tiny_llff, "--view", "0", "--out", out, "--force").exit_code == 0
    # no --factor: the auto factor, 1 for these 32-pixel-wide photos
    assert np.load(out)["rays_o"].shape == (24, 32, 3)


def test_help_lists_every_option():
    result = runner.invoke(app, ["rays", "--help"])
    assert result.exit_code == 0
    for option in ("--view", "--factor", "--ndc", "--no-ndc", "--out", "--pixel", "--json"):
        assert option in result.output
