"""nerf export's parts on closed forms: PLY round trip, the frame maps, marching cubes on an
analytic sphere, decimation, the memory estimate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfcli.data.cameras import intrinsics
from nerfcli.data.rays import ndc_rays
from nerfcli.data.scene import Scene
from nerfcli.errors import NerfError
from nerfcli.export import frames, mesh
from nerfcli.export.ply import PlyData, read_ply, write_ply
from nerfcli.export.region import MarchRegion, cameras_focus, training_to_ray_torch


def _scene(world_from_file: np.ndarray | None = None, ndc: bool = False, views: int = 4) -> Scene:
    c2w = np.tile(np.eye(4)[:3], (views, 1, 1)).astype(np.float32)
    c2w[:, 0, 3] = np.linspace(-0.2, 0.2, views)
    return Scene(
        root=Path("/nowhere"),
        format="llff",
        c2w=c2w,
        K=np.repeat(intrinsics(30, 40, 35.0)[None], views, 0),
        height=30,
        width=40,
        near=0.0 if ndc else 1.0,
        far=1.0 if ndc else 5.0,
        bounds=np.tile([[1.0, 5.0]], (views, 1)).astype(np.float32),
        splits={"train": list(range(views)), "val": [], "test": []},
        render_poses=c2w[:1],
        render_path="spiral",
        kind="forward" if ndc else "object",
        ndc=ndc,
        world_from_file=np.eye(4) if world_from_file is None else world_from_file,
    )


def _similarity(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    out = np.eye(4)
    out[:3, :3] = 0.37 * q
    out[:3, 3] = rng.normal(size=3)
    return out


def test_ply_round_trip_and_comments(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = PlyData(
        vertices=rng.normal(size=(7, 3)),
        normals=rng.normal(size=(7, 3)),
        colours=rng.integers(0, 256, (7, 3)).astype(np.uint8),
        faces=np.array([[0, 1, 2], [2, 3, 6]]),
        edges=np.array([[0, 5], [4, 6]]),
        comments=["nerfcli frame: capture", "a  second\tline"],
    )
    path = write_ply(tmp_path / "x.ply", data)
    back = read_ply(path)
    np.testing.assert_allclose(back.vertices, data.vertices, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(back.normals, data.normals, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(back.colours, data.colours)
    np.testing.assert_array_equal(back.faces, data.faces)
    np.testing.assert_array_equal(back.edges, data.edges)
    assert back.comments == ["nerfcli frame: capture", "a second line"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ply"]  # no temp file left
    header = path.read_bytes().split(b"end_header")[0].decode()
    assert "format binary_little_endian 1.0" in header and "element face 2" in header


def test_ply_refuses_bad_indices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="out of range"):
        write_ply(
            tmp_path / "x.ply", PlyData(vertices=np.zeros((2, 3)), faces=np.array([[0, 1, 2]]))
        )
    assert not list(tmp_path.iterdir())


@settings(max_examples=25, deadline=None)
@given(x=st.floats(-3, 3), y=st.floats(-3, 3), depth=st.floats(1.05, 40.0))
def test_ndc_inverse_matches_ndc_rays(x: float, y: float, depth: float) -> None:
    """A training-frame point on a camera ray lands, through training_to_ndc, on that ray's NDC
    line (nerfcli.data.rays.ndc_rays), and ndc_to_training brings it back."""
    scene = _scene(ndc=True)
    point = np.array([[x, y, -depth]])
    ndc = frames.training_to_ndc(scene, point)
    np.testing.assert_allclose(frames.ndc_to_training(scene, ndc), point, rtol=1e-6, atol=1e-6)
    origin = torch.tensor([[0.1, -0.05, 0.0]])
    direction = torch.tensor(point, dtype=torch.float32) - origin
    o, d = ndc_rays(30, 40, 35.0, 1.0, origin, direction)
    # the NDC point is o + s d for some s in [0, 1]
    s = (ndc[0, 2] - o[0, 2].item()) / d[0, 2].item()
    on_line = (o + s * d).numpy()[0]
    np.testing.assert_allclose(on_line, ndc[0], rtol=1e-4, atol=1e-4)
    torch_ndc = training_to_ray_torch(scene)(torch.tensor(point, dtype=torch.float64))
    np.testing.assert_allclose(torch_ndc.numpy(), ndc, rtol=1e-9)


def test_capture_frame_undoes_world_from_file() -> None:
    world_from_file = _similarity(3)
    scene = _scene(world_from_file)
    file_points = np.random.default_rng(1).normal(size=(5, 3))
    training = frames.transform_points(world_from_file, file_points)
    back = frames.transform_points(frames.output_transform(scene, "capture"), training)
    np.testing.assert_allclose(back, file_points, atol=1e-12)
    np.testing.assert_allclose(frames.output_transform(scene, "training"), np.eye(4))
    assert frames.frame_scale(frames.output_transform(scene, "capture")) == pytest.approx(1 / 0.37)
    with pytest.raises(NerfError, match="--frame"):
        frames.output_transform(scene, "ndc")


def test_poses_through_a_similarity_stay_rotations() -> None:
    scene = _scene(_similarity(5))
    poses = frames.transform_poses(frames.file_from_training(scene), scene.c2w)
    for pose in poses:
        np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-9)
        assert np.linalg.det(pose[:3, :3]) == pytest.approx(1.0)
    centres = frames.transform_points(frames.file_from_training(scene), scene.c2w[:, :, 3])
    np.testing.assert_allclose(poses[:, :3, 3], centres)


def test_cameras_focus_is_where_the_axes_meet() -> None:
    target = np.array([0.3, -0.2, 0.5])
    c2w = []
    for angle in np.linspace(0, 2 * np.pi, 7, endpoint=False):
        position = target + 2.0 * np.array([np.cos(angle), np.sin(angle), 0.4])
        back = (position - target) / np.linalg.norm(position - target)
        right = np.cross([0, 0, 1.0], back)
        right /= np.linalg.norm(right)
        c2w.append(np.stack([right, np.cross(back, right), back, position], 1))
    scene = _scene()
    scene.c2w = np.array(c2w, np.float32)
    scene.splits = {"train": list(range(7))}
    focus, half = cameras_focus(scene)
    np.testing.assert_allclose(focus, target, atol=1e-5)
    assert half == pytest.approx(0.5 * 2.0 * np.sqrt(1 + 0.16), rel=1e-5)


def _sphere_grid(resolution: int, radius: float = 0.6):
    region = MarchRegion(np.full(3, -1.0), np.full(3, 1.0), "training", lambda p: p, lambda p: p)
    axes = mesh.grid_axes(region, resolution)
    x, y, z = np.meshgrid(*axes, indexing="ij")
    density = 100.0 * np.clip(radius - np.sqrt(x**2 + y**2 + z**2), 0, None)  # [R, R, R]
    return region, axes, density.astype(np.float32)


def test_marching_cubes_finds_the_sphere_with_outward_faces() -> None:
    region, axes, grid = _sphere_grid(48)
    vertices, faces = mesh.marching_cubes(grid, 10.0, region, axes)  # |x| = 0.5
    radius = np.linalg.norm(vertices, axis=-1)
    assert np.abs(radius - 0.5).max() < 0.01
    corners = vertices[faces]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    assert ((normal * corners.mean(1)).sum(-1) > 0).mean() == 1.0
    flipped = mesh.orient_faces(vertices, faces[:, ::-1], vertices / radius[:, None])
    np.testing.assert_array_equal(np.sort(flipped, 1), np.sort(faces, 1))
    corners = vertices[flipped]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    assert ((normal * corners.mean(1)).sum(-1) > 0).all()


def test_no_surface_is_a_one_line_error() -> None:
    region, axes, grid = _sphere_grid(16)
    with pytest.raises(NerfError, match="no surface: the density stays below the level 1e"):
        mesh.marching_cubes(grid, 1e6, region, axes)


def test_decimation_keeps_the_surface_with_fewer_faces() -> None:
    region, axes, grid = _sphere_grid(64)
    vertices, faces = mesh.marching_cubes(grid, 10.0, region, axes)
    step = axes[0][1] - axes[0][0]
    small_v, small_f = mesh.decimate(vertices, faces, 3 * step)
    assert len(small_f) < 0.2 * len(faces) and len(small_f) > 100
    assert small_f.max() < len(small_v) and len(np.unique(small_f)) == len(small_v)
    assert np.abs(np.linalg.norm(small_v, axis=-1) - 0.5).max() < 2 * step
    assert (small_f[:, 0] != small_f[:, 1]).all() and (small_f[:, 1] != small_f[:, 2]).all()


def test_memory_estimate_refuses_up_front() -> None:
    assert mesh.memory_estimate(256) > 13 * 256**3
    with pytest.raises(
        NerfError, match=r"--resolution 2048 needs about 1\d\d\.\d GB .*use --resolution \d+"
    ):
        mesh.check_memory(2048, available=8 * 10**9)
    assert mesh.check_memory(64, available=8 * 10**9) == mesh.memory_estimate(64)


def test_ndc_region_is_what_the_images_see() -> None:
    from types import SimpleNamespace

    from nerfcli.export.region import march_region

    scene = _scene(ndc=True)  # far bound 5: NDC z at most 1 - 2 / 5.5
    box = torch.tensor([[-1.5, -1.67, -1.0], [1.5, 1.67, 1.0]])
    model = SimpleNamespace(field=SimpleNamespace(aabb=box))  # a TensoRF model's box
    region = march_region(model, scene, None)
    np.testing.assert_allclose(region.lo, [-1.0, -1.0, -1.0])
    np.testing.assert_allclose(region.hi, [1.0, 1.0, 1.0 - 2.0 / 5.5])
    assert region.space == "ndc"
    cropped = march_region(model, scene, [-0.5, -0.5, -0.5, 0.5, 3.0, 0.5])
    np.testing.assert_allclose(cropped.hi, [0.5, 1.67, 0.5], rtol=1e-6)
    with pytest.raises(NerfError, match="empty crop box"):
        march_region(model, scene, [0, 0, 0, 0, 1, 1])


def test_contracted_region_maps_back_to_the_grid() -> None:
    """Unbounded scenes: the crop around where the cameras look, in the contracted grid cube;
    its points map to the training frame and back through the model's own contraction."""
    from dataclasses import replace

    from nerfcli.export.region import march_region
    from nerfcli.models.config import Config, with_values
    from nerfcli.models.registry import build_model

    cfg = Config()
    tensorf = replace(
        cfg.model.tensorf,
        contraction="linf",
        grid_init=(8, 8, 8),
        grid_final=(8, 8, 8),
        upsample_steps=(),
        alpha_mask_steps=(),
    )
    cfg = with_values(replace(cfg, model=replace(cfg.model, tensorf=tensorf)), "data", ndc=False)
    model = build_model(cfg, scene_box=np.array([[-2.0] * 3, [2.0] * 3], np.float32))
    scene = _scene()
    region = march_region(model, scene, None)
    assert region.space == "contracted"
    assert (region.lo > -1).all() and (region.hi < 1).all() and (region.hi > region.lo).all()
    grid = np.random.default_rng(0).uniform(region.lo, region.hi, (50, 3))
    world = region.to_ray(grid)
    back = model.field.normalize(torch.as_tensor(world, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(back, grid, atol=1e-5)
    wide = march_region(model, scene, [-50, -50, -50, 50, 50, 50])  # far out: the shell
    assert (wide.hi > 0.9).all() and (wide.lo < -0.9).all()


def test_depth_edges_mark_the_outline_only() -> None:
    from nerfcli.export.points import depth_edges

    depth = np.full((8, 10), 2.0)
    depth[:, 5:] = 6.0  # a step: columns 4 and 5 border it
    depth[0, 0] = 2.05  # noise below 5 %
    edges = depth_edges(depth, 0.05)
    assert edges[:, 4:6].all() and not edges[:, :4].any() and not edges[:, 6:].any()
    assert not depth_edges(depth, 0.0).any()
