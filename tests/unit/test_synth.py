"""The generated LLFF scene: layout, determinism, depth consistent with the poses, safe writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfcli.data import synthetic as synth
from nerfcli.data.formats.llff import load_llff_data
from nerfcli.data.formats.llff_frame import stored_to_training_axes
from nerfcli.data.formats.poses_bounds import read_poses_bounds
from nerfcli.data.rays import get_rays, rays_for_pixels
from nerfcli.errors import ConfigError, NerfError

TINY = {"views": 4, "height": 24, "width": 32}  # fast enough to render several times per test


@pytest.fixture(scope="module")
def small_scene(tmp_path_factory) -> tuple[Path, synth.SynthInfo]:
    out = tmp_path_factory.mktemp("synth") / "small"
    return out, synth.make_scene(out, preset="small", seed=0)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# ----------------------------------------------------------------------------- layout


def test_small_preset_loads_as_llff(small_scene):
    out, info = small_scene
    assert (info.num_views, info.height, info.width) == (16, 48, 64)
    assert info.focal == pytest.approx(0.875 * 64)
    scene = load_llff_data(out, factor=1)
    assert scene.images.shape == (16, 48, 64, 3)
    assert scene.depths.shape == (16, 48, 64)
    assert scene.i_test == [0, 8] == info.test_views
    np.testing.assert_allclose(scene.K[:, 0, 0], info.focal)
    # real pictures, not a constant fill: every channel spans a wide range
    assert (scene.images.max(axis=(0, 1, 2)) - scene.images.min(axis=(0, 1, 2)) > 0.5).all()
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == [f"image{k:03d}.png" for k in range(16)]
    assert sorted(p.name for p in (out / "depth").iterdir()) == [
        f"image{k:03d}.npy" for k in range(16)
    ]


def test_scene_json_describes_the_generator(small_scene):
    out, info = small_scene
    meta = json.loads((out / "scene.json").read_text())
    assert meta["generator"] == "nerfcli.synth"
    assert (meta["seed"], meta["preset"], meta["views"]) == (0, "small", 16)
    names = {shape["name"] for shape in meta["shapes"]}
    assert {"backdrop", "floor", "card_stripes", "card_dots", "box"} <= names
    assert sum(shape["type"] == "sphere" for shape in meta["shapes"]) == 2
    assert [c["image"] for c in meta["cameras"]] == [f"image{k:03d}.png" for k in range(16)]


def test_poses_are_orthonormal_and_face_down_minus_z(small_scene):
    out, _ = small_scene
    pb = read_poses_bounds(out)
    rotation = pb.poses[:, :, :3]  # [N, 3, 3] stored columns [down, right, back]
    eye = np.einsum("nji,njk->nik", rotation, rotation)
    np.testing.assert_allclose(eye, np.broadcast_to(np.eye(3), eye.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotation), 1.0, atol=1e-12)
    c2w = stored_to_training_axes(pb.poses)  # [N, 3, 4] [right, up, back]
    assert (c2w[:, 2, 2] > 0.98).all()  # back axis ~ +z: the cameras look down -z
    assert (c2w[:, 1, 1] > 0.98).all()  # up ~ +y
    assert (c2w[:, 0, 0] > 0.98).all()  # right ~ +x
    np.testing.assert_array_equal(pb.poses[:, :, 4], np.tile([48.0, 64.0, 56.0], (16, 1)))
    positions = c2w[:, :, 3]
    assert np.ptp(positions[:, 0]) > 1.0 and np.ptp(positions[:, 1]) > 0.6  # a grid, not a point
    assert np.abs(positions[:, 2]).max() < 0.2


def test_bounds_enclose_each_views_depth(small_scene):
    out, _ = small_scene
    pb = read_poses_bounds(out)
    for k in range(pb.num_views):
        depth = np.load(out / "depth" / f"image{k:03d}.npy")
        assert depth.dtype == np.float32 and depth.shape == (48, 64)
        assert np.isfinite(depth).all()
        near, far = pb.bounds[k]
        assert near < depth.min() and depth.max() < far
        assert near == pytest.approx(0.9 * depth.min(), rel=1e-6)
        assert far == pytest.approx(1.1 * depth.max(), rel=1e-6)


def test_held_out_views_sit_inside_the_grid():
    for views in (16, 20, 25):
        rows, columns = synth.grid_shape(views)
        assert rows * columns >= views
        cells = synth.view_order(views, rows, columns)
        assert sorted(cells) == sorted((r, c) for r in range(rows) for c in range(columns))[:views]
        for k in range(0, views, 8):
            row, column = cells[k]
            assert 0 < row < rows - 1 and 0 < column < columns - 1


# ----------------------------------------------------------------------------- depth vs poses


def test_depth_matches_the_analytic_hit_along_loader_rays(small_scene):
    """Cast each pixel's ray with the nerfcli.data.rays convention from the loaded (un-rescaled,
    un-recentered) pose; the hit's camera-space z equals the stored depth."""
    out, _ = small_scene
    scene = load_llff_data(out, factor=1, bd_factor=0, recenter=False)
    assert scene.scale == 1.0
    spec = synth.load_spec(out)
    rows, cols = np.meshgrid(np.arange(scene.height), np.arange(scene.width), indexing="ij")
    for view in (0, 5, 11):
        rays_o, rays_d = rays_for_pixels(
            scene.K[view], scene.c2w[view], cols.ravel().astype(np.float32), rows.ravel()
        )  # [P, 3] each
        origins = rays_o.numpy().astype(np.float64)
        directions = rays_d.numpy().astype(np.float64)
        t, index = spec.nearest(origins, directions)
        assert (index >= 0).all()
        points = origins + t[:, None] * directions  # [P, 3] world hit points
        c2w = scene.c2w[view].astype(np.float64)
        camera_z = ((points - c2w[:, 3]) @ c2w[:, :3])[:, 2]  # [P] camera frame, looks down -z
        np.testing.assert_allclose(-camera_z, scene.depths[view].ravel(), rtol=1e-5)


def test_back_projected_depth_lies_on_a_surface(small_scene):
    """Independent of the caster: pixel ray * stored depth lands on one of the shapes."""
    out, _ = small_scene
    pb = read_poses_bounds(out)
    c2w = stored_to_training_axes(pb.poses)  # [N, 3, 4] float64
    spec = synth.load_spec(out)
    K = np.array([[pb.focal, 0, 0.5 * pb.width], [0, pb.focal, 0.5 * pb.height], [0, 0, 1]])
    for view in (0, 8, 15):
        rays_o, rays_d = get_rays(pb.height, pb.width, K, c2w[view])  # [H, W, 3] each
        depth = np.load(out / "depth" / f"image{view:03d}.npy").astype(np.float64)  # [H, W]
        # the rays convention gives camera-frame directions with z = -1, so depth is the t
        points = rays_o.double().numpy() + depth[..., None] * rays_d.double().numpy()
        distance = spec.surface_distance(points.reshape(-1, 3))  # [H*W]
        assert distance.max() < 1e-5 * depth.max()
        # the backdrop (z = -6) and the floor (y = -1.2) are both in view
        on_backdrop = np.abs(points[..., 2] + synth.BACKDROP_DEPTH) < 1e-4
        on_floor = np.abs(points[..., 1] - synth.FLOOR_HEIGHT) < 1e-4
        assert on_backdrop.mean() > 0.2 and on_floor.mean() > 0.1


@settings(max_examples=60, deadline=None)
@given(
    origin=st.tuples(*[st.floats(-1.0, 1.0)] * 2, st.floats(-0.5, 0.5)),
    target=st.tuples(st.floats(-1.5, 1.5), st.floats(-1.3, 1.0), st.floats(-6.0, -2.0)),
)
def test_every_hit_is_on_the_surface_it_reports(origin, target):
    spec = synth.scene_spec(3)
    origins = np.array([origin], dtype=np.float64)
    directions = np.array([target], dtype=np.float64) - origins
    t, index = spec.nearest(origins, directions)
    assert np.isfinite(t[0]) and index[0] >= 0  # the backdrop catches every forward ray
    point = origins[0] + t[0] * directions[0]
    assert spec.shapes[index[0]].surface_distance(point[None])[0] < 1e-9
    # nothing lies before the hit: earlier points along the ray are off every surface
    for fraction in (0.5, 0.9, 0.99):
        before = origins[0] + fraction * t[0] * directions[0]
        for shape in spec.shapes:
            assert shape.hit_distance(before[None], directions)[0] >= (1 - fraction) * t[0] - 1e-9


def test_sphere_hit_closed_form():
    sphere = synth.Sphere("s", np.array([0.0, 0.0, -5.0]), 1.0, synth.Texture("plain", (1, 1, 1)))
    origins = np.zeros((3, 3))
    directions = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    t = sphere.hit_distance(origins, directions)
    np.testing.assert_allclose(t[:2], [4.0, 2.0])  # t scales with 1 / |d|
    assert np.isinf(t[2])  # 45 degrees off axis passes at 5 / sqrt(2) > 1


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    first = synth.make_scene(tmp_path / "a", seed=7, **TINY)
    synth.make_scene(tmp_path / "b", seed=7, **TINY)
    synth.make_scene(tmp_path / "c", seed=8, **TINY)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert a == b
    assert set(a) == set(c)
    assert a["poses_bounds.npy"] != c["poses_bounds.npy"]
    for k in range(first.num_views):
        assert a[f"images/image{k:03d}.png"] != c[f"images/image{k:03d}.png"]
        assert a[f"depth/image{k:03d}.npy"] != c[f"depth/image{k:03d}.npy"]


def test_overrides_and_validation(tmp_path):
    info = synth.make_scene(tmp_path / "s", preset="demo", views=3, height=20, width=30)
    assert (info.num_views, info.height, info.width, info.supersample) == (3, 20, 30, 2)
    assert read_poses_bounds(tmp_path / "s").poses.shape == (3, 3, 5)
    with pytest.raises(ConfigError, match="unknown scene preset"):
        synth.make_scene(tmp_path / "x", preset="huge")
    with pytest.raises(ConfigError, match="views"):
        synth.make_scene(tmp_path / "x", views=1)
    assert not (tmp_path / "x").exists()


def test_sfm_preset_paints_noise_and_reloads_from_scene_json(tmp_path):
    import imageio.v3 as iio

    from nerfcli.data.sfm.video import sharpness

    info = synth.make_scene(tmp_path / "t", preset="sfm", views=2, height=48, width=64)
    assert info.textured and (info.num_views, info.supersample) == (2, 2)
    assert json.loads((tmp_path / "t" / "scene.json").read_text())["textured"] is True
    spec = synth.load_spec(tmp_path / "t")
    kinds = {type(s).__name__: s.texture.kind for s in spec.shapes if hasattr(s, "texture")}
    assert set(kinds.values()) == {"noise"} and {"Plane", "Sphere"} <= set(kinds)
    plain = synth.scene_spec(0)
    assert [s.to_json()["center"] for s in spec.shapes] == [
        s.to_json()["center"] for s in plain.shapes
    ]  # same geometry, new paint
    pose = synth.make_cameras(2, np.random.default_rng([0, 2]))[0][1]
    rgb, _ = synth.render_view(spec, pose, 48, 64, info.focal, 2)
    written = iio.imread(tmp_path / "t" / "images" / "image001.png")
    np.testing.assert_array_equal(np.round(rgb * 255).astype(np.uint8), written)
    flat, _ = synth.render_view(plain, pose, 48, 64, info.focal, 2)
    assert sharpness(rgb * 255) > 2 * sharpness(flat * 255)  # more detail for SIFT


# ----------------------------------------------------------------------------- safe writes


def test_refuses_to_overwrite_and_force_replaces_only_scenes(tmp_path):
    out = tmp_path / "scene"
    synth.make_scene(out, seed=1, **TINY)
    before = _files(out)
    with pytest.raises(NerfError, match="--force"):
        synth.make_scene(out, seed=2, **TINY)
    assert _files(out) == before
    synth.make_scene(out, seed=2, force=True, **TINY)
    assert _files(out) != before
    assert json.loads((out / "scene.json").read_text())["seed"] == 2

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(NerfError, match="not a generated scene"):
        synth.make_scene(precious, force=True, **TINY)
    assert (precious / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious", "scene"]  # no temp left

    empty = tmp_path / "empty"
    empty.mkdir()
    assert synth.make_scene(empty, **TINY).num_views == 4  # an empty folder is fine
    nested = tmp_path / "new" / "deeper"
    assert synth.make_scene(nested, **TINY).path == nested  # parents are created
