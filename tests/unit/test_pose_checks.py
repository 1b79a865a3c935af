"""The pose checks (nerfcli.data.pose_checks): walk-around captures with known cameras, with
the failure they exist for (a run of cameras flipped to the far side) and the things a real
capture does that must not trip them (gaps, a rolled phone, random render views)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nerfcli.data.formats.colmap import rotmat_to_qvec
from nerfcli.data.formats.colmap_model import Camera, ColmapImage, ColmapModel, Points3D
from nerfcli.data.pose_checks import assess_poses, check_rows, sequence_order
from nerfcli.data.sfm.quality import assess_colmap_model, refuse_suspect, suspect_message
from nerfcli.errors import DataError


def look_at(position: np.ndarray, target=(0.0, 0.0, 0.0), roll: float = 0.0) -> np.ndarray:
    """c2w [3, 4] with OpenGL columns [right, up, back], z up, rolled about the view axis."""
    back = position - np.asarray(target)
    back = back / np.linalg.norm(back)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    c, s = np.cos(roll), np.sin(roll)
    right, up = c * right + s * up, -s * right + c * up
    return np.concatenate([np.stack([right, up, back], 1), position[:, None]], 1)


def walk_around(count: int = 40, turn: float = 2 * np.pi, seed: int = 0) -> np.ndarray:
    """[N, 3, 4] cameras on a circle of radius 3 at height 1 looking at the origin, jittered."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0.0, turn, count, endpoint=False)
    return np.stack(
        [
            look_at(np.array([3 * np.cos(a), 3 * np.sin(a), 1.0]) + rng.normal(0, 0.05, 3))
            for a in angles
        ]
    )


def flipped(c2w: np.ndarray, views: list[int]) -> np.ndarray:
    """The doppelganger mistake: these cameras turned by 180 deg about the vertical axis
    through the object, so they stand on the far side looking back."""
    half_turn = np.diag([-1.0, -1.0, 1.0])
    out = c2w.copy()
    out[views] = half_turn @ c2w[views]
    return out


def frame_names(count: int) -> list[str]:
    return [f"frame_{k + 1:04d}.jpg" for k in range(count)]


def test_sequence_order_reads_the_last_number():
    assert sequence_order(["10.jpg", "2.jpg", "1.jpg"]) == [2, 1, 0]
    assert sequence_order(["IMG_0012.JPG", "IMG_0010.JPG", "IMG_0011.JPG"]) == [1, 2, 0]
    assert sequence_order(["a1.png", "b2.png", "c3.png"]) is None  # different stems
    assert sequence_order(["x.png", "y.png", "z.png"]) is None
    assert sequence_order(["1.jpg", "2.jpg"]) is None  # too short to say


def test_a_walk_around_passes_with_every_number_reported():
    quality = assess_poses(frame_names(40), walk_around(40))
    assert quality.ok and quality.sequence.ordered and quality.sequence.closed_loop
    assert quality.sequence.median_step_deg == pytest.approx(360 / 40 * 3 / np.hypot(3, 1), abs=1.5)
    assert quality.sequence.threshold_deg == 6 * quality.sequence.median_step_deg
    assert quality.sequence.jumps == [] and quality.sequence.detours == []
    # Looking down at the object from height 1 at distance 3: every up vector is tilted by
    # atan(1/3) from the vertical mean.
    assert quality.upright.median_deg == pytest.approx(np.degrees(np.arctan(1 / 3)), abs=1.5)
    assert quality.upright.turned_over == []


@pytest.mark.parametrize("run", [[7], [12, 13, 14], [30, 31, 32, 33, 34, 35]])
def test_a_flipped_run_of_cameras_fails_and_is_named(run):
    names = frame_names(40)
    quality = assess_poses(names, flipped(walk_around(40), run))
    assert not quality.ok and not quality.sequence_ok and quality.upright_ok
    [detour] = quality.sequence.detours
    assert detour.photos == [names[k] for k in run]
    assert detour.turned_deg > 100 and detour.neighbours_deg < detour.turned_deg
    message = suspect_message(quality)
    assert names[run[0]] in message and names[run[-1]] in message


def test_shuffled_names_do_not_hide_a_flip():
    """The order comes from the numbers in the names, not from the list order."""
    names, c2w = frame_names(40), flipped(walk_around(40), [20, 21])
    perm = np.random.default_rng(1).permutation(40)
    quality = assess_poses([names[k] for k in perm], c2w[perm])
    assert [d.photos for d in quality.sequence.detours] == [[names[20], names[21]]]


def test_gaps_and_rolls_of_a_real_capture_pass():
    """A skipped stretch (frames missing: one big step that does not come back) and a phone
    rolled to portrait for a few photos (the viewing direction stays) are no failure."""
    c2w = walk_around(60)
    keep = [k for k in range(60) if not 20 <= k < 26]  # 6 frames missing: a 54 deg step
    names = [frame_names(60)[k] for k in keep]
    c2w = c2w[keep]
    for k in (30, 31, 40):
        c2w[k] = look_at(c2w[k, :, 3], roll=np.pi / 2)
    quality = assess_poses(names, c2w)
    assert quality.ok, quality.sequence.detours
    assert [(j.first, j.second) for j in quality.sequence.jumps] == [(names[19], names[20])]


def test_views_named_in_sequence_but_drawn_at_random_are_not_checked():
    rng = np.random.default_rng(3)
    directions = rng.normal(size=(50, 3))
    directions[:, 2] = np.abs(directions[:, 2])  # upper hemisphere, as Blender's lego
    c2w = np.stack([look_at(4 * d / np.linalg.norm(d)) for d in directions])
    quality = assess_poses([f"r_{k}.png" for k in range(50)], c2w)
    assert quality.ok and not quality.sequence.ordered
    assert "not a path" in quality.sequence.reason


def test_an_upside_down_camera_fails_upright():
    c2w = walk_around(30)
    c2w[5] = look_at(c2w[5, :, 3], roll=np.pi)
    quality = assess_poses(frame_names(30), c2w)
    assert quality.sequence_ok and quality.upright.turned_over == ["frame_0006.jpg"]
    assert "upside down" in suspect_message(quality)


def test_far_match_fractions_count_tracks_by_sequence_distance():
    """8 views in a closed loop; far apart = more than 2 apart around the loop. Track a sees
    views 0, 1; track b views 0, 4 (far); track c views 0, 1, 4."""
    quality = assess_poses(
        frame_names(8), walk_around(8), np.array([2, 2, 3]), np.array([0, 1, 0, 4, 0, 1, 4])
    )
    tracks = quality.tracks
    assert tracks.far_apart == 2 and quality.sequence.closed_loop
    assert (tracks.num_points, tracks.max_length) == (3, 3)
    assert tracks.mean_length == pytest.approx(7 / 3)
    # view 0 shares 4 points (1, 4, 1, 4): half far; view 4 shares 3 with 0 (far) and 1 with
    # 1 (3 apart: far): all far.
    assert tracks.most_far[0] == {"name": "frame_0005.jpg", "fraction": 1.0}
    assert tracks.max_far_fraction == 1.0


def colmap_model(c2w: np.ndarray, names: list[str]) -> ColmapModel:
    tmp_model_path = Path("sparse/0")
    """A COLMAP model of OpenGL c2w poses (world-to-camera, COLMAP axes), no points."""
    images = []
    for k, (pose, name) in enumerate(zip(c2w, names)):
        rotation = pose[:, :3] * np.array([1.0, -1.0, -1.0])  # -> [right, down, forward]
        w2c_rotation = rotation.T
        qvec = rotmat_to_qvec(w2c_rotation)
        images.append(ColmapImage(k + 1, qvec, -w2c_rotation @ pose[:, 3], 1, name))
    camera = Camera(1, "SIMPLE_PINHOLE", 64, 48, np.array([50.0, 32, 24]))
    return ColmapModel(tmp_model_path, "bin", [camera], images, Points3D.empty())


def test_a_colmap_model_is_checked_and_a_suspect_one_refused(tmp_path):
    names = frame_names(30)
    good = colmap_model(walk_around(30, seed=2), names)
    assert assess_colmap_model(good).ok
    bad = assess_colmap_model(colmap_model(flipped(walk_around(30, seed=2), [9, 10]), names))
    assert [d.photos for d in bad.sequence.detours] == [names[9:11]]
    with pytest.raises(DataError) as error:
        refuse_suspect(bad, tmp_path, "exhaustive", accept=False)
    text = str(error.value)
    assert "frame_0010.jpg .. frame_0011.jpg" in text and "nothing written" in text
    assert "--accept-suspect" in text and "--matcher sequence" in text
    warning = refuse_suspect(bad, tmp_path, "exhaustive", accept=True)
    assert warning.startswith("pose checks failed, kept with --accept-suspect")


def test_a_folded_walk_fails_on_its_two_fold_steps():
    """Half the walk flipped onto the other half (what the mapper made of the symmetric
    capture): the run is too long for a detour, but its two ends turn by ~180 deg."""
    names = frame_names(40)
    quality = assess_poses(names, flipped(walk_around(40), list(range(20, 40))))
    assert not quality.sequence_ok and quality.sequence.detours == []
    assert [(j.first, j.second) for j in quality.sequence.reversals] == [(names[19], names[20])]
    assert "nearly opposite" in suspect_message(quality)


def test_poses_without_photo_names_are_not_checked_as_a_sequence():
    """A poses_bounds.npy alone (no images beside it) is in imgs2poses' text order of names
    (1, 10, 11, ..., 2, 20, ...), not capture order: view numbers must not be read as one.
    A walk whose file order jumps back and forth would otherwise be a false alarm."""
    angles = np.radians(np.arange(0, 360, 10.0))
    order = np.argsort([str(k + 1) for k in range(len(angles))])  # text order of 1..36
    c2w = np.zeros((len(angles), 3, 4))
    for row, k in enumerate(order):
        a = angles[k]
        back = np.array([np.cos(a), np.sin(a), 0.0])  # camera looks at the origin
        up = np.array([0.0, 0.0, 1.0])
        right = np.cross(up, back)
        c2w[row, :, 0], c2w[row, :, 1], c2w[row, :, 2] = right, up, back
        c2w[row, :, 3] = 3.0 * back
    rows = dict((name, (ok, message)) for name, ok, message in check_rows(None, c2w))
    assert rows["sequence"][0] and "capture order unknown" in rows["sequence"][1]
    named = [f"{k + 1}.jpg" for k in order]  # with the names, the order is known and it passes
    rows = dict((name, (ok, message)) for name, ok, message in check_rows(named, c2w))
    assert rows["sequence"][0] and "not checked" not in rows["sequence"][1]
