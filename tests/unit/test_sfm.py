"""The parts of `nerf sfm` that need no pycolmap: Umeyama alignment, sharpness, video frames,
transforms.json, photo and target checks, the atomic commit, and the missing-pycolmap message."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfcli.data.formats.colmap import colmap_c2w, rotmat_to_qvec
from nerfcli.data.formats.colmap_model import Camera, ColmapImage, ColmapModel, Points3D
from nerfcli.data.sfm import colmap as sfm_colmap
from nerfcli.data.sfm import mapping as sfm_mapping
from nerfcli.data.sfm.align import pose_errors, umeyama
from nerfcli.data.sfm.inputs import check_photos, check_targets, commit, make_targets
from nerfcli.data.sfm.transforms import APPLIED_TRANSFORM, camera_params, transforms_doc
from nerfcli.data.sfm.video import extract_frames, sharpness
from nerfcli.errors import DataError, NerfError


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# ----------------------------------------------------------------------------- umeyama


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.01, 100.0), n=st.integers(3, 40))
def test_umeyama_recovers_a_known_similarity(seed, scale, n):
    rng = np.random.default_rng(seed)
    src = rng.normal(size=(n, 3))
    rotation, translation = random_rotation(rng), rng.normal(size=3) * 10
    dst = scale * src @ rotation.T + translation
    fit = umeyama(src, dst)
    assert fit.scale == pytest.approx(scale, rel=1e-8)
    np.testing.assert_allclose(fit.rotation, rotation, atol=1e-8)
    np.testing.assert_allclose(fit.translation, translation, atol=1e-6 * (1 + scale))
    np.testing.assert_allclose(fit.apply(src), dst, atol=1e-6 * (1 + scale))


def test_umeyama_returns_a_rotation_for_mirrored_points():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(10, 3))
    dst = src * np.array([1.0, 1.0, -1.0])  # a reflection: the best proper rotation is not it
    fit = umeyama(src, dst)
    assert np.linalg.det(fit.rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(fit.rotation @ fit.rotation.T, np.eye(3), atol=1e-12)


def test_umeyama_fits_planar_points_and_refuses_too_few():
    rng = np.random.default_rng(1)
    src = np.c_[rng.normal(size=(8, 2)), np.zeros(8)]  # cameras on a plane, as forward-facing
    rotation = random_rotation(rng)
    fit = umeyama(src, 2.0 * src @ rotation.T)
    np.testing.assert_allclose(fit.rotation, rotation, atol=1e-10)
    with pytest.raises(ValueError, match="at least 3"):
        umeyama(src[:2], src[:2])


def test_pose_errors_are_zero_for_an_exact_copy_and_measure_an_offset():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(6, 3))
    directions = rng.normal(size=(6, 3))
    rotation = random_rotation(rng)
    ref_centres = 3.0 * centres @ rotation.T + 1.0
    errors = pose_errors(centres, directions, ref_centres, directions @ rotation.T)
    assert errors.median_centre_error_pct < 1e-9 and errors.max_direction_error_deg < 1e-6
    tilted = directions.copy()
    tilted[0] = np.cross(directions[0], [0.0, 0.0, 1.0])  # 90 degrees off
    errors = pose_errors(centres, tilted, ref_centres, directions @ rotation.T)
    assert errors.max_direction_error_deg == pytest.approx(90.0)
    assert errors.extent == pytest.approx(
        max(np.linalg.norm(a - b) for a in ref_centres for b in ref_centres)
    )


# ----------------------------------------------------------------------------- sharpness


def test_sharpness_is_the_variance_of_the_laplacian():
    grey = np.zeros((5, 5), dtype=np.float32)
    grey[2, 2] = 10.0
    # Interior Laplacian [3, 3]: -40 at the centre, 10 at its 4 neighbours, 0 at the corners.
    expected = np.var([-40.0, 10, 10, 10, 10, 0, 0, 0, 0])
    assert sharpness(grey) == pytest.approx(expected)
    assert sharpness(np.full((8, 8, 3), 128, np.uint8)) == 0.0


def test_sharpness_ranks_a_blurred_copy_lower():
    rng = np.random.default_rng(3)
    sharp = rng.integers(0, 256, (40, 60, 3)).astype(np.float32)
    blurred = sharp.copy()
    for _ in range(3):  # box blur
        blurred[1:-1, 1:-1] = (
            blurred[:-2, 1:-1] + blurred[2:, 1:-1] + blurred[1:-1, :-2] + blurred[1:-1, 2:]
        ) / 4.0
    assert sharpness(blurred) < 0.2 * sharpness(sharp)


# ----------------------------------------------------------------------------- video frames


def write_video(path: Path, frames: np.ndarray, fps: float) -> Path:
    import imageio.v3 as iio

    iio.imwrite(path, frames, plugin="FFMPEG", fps=fps)
    return path


def test_extract_frames_keeps_one_frame_per_window_or_the_sharpest(tmp_path):
    rng = np.random.default_rng(4)
    flat = np.full((48, 64, 3), 120, np.uint8)
    frames = np.stack([flat] * 20)  # 2 s at 10 fps; windows of 5 frames at fps 2
    sharp_at = [3, 6, 12, 19]  # one detailed frame in each window
    for k in sharp_at:
        frames[k] = rng.integers(0, 256, flat.shape, dtype=np.uint8)
    video = write_video(tmp_path / "clip.mp4", frames, fps=10)

    plain = extract_frames(video, tmp_path / "plain", fps=2.0)
    assert plain.decoded == 20 and plain.video_fps == pytest.approx(10.0)
    assert plain.names == [f"frame_{k:05d}.jpg" for k in range(1, 5)]
    assert plain.times == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == plain.names

    best = extract_frames(video, tmp_path / "best", fps=2.0, sharpest=True)
    assert best.times == pytest.approx([k / 10 for k in sharp_at])
    assert min(best.sharpness) > 10 * sharpness(flat) + 100


def test_extract_frames_refuses_what_is_not_a_video(tmp_path):
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(DataError, match="not a video"):
        extract_frames(fake, tmp_path / "out", fps=2.0)
    with pytest.raises(DataError, match="no such video"):
        extract_frames(tmp_path / "missing.mp4", tmp_path / "out", fps=2.0)
    with pytest.raises(DataError, match="--fps"):
        extract_frames(fake, tmp_path / "out", fps=0.0)
    assert not any((tmp_path / "out").glob("*"))


# ----------------------------------------------------------------------------- transforms.json


def model_with(cameras: list[Camera], poses: list[tuple[np.ndarray, np.ndarray, int]]):
    images = [
        ColmapImage(k + 1, rotmat_to_qvec(r), t, cam, f"img{k}.jpg")
        for k, (r, t, cam) in enumerate(poses)
    ]
    return ColmapModel(Path("m"), "bin", cameras, images, Points3D.empty())


def test_transforms_follow_nerfstudio_axes():
    rng = np.random.default_rng(5)
    camera = Camera(1, "SIMPLE_PINHOLE", 64, 48, np.array([50.0, 32.5, 24.5]))
    poses = [(random_rotation(rng), rng.normal(size=3), 1) for _ in range(3)]
    model = model_with([camera], poses)
    doc = transforms_doc(model, "images")
    assert doc["camera_model"] == "OPENCV" and (doc["w"], doc["h"]) == (64, 48)
    assert (doc["fl_x"], doc["fl_y"], doc["cx"], doc["cy"]) == (50.0, 50.0, 32.5, 24.5)
    assert (doc["k1"], doc["k2"], doc["p1"], doc["p2"]) == (0.0, 0.0, 0.0, 0.0)
    assert doc["applied_transform"] == APPLIED_TRANSFORM.tolist()
    for frame, image in zip(doc["frames"], model.images, strict=True):
        assert frame["file_path"] == f"images/{image.name}"
        matrix = np.array(frame["transform_matrix"])  # [4, 4]
        c2w = colmap_c2w(image)  # [3, 4] COLMAP [right, down, forward, centre]
        world = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])  # rows x, z, -y
        np.testing.assert_allclose(matrix[:3, 0], world @ c2w[:, 0], atol=1e-12)
        np.testing.assert_allclose(matrix[:3, 1], -world @ c2w[:, 1], atol=1e-12)  # up
        np.testing.assert_allclose(matrix[:3, 2], -world @ c2w[:, 2], atol=1e-12)  # back
        np.testing.assert_allclose(matrix[:3, 3], world @ c2w[:, 3], atol=1e-12)
        np.testing.assert_allclose(matrix[3], [0, 0, 0, 1])


def test_transforms_carry_per_frame_intrinsics_for_several_cameras():
    cams = [
        Camera(k, "OPENCV", 64, 48, np.array([50.0 + k, 51.0, 32.0, 24.0, 0.1, -0.01, 1e-3, 0]))
        for k in (1, 2)
    ]
    model = model_with(cams, [(np.eye(3), np.zeros(3), 2), (np.eye(3), np.ones(3), 1)])
    doc = transforms_doc(model, "")
    assert "fl_x" not in doc and [f["file_path"] for f in doc["frames"]] == ["img0.jpg", "img1.jpg"]
    assert [f["fl_x"] for f in doc["frames"]] == [52.0, 51.0]
    assert doc["frames"][0]["k1"] == pytest.approx(0.1) and doc["frames"][0]["p1"] == 1e-3
    assert camera_params(cams[0])["camera_model"] == "OPENCV"
    json.dumps(doc)  # plain JSON types only


# ----------------------------------------------------------------------------- photos and targets


def write_photos(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    import imageio.v3 as iio

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(6)
    paths = []
    for k, (w, h) in enumerate(sizes):
        path = folder / f"p{k:02d}.jpg"
        iio.imwrite(path, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def test_check_photos_names_every_problem(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        check_photos(tmp_path / "nope", shared_camera=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no photos"):
        check_photos(tmp_path / "empty", shared_camera=True)
    write_photos(tmp_path / "two", [(32, 24)] * 2)
    with pytest.raises(DataError, match="only 2 photo"):
        check_photos(tmp_path / "two", shared_camera=True)
    paths = write_photos(tmp_path / "bad", [(32, 24)] * 4)
    paths[1].write_bytes(paths[1].read_bytes()[:200])  # truncated JPEG
    with pytest.raises(DataError, match="p01.jpg"):
        check_photos(tmp_path / "bad", shared_camera=True)
    write_photos(tmp_path / "mixed", [(32, 24)] * 3 + [(40, 30)])
    with pytest.raises(DataError, match=r"p03.jpg 40x30.*--camera-model OPENCV"):
        check_photos(tmp_path / "mixed", shared_camera=True)
    check = check_photos(tmp_path / "mixed", shared_camera=False)
    assert check.size == (32, 24) and "p03.jpg" in check.warnings[0]
    assert check.names == ["p00.jpg", "p01.jpg", "p02.jpg", "p03.jpg"]


def test_check_targets_refuses_to_replace_without_force(tmp_path):
    scene = tmp_path / "scene"
    (scene / "sparse" / "0").mkdir(parents=True)
    targets = make_targets(scene, transforms=True, video=False)
    with pytest.raises(NerfError, match=r"sparse/0: already exists; pass --force"):
        check_targets(targets, force=False)
    check_targets(targets, force=True)
    (scene / "transforms.json").mkdir()  # not a file: never replaced
    with pytest.raises(NerfError, match="not what nerf sfm writes"):
        check_targets(targets, force=True)


def test_check_targets_never_replaces_real_photos_for_a_video(tmp_path):
    scene = tmp_path / "scene"
    write_photos(scene / "images", [(32, 24)])
    targets = make_targets(scene, transforms=False, video=True)
    with pytest.raises(NerfError, match="already holds 1 file"):
        check_targets(targets, force=False)
    with pytest.raises(NerfError, match="did not come from"):
        check_targets(targets, force=True)
    (scene / "colmap").mkdir()
    (scene / "colmap" / "frames.json").write_text(json.dumps({"frames": ["p00.jpg"]}))
    check_targets(targets, force=True)  # frames of an earlier --video run may be replaced


def test_commit_replaces_files_and_folders(tmp_path):
    old_dir, new_dir = tmp_path / "sparse0", tmp_path / "build" / "sparse0"
    old_dir.mkdir()
    (old_dir / "old.bin").write_text("old")
    new_dir.mkdir(parents=True)
    (new_dir / "new.bin").write_text("new")
    (tmp_path / "build" / "poses.npy").write_text("new")
    (tmp_path / "poses.npy").write_text("old")
    moves = [(new_dir, old_dir), (tmp_path / "build" / "poses.npy", tmp_path / "poses.npy")]
    commit(moves, tmp_path / "build" / "trash")
    assert [p.name for p in old_dir.iterdir()] == ["new.bin"]
    assert (tmp_path / "poses.npy").read_text() == "new"


# ----------------------------------------------------------------------------- no pycolmap


def test_missing_pycolmap_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycolmap", None)  # import pycolmap -> ImportError
    with pytest.raises(NerfError, match=r"pip install 'nerfcli\[sfm\]'"):
        sfm_colmap.import_pycolmap()


# ----------------------------------------------------------------------------- remapping


class FakeReconstruction:
    """What map_checked reads of a pycolmap reconstruction, through the patched helpers."""

    def __init__(self, name: str, problem: str | None):
        self.name, self.problem = name, problem


def patch_mapping(monkeypatch, first_problem: str | None, remaps: list[FakeReconstruction]):
    """The mapper, model choice and pose check of sfm.mapping replaced: the mapper returns
    `remaps` in turn and records the seeds it was called with. Returns (first mapping, seeds)."""
    seeds: list[int] = []

    def incremental_mapping(settings, output, on_progress=None, seed=0):
        seeds.append(seed)
        if on_progress is not None:
            on_progress("map", 1, 2)
        return [remaps[len(seeds) - 1]]

    monkeypatch.setattr(sfm_mapping.sfm_colmap, "incremental_mapping", incremental_mapping)
    monkeypatch.setattr(sfm_mapping, "choose_model", lambda found, *args: found[0])
    monkeypatch.setattr(sfm_mapping, "pose_problem", lambda rec, folder: rec.problem)
    return [FakeReconstruction("first", first_problem)], seeds


def map_checked(first, tmp_path):
    settings = sfm_colmap.ColmapSettings(
        database=tmp_path / "db",
        image_dir=tmp_path,
        image_names=["a.jpg", "b.jpg"],
        camera_model="SIMPLE_PINHOLE",
        matcher="sequence",
        max_image_size=None,
        threads=1,
    )
    warnings: list[str] = []
    seconds: dict[str, float] = {}
    stages: list[str] = []
    found, chosen = sfm_mapping.map_checked(
        first, settings, tmp_path, seconds, lambda stage, *_: stages.append(stage), tmp_path,
        warnings,
    )  # fmt: skip
    return found, chosen, warnings, seconds, stages


def test_a_model_that_passes_the_pose_checks_is_kept_without_mapping_again(monkeypatch, tmp_path):
    first, seeds = patch_mapping(monkeypatch, None, [])
    found, chosen, warnings, seconds, stages = map_checked(first, tmp_path)
    assert chosen.name == "first" and found == first
    assert seeds == [] and warnings == [] and "remap" not in seconds and stages == []


def test_a_failed_mapping_is_mapped_again_until_one_passes(monkeypatch, tmp_path):
    remaps = [FakeReconstruction("seed1", "still flipped"), FakeReconstruction("seed2", None)]
    first, seeds = patch_mapping(monkeypatch, "65.jpg -> 66.jpg flipped", remaps)
    found, chosen, warnings, seconds, stages = map_checked(first, tmp_path)
    assert chosen.name == "seed2" and found == [remaps[1]]
    assert seeds == list(sfm_mapping.REMAP_SEEDS) == [1, 2]
    assert len(warnings) == 1 and "65.jpg -> 66.jpg flipped" in warnings[0]
    assert "(seed 2)" in warnings[0] and "remap" in seconds
    assert set(stages) == {"remap"}  # the mapper's own progress relabelled


def test_when_no_mapping_passes_the_first_is_returned_for_the_refusal(monkeypatch, tmp_path):
    remaps = [FakeReconstruction("seed1", "bad"), FakeReconstruction("seed2", "bad")]
    first, seeds = patch_mapping(monkeypatch, "flipped", remaps)
    found, chosen, warnings, seconds, stages = map_checked(first, tmp_path)
    assert chosen.name == "first" and found == first
    assert seeds == [1, 2] and warnings == []
