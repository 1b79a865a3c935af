"""COLMAP model reading/writing and the imgs2poses conversion, checked against known geometry."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nerfcli.data.formats import colmap, colmap_binary, colmap_io, colmap_model, colmap_text
from nerfcli.data.formats.colmap_model import Camera, ColmapImage, ColmapModel, Points3D
from nerfcli.data.formats.poses_bounds import read_poses_bounds
from nerfcli.errors import DataError
from tests.colmap_scenes import build_capture, make_image

FORMATS = ("bin", "txt")


def points_model(
    images: list[ColmapImage], xyz: np.ndarray, tracks: list[list[int]], cameras=None
) -> ColmapModel:
    """A model whose point m is seen by the image ids in tracks[m]."""
    return ColmapModel(
        path=Path("."),
        format="bin",
        cameras=cameras or [Camera(1, "SIMPLE_PINHOLE", 40, 30, np.array([25.0, 20.0, 15.0]))],
        images=images,
        points=Points3D(
            ids=np.arange(1, len(xyz) + 1, dtype=np.uint64),
            xyz=np.asarray(xyz, dtype=np.float64),
            rgb=np.zeros((len(xyz), 3), dtype=np.uint8),
            error=np.zeros(len(xyz)),
            track_lengths=np.array([len(t) for t in tracks], dtype=np.int64),
            track_image_ids=np.array([i for t in tracks for i in t], dtype=np.uint32),
            track_point2d_idxs=np.array([j for t in tracks for j in range(len(t))], np.uint32),
        ),
    )


def identity_image(image_id: int, name: str, tvec=(0.0, 0.0, 0.0)) -> ColmapImage:
    return ColmapImage(image_id, np.array([1.0, 0.0, 0.0, 0.0]), np.array(tvec), 1, name)


# ----------------------------------------------------------------------------- closed form


def test_identity_camera_gives_the_llff_axis_swap_and_percentile_bounds():
    # World-to-camera = identity: COLMAP axes [right, down, forward] = world x, y, z, so the
    # stored columns [down, right, back] are [y, x, -z]. Its points sit at depths 2, 5, 11
    # (sideways offsets do not change depth). Linear percentiles of three sorted values:
    # 0.1% -> 2 + 0.002 * (5 - 2) = 2.006; 99.9% -> 5 + 0.998 * (11 - 5) = 10.988.
    xyz = [[0.3, -0.2, 2.0], [-1.0, 0.5, 5.0], [2.0, 2.0, 11.0]]
    result = colmap.colmap_to_poses_bounds(
        points_model([identity_image(1, "a.png")], xyz, [[1], [1], [1]])
    )
    expected = np.array(
        [
            [0.0, 1.0, 0.0, 0.0, 30.0],  # rows x, y, z; columns down, right, back, centre, hwf
            [1.0, 0.0, 0.0, 0.0, 40.0],
            [0.0, 0.0, -1.0, 0.0, 25.0],
        ]
    )
    np.testing.assert_allclose(result.poses[0], expected, atol=1e-15)
    np.testing.assert_allclose(result.bounds[0], [2.006, 10.988], rtol=1e-12)
    assert result.names == ["a.png"]
    assert (result.height, result.width, result.focal) == (30, 40, 25.0)


def test_camera_centre_is_minus_r_transpose_t_and_depth_follows_it():
    images = [identity_image(1, "a.png"), identity_image(2, "b.png", tvec=(1.0, 2.0, 3.0))]
    xyz = [[0.0, 0.0, 2.0], [0.0, 0.0, 4.0], [5.0, 5.0, 7.0]]
    result = colmap.colmap_to_poses_bounds(points_model(images, xyz, [[1, 2], [1, 2], [2]]))
    np.testing.assert_allclose(result.poses[1, :, 3], [-1.0, -2.0, -3.0], atol=1e-15)
    # b's depths are z - (-3): 5, 7, 10 -> 5 + 0.002 * 2 = 5.004 and 7 + 0.998 * 3 = 9.994.
    np.testing.assert_allclose(result.bounds[1], [5.004, 9.994], rtol=1e-12)
    # a's depths are 2 and 4: 2 + 0.001 * 2 = 2.002 and 2 + 0.999 * 2 = 3.998.
    np.testing.assert_allclose(result.bounds[0], [2.002, 3.998], rtol=1e-12)


def test_rotation_about_y_by_90_degrees():
    # A camera at (1, 0, 0) looking along world +x: right = -z, down = +y, forward = +x.
    axes = np.stack([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], 1)  # columns
    image = make_image(1, "a.png", axes, centre=np.array([1.0, 0.0, 0.0]))
    xyz = [[3.0, 0.0, 0.0], [5.0, 1.0, 1.0], [11.0, 0.0, -2.0]]  # depths 2, 4, 10
    result = colmap.colmap_to_poses_bounds(points_model([image], xyz, [[1], [1], [1]]))
    stored = np.array(
        [
            [0.0, 0.0, -1.0, 1.0],  # columns: down, right, back (= -forward), centre
            [1.0, 0.0, 0.0, 0.0],
            [0.0, -1.0, 0.0, 0.0],
        ]
    )
    np.testing.assert_allclose(result.poses[0, :, :4], stored, atol=1e-15)
    # 0.1%: 2 + 0.002 * (4 - 2) = 2.004; 99.9%: 4 + 0.998 * (10 - 4) = 9.988.
    np.testing.assert_allclose(result.bounds[0], [2.004, 9.988], rtol=1e-12)


# ----------------------------------------------------------------------------- known captures


@pytest.mark.parametrize("fmt", FORMATS)
def test_known_capture_round_trips_through_files(tmp_path, fmt):
    capture = build_capture(n=6, seed=3)
    colmap_io.write_model(capture.model, tmp_path, fmt)
    model = colmap_io.read_model(tmp_path)
    assert model.format == fmt
    result = colmap.colmap_to_poses_bounds(model)
    names, poses, bounds = capture.expected()
    assert result.names == names
    np.testing.assert_allclose(result.poses, poses, atol=1e-12)
    np.testing.assert_allclose(result.bounds, bounds, rtol=1e-12)
    assert result.warnings == []
    assert result.poses_bounds.shape == (6, 17)


def test_binary_and_text_give_identical_models_and_rows(tmp_path):
    capture = build_capture(n=5, seed=4)
    colmap_io.write_model(capture.model, tmp_path / "bin", "bin")
    colmap_io.write_model(capture.model, tmp_path / "txt", "txt")
    from_bin = colmap_io.read_model(tmp_path / "bin")
    from_txt = colmap_io.read_model(tmp_path / "txt")
    for a, b in zip(from_bin.images, from_txt.images, strict=True):
        assert (a.image_id, a.name, a.camera_id) == (b.image_id, b.name, b.camera_id)
        np.testing.assert_array_equal(a.qvec, b.qvec)
        np.testing.assert_array_equal(a.xys, b.xys)
        np.testing.assert_array_equal(a.point3d_ids, b.point3d_ids)
    for field in ("ids", "xyz", "rgb", "error", "track_lengths", "track_image_ids"):
        np.testing.assert_array_equal(
            getattr(from_bin.points, field), getattr(from_txt.points, field)
        )
    np.testing.assert_array_equal(
        colmap.colmap_to_poses_bounds(from_bin).poses_bounds,
        colmap.colmap_to_poses_bounds(from_txt).poses_bounds,
    )


def test_rows_follow_text_name_order_and_tracks_map_by_image_id(tmp_path):
    # File order, id order and name order all differ, ids are not 1..N: LLFF's `cams[id - 1]`
    # would index out of range here; mapping by id must give each row its own points.
    names = ["2.png", "10.png", "1.png", "11.png"]
    capture = build_capture(names=names, image_ids=[40, 7, 12, 3], seed=5)
    colmap_io.write_model(capture.model, tmp_path, "bin")
    result = colmap.colmap_to_poses_bounds(colmap_io.read_model(tmp_path))
    assert result.names == ["1.png", "10.png", "11.png", "2.png"]
    assert result.image_ids == [12, 7, 3, 40]
    expected_names, poses, bounds = capture.expected()
    assert expected_names == result.names
    np.testing.assert_allclose(result.poses, poses, atol=1e-12)
    np.testing.assert_allclose(result.bounds, bounds, rtol=1e-12)


def test_hwf_comes_from_the_first_camera_in_the_file_and_mixed_cameras_warn(tmp_path):
    first = Camera(5, "SIMPLE_PINHOLE", 32, 24, np.array([28.0, 16.0, 12.0]))
    second = Camera(2, "SIMPLE_PINHOLE", 32, 24, np.array([35.0, 16.0, 12.0]))
    capture = build_capture(n=3, cameras=[first, second], image_camera_ids=[2, 2, 5], seed=6)
    colmap_io.write_model(capture.model, tmp_path, "txt")
    result = colmap.colmap_to_poses_bounds(colmap_io.read_model(tmp_path))
    np.testing.assert_array_equal(result.poses[:, :, 4], [[24.0, 32.0, 28.0]] * 3)
    assert result.camera.camera_id == 5
    assert any("2 cameras with different intrinsics" in w for w in result.warnings)


def test_a_point_listed_twice_in_one_track_counts_once():
    images = [identity_image(1, "a.png")]
    xyz = [[0.0, 0.0, 2.0], [0.0, 0.0, 5.0], [0.0, 0.0, 11.0]]
    once = colmap.colmap_to_poses_bounds(points_model(images, xyz, [[1], [1], [1]]))
    twice = colmap.colmap_to_poses_bounds(points_model(images, xyz, [[1, 1], [1], [1, 1]]))
    np.testing.assert_array_equal(once.poses_bounds, twice.poses_bounds)
    assert twice.num_depths.tolist() == [3]


def test_points_behind_a_camera_are_left_out_with_a_warning():
    images = [identity_image(1, "a.png")]
    xyz = [[0.0, 0.0, 2.0], [0.0, 0.0, 5.0], [0.0, 0.0, 11.0], [0.0, 0.0, -4.0]]
    result = colmap.colmap_to_poses_bounds(points_model(images, xyz, [[1]] * 4))
    np.testing.assert_allclose(result.bounds[0], [2.006, 10.988], rtol=1e-12)
    assert any("behind their camera" in w for w in result.warnings)


def test_an_image_without_points_is_a_data_error():
    images = [identity_image(1, "a.png"), identity_image(2, "lonely.png")]
    xyz = [[0.0, 0.0, 2.0], [0.0, 0.0, 5.0]]
    with pytest.raises(DataError, match="lonely.png"):
        colmap.colmap_to_poses_bounds(points_model(images, xyz, [[1], [1]]))


def test_a_track_naming_an_unknown_image_is_a_data_error(tmp_path):
    images = [identity_image(1, "a.png")]
    model = points_model(images, [[0.0, 0.0, 2.0], [0.0, 0.0, 3.0]], [[1], [9]])
    with pytest.raises(DataError, match="image id 9"):
        colmap.colmap_to_poses_bounds(model)
    colmap_io.write_model(model, tmp_path, "bin")
    with pytest.raises(DataError, match="points3D.bin.*image id 9"):
        colmap_io.read_model(tmp_path)


# ----------------------------------------------------------------------------- camera models


def _model_with_camera(camera: Camera) -> ColmapModel:
    capture = build_capture(n=3, cameras=[camera], seed=7)
    return capture.model


@pytest.mark.parametrize(
    ("model_name", "params", "expected"),
    [
        ("SIMPLE_PINHOLE", [30.0, 16.0, 12.0], []),
        ("PINHOLE", [30.0, 30.0, 16.0, 12.0], []),
        ("PINHOLE", [30.0, 33.0, 16.0, 12.0], ["fx=30 != fy=33"]),
        ("SIMPLE_RADIAL", [30.0, 16.0, 12.0, 0.0], []),
        ("SIMPLE_RADIAL", [30.0, 16.0, 12.0, 0.05], ["distortion (k=0.05)"]),
        ("RADIAL", [30.0, 16.0, 12.0, 0.0, -0.01], ["distortion (k2=-0.01)"]),
        (
            "OPENCV",
            [30.0, 31.0, 16.0, 12.0, 0.1, 0.0, 0.0, 0.002],
            ["fx=30 != fy=31", "distortion (k1=0.1, p2=0.002)"],
        ),
    ],
)
def test_camera_model_warnings(model_name, params, expected):
    camera = Camera(1, model_name, 32, 24, np.array(params))
    result = colmap.colmap_to_poses_bounds(_model_with_camera(camera))
    assert len(result.warnings) == len(expected)
    for warning, fragment in zip(result.warnings, expected, strict=True):
        assert fragment in warning
    assert result.focal == params[0]


@pytest.mark.parametrize("model_name", ["OPENCV_FISHEYE", "FOV", "THIN_PRISM_FISHEYE"])
def test_non_pinhole_models_are_refused_with_the_fix(model_name):
    spec = colmap_model.MODELS_BY_NAME[model_name]
    params = np.array([30.0, 30.0, 16.0, 12.0] + [0.0] * (spec.num_params - 4))
    with pytest.raises(DataError, match=f"{model_name}.*image_undistorter"):
        colmap.colmap_to_poses_bounds(_model_with_camera(Camera(1, model_name, 32, 24, params)))


def test_every_camera_model_parses_in_both_formats(tmp_path):
    cameras = [
        Camera(k + 1, spec.name, 32, 24, np.arange(1.0, spec.num_params + 1))
        for k, spec in enumerate(colmap_model.CAMERA_MODELS)
    ]
    for fmt in FORMATS:
        colmap_binary.write_cameras_binary(cameras, tmp_path / "cameras.bin")
        colmap_text.write_cameras_text(cameras, tmp_path / "cameras.txt")
        read = (
            colmap_binary.read_cameras_binary(tmp_path / "cameras.bin")
            if fmt == "bin"
            else colmap_text.read_cameras_text(tmp_path / "cameras.txt")
        )
        assert [(c.camera_id, c.model) for c in read] == [(c.camera_id, c.model) for c in cameras]
        for a, b in zip(read, cameras, strict=True):
            np.testing.assert_array_equal(a.params, b.params)


# ----------------------------------------------------------------------------- quaternions


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4))
def test_quaternion_round_trip(values):
    q = np.array(values)
    if np.linalg.norm(q) < 1e-3:
        return
    q = q / np.linalg.norm(q)
    rotation = colmap.qvec_to_rotmat(q)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    back = colmap.rotmat_to_qvec(rotation)
    assert back[0] >= 0
    assert abs(back @ q) == pytest.approx(1.0)  # q and -q are the same rotation
    np.testing.assert_allclose(colmap.qvec_to_rotmat(back), rotation, atol=1e-12)


# ----------------------------------------------------------------------------- locating, writing


@pytest.mark.parametrize("given_path", ["scene", "scene/sparse", "scene/sparse/0"])
def test_locate_model_accepts_scene_sparse_and_model_folders(tmp_path, given_path):
    colmap_io.write_model(build_capture(n=3).model, tmp_path / "scene" / "sparse" / "0", "txt")
    location = colmap_io.locate_model(tmp_path / given_path)
    assert location.model_dir.resolve() == (tmp_path / "scene" / "sparse" / "0").resolve()
    assert location.scene_root.resolve() == (tmp_path / "scene").resolve()
    assert location.format == "txt"


def test_locate_model_reads_the_image_undistorter_layout(tmp_path):
    # `colmap image_undistorter` writes OUT/sparse/{cameras,images,points3D}.bin, no 0/.
    colmap_io.write_model(build_capture(n=3).model, tmp_path / "undistorted" / "sparse", "bin")
    location = colmap_io.locate_model(tmp_path / "undistorted")
    assert location.model_dir.name == "sparse"
    assert location.scene_root.resolve() == (tmp_path / "undistorted").resolve()


def test_locate_model_prefers_binary_and_lists_other_reconstructions(tmp_path):
    capture = build_capture(n=3)
    sparse = tmp_path / "sparse"
    colmap_io.write_model(capture.model, sparse / "0", "txt")
    colmap_io.write_model(capture.model, sparse / "0", "bin")
    colmap_io.write_model(capture.model, sparse / "1", "bin")
    location = colmap_io.locate_model(tmp_path)
    assert location.format == "bin"
    assert [p.name for p in location.other_models] == ["1"]


def test_locate_model_without_a_model_is_a_data_error(tmp_path):
    (tmp_path / "cameras.bin").write_bytes(b"")
    with pytest.raises(DataError, match="no COLMAP model"):
        colmap_io.locate_model(tmp_path)
    with pytest.raises(DataError, match="no such folder"):
        colmap_io.locate_model(tmp_path / "missing")


def test_written_poses_pass_the_loader_validation(tmp_path):
    result = colmap.colmap_to_poses_bounds(build_capture(n=4, seed=8).model)
    out = tmp_path / "poses_bounds.npy"
    colmap.save_poses_bounds(out, result.poses_bounds)
    loaded = read_poses_bounds(out)
    np.testing.assert_array_equal(loaded.poses.reshape(4, 15), result.poses_bounds[:, :15])
    np.testing.assert_array_equal(loaded.bounds, result.bounds)
    assert (loaded.height, loaded.width, loaded.focal) == (24, 32, 30.0)
    assert [p.name for p in tmp_path.iterdir()] == ["poses_bounds.npy"]  # no temp file left


def test_move_aside_never_overwrites(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (images / name).write_bytes(name.encode())
    assert [p.name for p in colmap.unregistered_images(images, ["b.png"])] == ["a.png", "c.png"]
    aside = tmp_path / "images_unregistered"
    aside.mkdir()
    (aside / "c.png").write_bytes(b"older")
    with pytest.raises(DataError, match="already exists"):
        colmap.move_aside([images / "a.png", images / "c.png"], aside)
    assert sorted(p.name for p in images.iterdir()) == ["a.png", "b.png", "c.png"]
    (aside / "c.png").unlink()
    moved = colmap.move_aside([images / "a.png", images / "c.png"], aside)
    assert [p.name for p in moved] == ["a.png", "c.png"]
    assert (aside / "c.png").read_bytes() == b"c.png"
    assert [p.name for p in images.iterdir()] == ["b.png"]


# ----------------------------------------------------------------------------- corrupt files


@pytest.mark.parametrize("stem", colmap_model.MODEL_FILES)
def test_every_truncation_of_a_binary_file_is_a_data_error(tmp_path, stem):
    capture = build_capture(n=2, num_points=4, seed=9)
    colmap_io.write_model(capture.model, tmp_path, "bin")
    path = tmp_path / f"{stem}.bin"
    data = path.read_bytes()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(DataError, match=f"{stem}.bin"):
            colmap_io.read_model(tmp_path)


def test_text_file_errors_name_the_file_and_line(tmp_path):
    colmap_io.write_model(build_capture(n=2, num_points=4).model, tmp_path, "txt")
    cameras = tmp_path / "cameras.txt"
    cameras.write_text("1 PINHOLE 32 24 30 30 16\n")
    with pytest.raises(DataError, match=r"cameras.txt: line 1: PINHOLE takes 4 parameters"):
        colmap_io.read_model(tmp_path)
    cameras.write_text("1 MYSTERY 32 24 30\n")
    with pytest.raises(DataError, match="unknown camera model 'MYSTERY'"):
        colmap_io.read_model(tmp_path)
    cameras.write_bytes(b"1 SIMPLE_PINHOLE 32 24 \xff 16 12\n")
    with pytest.raises(DataError, match="not valid UTF-8"):
        colmap_io.read_model(tmp_path)


def _base_model_files() -> dict[str, bytes]:
    capture = build_capture(n=3, num_points=8, seed=10)
    files = {}
    with tempfile.TemporaryDirectory() as folder:
        for fmt in FORMATS:
            colmap_io.write_model(capture.model, folder, fmt)
            for stem in colmap_model.MODEL_FILES:
                files[f"{stem}.{fmt}"] = (Path(folder) / f"{stem}.{fmt}").read_bytes()
    return files


BASE_FILES = _base_model_files()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(FORMATS),
    stem=st.sampled_from(colmap_model.MODEL_FILES),
    cut=st.floats(0.0, 1.0),
    edits=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=6),
)
def test_corrupt_files_load_or_raise_data_error(fmt, stem, cut, edits):
    name = f"{stem}.{fmt}"
    data = bytearray(BASE_FILES[name])
    for where, value in edits:
        data[int(where * (len(data) - 1))] = value
    data = data[: max(1, int(round(cut * len(data)))) if cut < 1.0 else len(data)]
    folder = Path(tempfile.mkdtemp())
    try:
        for other in colmap_model.MODEL_FILES:
            (folder / f"{other}.{fmt}").write_bytes(BASE_FILES[f"{other}.{fmt}"])
        (folder / name).write_bytes(bytes(data))
        try:
            model = colmap_io.read_model(folder)
            result = colmap.colmap_to_poses_bounds(model)
        except DataError as exc:
            assert str(exc)  # a message, and only ever a DataError
        else:
            assert np.isfinite(result.poses_bounds).all()
            assert (result.bounds[:, 0] > 0).all() and (
                result.bounds[:, 0] < result.bounds[:, 1]
            ).all()
    finally:
        shutil.rmtree(folder)


# ----------------------------------------------------------------------------- real capture


def test_cup_reproduces_imgs2poses(cup_dir):
    reference = np.load(cup_dir / "poses_bounds.npy")
    model = colmap_io.read_model(cup_dir / "sparse" / "0")
    result = colmap.colmap_to_poses_bounds(model)
    assert result.num_views == 77 == reference.shape[0]
    assert result.names[:4] == ["1.jpg", "10.jpg", "11.jpg", "12.jpg"]  # text order, not numbers
    assert np.abs(result.poses_bounds[:, :15] - reference[:, :15]).max() < 1e-6
    relative = np.abs(result.bounds - reference[:, 15:]) / np.abs(reference[:, 15:])
    assert relative.max() < 1e-6


def test_cup_converted_to_text_gives_the_same_rows(cup_dir, tmp_path):
    model = colmap_io.read_model(cup_dir / "sparse" / "0")
    colmap_io.write_model(model, tmp_path, "txt")
    again = colmap_io.read_model(tmp_path)
    np.testing.assert_array_equal(
        colmap.colmap_to_poses_bounds(again).poses_bounds,
        colmap.colmap_to_poses_bounds(model).poses_bounds,
    )
