"""The sequence matcher's loop-closure filter (nerfcli.data.sfm.sequence.filter_pairs) on
known relative rotations: a walk around an object, true loop closures with a little noise, and
doppelganger pairs whose measured rotation is off by the object's half turn."""

from __future__ import annotations

import numpy as np
import pytest

from nerfcli.data.sfm.sequence import AGREE_DEG, LINK_WINDOW, default_matcher, filter_pairs
from nerfcli.errors import DataError


def rotation_about(axis, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.radians(degrees)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def walk(count: int, seed: int = 0) -> list[np.ndarray]:
    """World-to-camera rotations of cameras turning once about the vertical, with jitter."""
    rng = np.random.default_rng(seed)
    return [
        rotation_about(rng.normal(size=3), rng.normal(0, 1)) @ rotation_about([0, 1, 0], a)
        for a in np.linspace(0, 360, count, endpoint=False)
    ]


def measured(rotations, a: int, b: int, noise_deg: float, rng) -> np.ndarray:
    """The relative rotation a -> b with a small random error."""
    return rotation_about(rng.normal(size=3), noise_deg) @ rotations[b] @ rotations[a].T


def test_doppelganger_pairs_are_dropped_and_true_loop_closures_kept():
    count, rng = 24, np.random.default_rng(1)
    rotations = walk(count)
    names = [f"{k + 1}.jpg" for k in range(count)]  # numeric order: 2.jpg before 10.jpg
    ids = list(range(1, count + 1))
    relative = {}
    for a in range(count):
        for b in range(a + 1, min(count, a + LINK_WINDOW + 1)):
            relative[(ids[a], ids[b])] = measured(rotations, a, b, 1.0, rng)
    loops = [(0, 23), (1, 22), (5, 19)]  # across the start of the loop: true closures
    for a, b in loops:
        relative[(ids[a], ids[b])] = measured(rotations, a, b, 1.0, rng)
    half_turn = rotation_about([0, 1, 0], 180)
    doppelgangers = [(2, 14), (6, 18), (9, 21)]  # opposite sides: the symmetric match
    for a, b in doppelgangers:
        relative[(ids[a], ids[b])] = half_turn @ measured(rotations, a, b, 1.0, rng)
    summary, dropped = filter_pairs(names, ids, relative)
    assert sorted(dropped) == sorted((ids[a], ids[b]) for a, b in doppelgangers)
    assert (summary.kept_loop_pairs, summary.dropped_pairs, summary.unchecked_pairs) == (3, 3, 0)
    assert summary.stretches == 1 and summary.chained == count - 1
    assert (
        summary.worst_kept_deg < 10 < 170 < min(e["disagree_deg"] for e in summary.dropped_examples)
    )
    assert summary.dropped_examples[0]["photos"][0] in {"3.jpg", "7.jpg", "10.jpg"}


def test_a_broken_chain_leaves_pairs_across_the_break_unchecked():
    count, rng = 12, np.random.default_rng(2)
    rotations = walk(count)
    ids = list(range(10, 10 + count))
    relative = {
        (ids[k], ids[k + 1]): measured(rotations, k, k + 1, 0.5, rng)
        for k in range(count - 1)
        if k != 5  # photos 6 and 7 share nothing: two stretches
    }
    relative[(ids[0], ids[11])] = rotation_about([0, 1, 0], 180) @ relative[(ids[0], ids[1])]
    summary, dropped = filter_pairs([f"f{k:02d}.png" for k in range(count)], ids, relative)
    assert summary.stretches == 2 and summary.unchecked_pairs == 1 and dropped == []


def test_a_quarter_turn_disagreement_is_dropped():
    """AGREE_DEG sits below the quarter turn of a square box's symmetry."""
    assert AGREE_DEG < 90
    rotations = walk(12)
    ids = list(range(12))
    relative = {(k, k + 1): rotations[k + 1] @ rotations[k].T for k in range(11)}
    relative[(0, 6)] = rotation_about([0, 1, 0], 90) @ rotations[6] @ rotations[0].T
    _, dropped = filter_pairs([f"{k}.png" for k in range(12)], ids, relative)
    assert dropped == [(0, 6)]


def test_names_out_of_a_sequence_are_refused_and_the_default_matcher_follows_the_names():
    with pytest.raises(DataError, match="named in capture order"):
        filter_pairs(["a.png", "b.png", "c.png"], [1, 2, 3], {})
    assert default_matcher([f"{k}.jpg" for k in range(1, 78)], video=False) == "sequence"
    assert default_matcher(["a.png", "b.png", "c.png"], video=False) == "exhaustive"
    assert default_matcher([f"frame_{k:05d}.jpg" for k in range(40)], video=True) == "sequential"
    assert default_matcher([f"{k}.jpg" for k in range(200)], video=False) == "sequential"
