"""`nerf export` end to end on a checkpoint whose geometry is known exactly: a TensoRF field
whose density depends on z alone (a slab between two planes; the factors are piecewise linear
with their kinks on grid vertices, so trilinear reads are exact), with a constant colour, in a
box scene whose training frame is a similarity of the capture's. The exported mesh and points
must lie on the slab's planes, mapped into the capture's frame by a transform built here
independently; the cameras must come back as the capture's poses."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.data.cameras import intrinsics
from nerfcli.data.scene import Scene
from nerfcli.export.ply import read_ply
from nerfcli.models.config import Config, with_values
from nerfcli.models.registry import build_model
from nerfcli.training.checkpoint import Checkpoint, save_checkpoint

runner = CliRunner()
SLAB = (-0.25, 0.35)  # z of the slab's lower and upper faces (training frame)
COLOUR = (0.2, 0.6, 0.8)
RES = 41  # grid vertices per axis over [-1, 1]: spacing 0.05, the faces on vertices +- half


def _capture_from_training() -> np.ndarray:
    """The capture's frame from the training frame: scale 2, a rotation about (1, 1, 1), a shift."""
    axis = np.ones(3) / np.sqrt(3.0)
    angle = 0.7
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    out = np.eye(4)
    out[:3, :3] = 2.0 * rotation
    out[:3, 3] = [0.5, -1.0, 3.0]
    return out


def _cameras(views: int = 5) -> np.ndarray:
    """c2w [N, 3, 4]: cameras at z = 2.5 looking straight down -z (OpenGL)."""
    c2w = np.tile(np.eye(4)[:3], (views, 1, 1)).astype(np.float32)
    c2w[:, 0, 3] = np.linspace(-0.3, 0.3, views)
    c2w[:, 2, 3] = 2.5
    return c2w


def _slab_checkpoint(folder: Path) -> Path:
    cfg = Config()
    tensorf = replace(
        cfg.model.tensorf,
        grid_init=(RES, RES, RES),
        grid_final=(RES, RES, RES),
        upsample_steps=(),
        alpha_mask_steps=(),
        aabb=(-1.0, -1.0, -1.0, 1.0, 1.0, 1.0),
        density_components=(1, 1, 1),
        appearance_components=(2, 2, 2),
        app_dim=4,
        decoder_width=8,
    )
    cfg = replace(cfg, model=replace(cfg.model, tensorf=tensorf))
    cfg = with_values(cfg, "data", ndc=False, format="llff", background="black")
    model = build_model(cfg)
    with torch.no_grad():
        for plane, line in zip(model.field.density_planes, model.field.density_lines):
            plane.zero_()
            line.zero_()
        model.field.density_planes[0].fill_(1.0)  # xy plane, times the z line
        z = torch.linspace(-1.0, 1.0, RES)
        # 4 per unit inside the slab's faces, falling linearly outside: feature 0.5 at the faces
        distance = torch.minimum(z - SLAB[0], SLAB[1] - z)
        model.field.density_lines[0][0, 0, :, 0] = 0.5 + 10.0 * distance
        last = model.field.decoder.layers[-1]
        last.weight.zero_()
        last.bias.copy_(torch.logit(torch.tensor(COLOUR)))
    views = 5
    c2w = _cameras(views)
    capture_from_training = _capture_from_training()
    scene = Scene(
        root=folder / "capture",  # gone: the exports must not need the photos
        format="llff",
        c2w=c2w,
        K=np.repeat(intrinsics(24, 32, 30.0)[None], views, 0),
        height=24,
        width=32,
        near=0.5,
        far=5.0,
        bounds=np.tile([[0.5, 5.0]], (views, 1)).astype(np.float32),
        splits={"train": [1, 2, 3, 4], "val": [], "test": [0]},
        render_poses=c2w[:2],
        render_path="spiral",
        kind="object",
        scene_box=np.array([[-1.0] * 3, [1.0] * 3], np.float32),
        world_from_file=np.linalg.inv(capture_from_training),
        image_files=[f"view{i}.png" for i in range(views)],
    )
    ckpt = Checkpoint(config=cfg, model_state=model.state_dict(), scene=scene, step=7)
    return save_checkpoint(ckpt, folder / "ckpt.pt")


@pytest.fixture(scope="module")
def slab(tmp_path_factory) -> Path:
    return _slab_checkpoint(tmp_path_factory.mktemp("slab"))


def _face_z(points_capture: np.ndarray) -> np.ndarray:
    """Training-frame z of capture-frame points, through the transform built in this file."""
    training_from_capture = np.linalg.inv(_capture_from_training())
    return (points_capture @ training_from_capture[:3, :3].T + training_from_capture[:3, 3])[:, 2]


def test_mesh_lies_on_the_slab_in_the_capture_frame(slab: Path, tmp_path: Path) -> None:
    # level: feature 0.5 -> density 25 * 0.5 with the relu activation
    out = tmp_path / "mesh.ply"
    result = runner.invoke(
        app,
        [
            "export",
            "mesh",
            str(slab),
            "-o",
            str(out),
            "--resolution",
            "40",
            "--level",
            "12.5",
            "--seen-tolerance",
            "0",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["frame"] == "capture" and report["counts"]["faces"] > 100
    ply = read_ply(out)
    assert "nerfcli frame: capture" in ply.comments
    z = _face_z(ply.vertices)
    near_face = np.minimum(np.abs(z - SLAB[0]), np.abs(z - SLAB[1]))
    assert near_face.max() < 1e-4, near_face.max()
    assert (np.abs(z - SLAB[1]) < 1e-4).sum() > 50 and (np.abs(z - SLAB[0]) < 1e-4).sum() > 50
    # normals point out of the slab: +z on the top face, -z on the bottom one (training frame)
    linear = np.linalg.inv(_capture_from_training())[:3, :3]
    normals = ply.normals @ linear.T
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    top = np.abs(z - SLAB[1]) < 1e-4
    assert (normals[top, 2] > 0.99).all() and (normals[~top, 2] < -0.99).all()
    # the field's constant colour, looked at along the normal
    np.testing.assert_array_equal(
        ply.colours, np.tile(np.round(np.array(COLOUR) * 255), (len(z), 1))
    )
    # faces wound outward in the capture frame too
    corners = ply.vertices[ply.faces]
    face_normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    assert ((face_normal * ply.normals[ply.faces].sum(1)).sum(-1) > 0).all()


def test_training_frame_and_decimation(slab: Path, tmp_path: Path) -> None:
    full, small = tmp_path / "full.ply", tmp_path / "small.ply"
    args = [
        "export",
        "mesh",
        str(slab),
        "--resolution",
        "40",
        "--level",
        "12.5",
        "--seen-tolerance",
        "0",
        "--frame",
        "training",
        "-q",
    ]
    assert runner.invoke(app, [*args, "-o", str(full)]).exit_code == 0
    assert runner.invoke(app, [*args, "-o", str(small), "--decimate", "4"]).exit_code == 0
    a, b = read_ply(full), read_ply(small)
    assert "nerfcli frame: training" in a.comments
    for ply in (a, b):
        z = ply.vertices[:, 2]
        assert np.minimum(np.abs(z - SLAB[0]), np.abs(z - SLAB[1])).max() < 1e-4
    assert len(b.faces) < len(a.faces) / 4


def test_only_what_the_views_see_is_kept(slab: Path, tmp_path: Path) -> None:
    # the cameras look down on the slab: its top face is where their median depth lies (the
    # level-12.5 face is 0.025 above it, 1 % of the camera distance), the bottom face is hidden
    out = tmp_path / "seen.ply"
    args = ["export", "mesh", str(slab), "-o", str(out), "-r", "40", "--level", "12.5"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    z = _face_z(read_ply(out).vertices)
    assert (np.abs(z - SLAB[1]) < 1e-4).all() and len(z) > 50
    assert report["details"]["vertices_marched"] > 2 * len(z) - 100
    # a tolerance under the 1 % gap between the face and the median depth keeps nothing
    result = runner.invoke(app, [*args, "--seen-tolerance", "0.002", "--force"])
    assert result.exit_code == 1 and "no training view sees" in result.output


def test_points_lie_on_the_top_face(slab: Path, tmp_path: Path) -> None:
    out = tmp_path / "points.ply"
    result = runner.invoke(
        app, ["export", "points", str(slab), "-o", str(out), "--num-points", "300", "--json"]
    )
    assert result.exit_code == 0, result.output
    ply = read_ply(out)
    assert len(ply.vertices) == 300 and "nerfcli frame: capture" in ply.comments
    z = _face_z(ply.vertices)
    # expected depth of a sharp but not infinitely sharp face: within a grid step of it
    assert np.abs(z - SLAB[1]).max() < 0.05, np.abs(z - SLAB[1]).max()
    linear = np.linalg.inv(_capture_from_training())[:3, :3]
    normals = ply.normals @ linear.T
    assert (normals[:, 2] / np.linalg.norm(normals, axis=-1) > 0.99).all()
    assert np.abs(ply.colours.astype(float) - np.array(COLOUR) * 255).max() <= 2


def test_cameras_come_back_as_the_capture_poses(slab: Path, tmp_path: Path) -> None:
    out = tmp_path / "cams"
    result = runner.invoke(app, ["export", "cameras", str(slab), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads((out / "transforms.json").read_text())
    assert document["nerfcli_frame"] == "capture" and len(document["frames"]) == 5
    capture = _capture_from_training()
    for frame, c2w in zip(document["frames"], _cameras()):
        matrix = np.array(frame["transform_matrix"])
        np.testing.assert_allclose(
            matrix[:3, 3], capture[:3, :3] @ c2w[:, 3] + capture[:3, 3], atol=1e-5
        )
        np.testing.assert_allclose(matrix[:3, :3], capture[:3, :3] @ c2w[:, :3] / 2.0, atol=1e-6)
        assert frame["fl_x"] == 30.0 and frame["cx"] == 16.5  # pixel centres, nerfstudio's
    assert [f["nerfcli_split"] for f in document["frames"]] == [
        "test",
        "train",
        "train",
        "train",
        "train",
    ]
    frustums = read_ply(out / "cameras.ply")
    assert len(frustums.vertices) == 40 and len(frustums.edges) == 55
    apexes = frustums.vertices[::8]
    centres = np.array([np.array(f["transform_matrix"])[:3, 3] for f in document["frames"]])
    np.testing.assert_allclose(apexes, centres, atol=1e-5)
    again = runner.invoke(app, ["export", "cameras", str(slab), "-o", str(out)])
    assert again.exit_code == 1 and "--force" in again.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--bbox", "0,0,0,1,-1,1"], "empty crop box"),
        (["--bbox", "2,2,2,3,3,3"], "does not meet the model's box"),
        (["--bbox", "1,2,3"], "expected 6 numbers"),
        (["--level", "1e9"], "no surface: the density stays below the level 1e+09"),
        (["--resolution", "4096"], "--resolution 4096 needs about"),
    ],
)
def test_bad_requests_are_one_line_errors(slab: Path, tmp_path: Path, args, message) -> None:
    out = tmp_path / "m.ply"
    result = runner.invoke(
        app, ["export", "mesh", str(slab), "-o", str(out), "--resolution", "16", *args]
    )
    assert result.exit_code in (1, 2), result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output and not out.exists()


def test_cup_cameras_and_sparse_points_are_colmaps(cup_dir: Path, tmp_path: Path) -> None:
    """On the real cup capture (walk-around frame, scaled and rotated): the exported camera
    centres and sparse points are COLMAP's own world coordinates."""
    from nerfcli.data.formats import load_scene
    from nerfcli.data.formats.colmap import qvec_to_rotmat
    from nerfcli.data.formats.colmap_io import read_model

    cfg = with_values(Config(), "data", ndc=False, scene_type="unbounded", factor=8)
    scene = load_scene(cup_dir, cfg.data).without_images()
    assert not np.allclose(scene.world_from_file, np.eye(4))  # a real change of frame
    ckpt = save_checkpoint(
        Checkpoint(config=cfg, model_state={}, scene=scene, step=0), tmp_path / "ckpt.pt"
    )
    out = tmp_path / "cams"
    result = runner.invoke(app, ["export", "cameras", str(ckpt), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    model = read_model(cup_dir / "sparse" / "0")
    centres = {im.name: -qvec_to_rotmat(im.qvec).T @ im.tvec for im in model.images}
    document = json.loads((out / "transforms.json").read_text())
    assert document["ply_file_path"] == "sparse_points.ply"
    for frame in document["frames"]:
        name = Path(frame["file_path"]).name
        assert (out / frame["file_path"]).resolve().is_file()
        np.testing.assert_allclose(
            np.array(frame["transform_matrix"])[:3, 3], centres[name], atol=1e-4
        )
    points = read_ply(out / "sparse_points.ply")
    np.testing.assert_allclose(points.vertices, model.points.xyz, atol=1e-4)
    np.testing.assert_array_equal(points.colours, model.points.rgb)


def test_points_at_the_median_depth(slab: Path, tmp_path: Path) -> None:
    # the density rises linearly from 0.05 above the top face (feature 0 there, 250 per unit
    # inside): along a ray straight down T = 1/2 where 125 s^2 = ln 2, s = 0.0745 past z = 0.40,
    # i.e. z = 0.3255 (slanted rays a little higher); the render's quadrature holds each
    # sample's density over its 0.05 step, so within a step of that
    out = tmp_path / "median.ply"
    args = ["export", "points", str(slab), "-o", str(out), "-n", "300", "--depth", "median"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["details"]["depth"] == "median"
    z = _face_z(read_ply(out).vertices)
    assert len(z) == 300 and (np.abs(z - 0.3255) < 0.05).all(), (z.min(), z.max())
    assert "median depth" in " ".join(read_ply(out).comments)


def test_points_and_cameras_refuse_bad_targets(slab: Path, tmp_path: Path) -> None:
    existing = tmp_path / "points.ply"
    existing.write_text("keep me")
    cases = [
        (["points", str(slab), "-o", str(existing)], "already exists; pass --force"),
        (["points", str(slab), "-o", str(tmp_path / "no" / "p.ply")], "does not exist"),
        (["mesh", str(slab), "-o", str(existing)], "already exists; pass --force"),
        (["cameras", str(slab), "-o", str(existing)], "not a folder"),
        (["cameras", str(slab), "-o", str(tmp_path / "no" / "cams")], "does not exist"),
        (["points", str(tmp_path / "missing.pt")], "missing.pt"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["export", *args, "--json"])
        assert result.exit_code == 1, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)
        assert "Traceback" not in result.output and result.stdout.strip() == ""
    assert existing.read_text() == "keep me"
    assert not (tmp_path / "no").exists()
