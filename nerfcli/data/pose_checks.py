"""Checks of camera poses that the capture itself makes checkable, for `nerf sfm` (after
mapping) and `nerf inspect-poses` (any capture with poses). Only numpy.

Structure from motion can fail silently on symmetric scenes ("doppelgangers"): a can that looks
the same from both sides, a tiled floor. Matches between opposite sides pass geometric
verification, and runs of cameras are placed on the far side, turned by ~180 degrees against
their neighbours, with a low reprojection error. What gives them away is the capture:

- `sequence`: photos named in capture order (names that differ only in one number, as video
  frames and phone photos are) are taken a small step apart. The angle between the viewing
  directions of consecutive photos is measured (the viewing direction, not the whole rotation:
  a phone turned from landscape to portrait rolls ~90 degrees about it and is no error). The
  capture's step threshold is derived from the capture: JUMP_FACTOR times the median step (a
  hand-held capture moves at a roughly steady pace, so a step 6 times the typical one is a gap
  or a wrong pose), clipped to [MIN_JUMP_DEG, MAX_JUMP_DEG]. Steps over it are listed as jumps;
  a real capture has some (cup has ten, fox one: frames 55-67 are missing). The check fails on a
  *detour*: a run of photos (at most a quarter of the sequence) turned by more than
  max(threshold, MIN_DETOUR_DEG) against both the photo before it and the photo after it, while
  those two agree within the threshold: the sequence turns away and comes back, which a walk
  does not do and a doppelganger flip does. It also fails on consecutive photos whose viewing
  directions differ by over REVERSAL_DEG (nearly opposite): where a run of flipped cameras is
  half the walk, the model folds (both halves of the walk stacked on one side of the object)
  and only the two fold steps show. Names that sort as a sequence but whose consecutive
  photos differ as much as random pairs do (Blender's r_0, r_1, ... drawn at random on a
  sphere) are not a path: the check is skipped and says so.
- `upright`: the spread of the cameras' up vectors around their mean. A hand-held capture is
  upright to within a few tens of degrees; the check fails only for a camera whose up vector is
  more than UPSIDE_DOWN_DEG from the mean (turned over), as object-centric renders legitimately
  look down from the top.
- tracks (with a sparse model): track lengths, and for each photo the fraction of its matches
  (3D points it shares with another photo) that come from photos far apart in the sequence
  (more than a quarter of it, counted around the loop when the capture closes one). Reported,
  not failed: a loop closure legitimately adds some.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

import numpy as np

JUMP_FACTOR = 6.0
MIN_JUMP_DEG = 30.0
MAX_JUMP_DEG = 120.0
MIN_DETOUR_DEG = 60.0
MAX_DETOUR_FRACTION = 0.25  # a run longer than this part of the sequence is no detour
REVERSAL_DEG = 120.0  # consecutive photos looking in nearly opposite directions: a fold
PATH_RATIO = 0.5  # a path: median consecutive step below half the median step between any two
UPSIDE_DOWN_DEG = 135.0  # cup's cameras reach 116 deg from the mean up (a tilted, rolled phone)
FAR_FRACTION_OF_SEQUENCE = 0.25
MOST_FAR_LISTED = 3
TRACK_CHUNK = 4096  # points per block when counting co-observations

_LAST_NUMBER = re.compile(r"^(.*?)(\d+)(\D*)$")


def sequence_order(names: list[str]) -> list[int] | None:
    """Indices of `names` in capture order when the names differ only in their last number
    (IMG_0007.JPG, 1.jpg ... 77.jpg, frame_00012.png), else None. Order by that number."""
    if len(names) < 3:
        return None
    keys = []
    for name in names:
        match = _LAST_NUMBER.match(name.replace("\\", "/").rsplit("/", 1)[-1])
        if match is None:
            return None
        keys.append((match.group(1), match.group(3), int(match.group(2))))
    if len({(prefix, suffix) for prefix, suffix, _ in keys}) != 1:
        return None
    numbers = [number for _, _, number in keys]
    if len(set(numbers)) != len(numbers):
        return None
    return sorted(range(len(names)), key=lambda k: numbers[k])


def rotation_angles_deg(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Angle of the relative rotation first^T second, degrees: [..., 3, 3] x2 -> [...]."""
    relative = np.einsum("...ji,...jk->...ik", first, second)  # [..., 3, 3]
    cosine = (np.trace(relative, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


@dataclass
class Jump:
    first: str
    second: str
    degrees: float


@dataclass
class Detour:
    photos: list[str]  # a run of consecutive photos
    turned_deg: float  # the least angle between one of them and the photos around the run
    neighbours_deg: float  # angle between the photo before the run and the one after it


@dataclass
class SequenceReport:
    ordered: bool  # names in capture order that follow a path
    reason: str
    median_step_deg: float | None = None
    max_step_deg: float | None = None
    median_pair_deg: float | None = None  # median over all pairs: what "not a path" compares to
    threshold_deg: float | None = None
    closed_loop: bool = False
    jumps: list[Jump] = field(default_factory=list)  # steps over the threshold (gaps too)
    reversals: list[Jump] = field(default_factory=list)  # steps over REVERSAL_DEG: failures
    detours: list[Detour] = field(default_factory=list)  # the failures


@dataclass
class UprightReport:
    median_deg: float
    max_deg: float
    threshold_deg: float
    turned_over: list[str]


@dataclass
class TrackReport:
    num_points: int
    mean_length: float
    median_length: float
    max_length: int
    far_apart: int  # photos more than this many apart in the sequence are far apart; 0: unordered
    median_far_fraction: float | None
    max_far_fraction: float | None
    most_far: list[dict]  # [{"name", "fraction"}], the photos with the largest fractions


@dataclass
class PoseQuality:
    num_views: int
    sequence: SequenceReport
    upright: UprightReport
    tracks: TrackReport | None = None

    @property
    def ok(self) -> bool:
        return self.sequence_ok and self.upright_ok

    @property
    def sequence_ok(self) -> bool:
        return not self.sequence.detours and not self.sequence.reversals

    @property
    def upright_ok(self) -> bool:
        return not self.upright.turned_over

    def to_json(self) -> dict:
        return {"ok": self.ok, **asdict(self)}


def direction_angles_deg(directions: np.ndarray) -> np.ndarray:
    """[N, 3] viewing directions -> [N, N] angles between them, degrees."""
    units = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    return np.degrees(np.arccos(np.clip(units @ units.T, -1.0, 1.0)))


def sequence_report(names: list[str], directions: np.ndarray) -> SequenceReport:
    """The `sequence` check on the cameras' viewing directions [N, 3] (world frame)."""
    order = sequence_order(names)
    if order is None:
        return SequenceReport(False, "the names do not sort as a sequence (one number each)")
    pairs = direction_angles_deg(np.asarray(directions)[order])  # [N, N] in sequence order
    steps = np.diagonal(pairs, 1)  # [N-1] consecutive photos
    median_pair = float(np.median(pairs[np.triu_indices(len(order), 1)]))
    median_step = float(np.median(steps))
    report = SequenceReport(
        ordered=False,
        reason="",
        median_step_deg=median_step,
        max_step_deg=float(steps.max()),
        median_pair_deg=median_pair,
    )
    if not median_step < PATH_RATIO * median_pair:
        report.reason = (
            f"named as a sequence, but consecutive viewing directions differ by {median_step:.1f} deg "
            f"(median), as much as any two ({median_pair:.1f} deg): not a path, not checked"
        )
        return report
    threshold = float(np.clip(JUMP_FACTOR * median_step, MIN_JUMP_DEG, MAX_JUMP_DEG))
    report.ordered, report.threshold_deg = True, threshold
    report.closed_loop = bool(pairs[0, -1] <= threshold and len(order) > 3)
    sorted_names = [names[k] for k in order]
    report.jumps = [
        Jump(sorted_names[k], sorted_names[k + 1], round(float(steps[k]), 2))
        for k in np.nonzero(steps > threshold)[0]
    ]
    report.reversals = [
        jump for jump in report.jumps if jump.degrees > max(threshold, REVERSAL_DEG)
    ]
    report.detours = [
        Detour(sorted_names[first : last + 1], round(float(turn), 2), round(float(back), 2))
        for first, last, turn, back in _detours(pairs, threshold, median_step)
    ]
    report.reason = (
        f"{len(order)} photos in name order, consecutive views {median_step:.1f} deg apart "
        f"(median), at most {steps.max():.1f}; a step over {threshold:.1f} deg "
        f"({JUMP_FACTOR:g} x median) is a gap; a run turned {max(threshold, MIN_DETOUR_DEG):.0f}+ "
        f"deg away and back, or a step over {max(threshold, REVERSAL_DEG):.0f} deg, fails"
    )
    return report


def _detours(
    pairs: np.ndarray, threshold: float, median_step: float
) -> list[tuple[int, int, float, float]]:
    """Runs first..last (positions in the sequence) that the sequence turns away into and back
    out of: every photo of the run is turned by more than max(threshold, MIN_DETOUR_DEG) against
    both photos around the run, and by more than those two differ, while those two agree within
    what the walk allows them: the threshold, or twice the median step per step between them
    for a long run. Returns (first, last, smallest turn of the run against its neighbours,
    angle between the neighbours). pairs: [N, N] angles between photos in sequence order."""
    count = pairs.shape[0]
    longest = max(1, int(MAX_DETOUR_FRACTION * count))
    away = max(threshold, MIN_DETOUR_DEG)
    found = []
    first = 1
    while first < count - 1:
        if pairs[first - 1, first] <= away:
            first += 1
            continue
        for last in range(first, min(count - 1, first + longest)):
            before, after = first - 1, last + 1
            allowed = max(threshold, 2.0 * median_step * (after - before))
            gap = pairs[before, after]
            turn = min(pairs[before, first:after].min(), pairs[after, first:after].min())
            if gap <= allowed and turn > max(away, gap):
                found.append((first, last, float(turn), float(gap)))
                first = last
                break
        first += 1
    return found


def upright_report(names: list[str], ups: np.ndarray) -> UprightReport:
    """The `upright` check on the cameras' up vectors [N, 3] (world frame)."""
    units = ups / np.linalg.norm(ups, axis=1, keepdims=True)  # [N, 3]
    mean = units.mean(0)
    norm = float(np.linalg.norm(mean))
    mean = mean / norm if norm > 1e-9 else np.array([0.0, 0.0, 1.0])
    angles = np.degrees(np.arccos(np.clip(units @ mean, -1.0, 1.0)))  # [N]
    return UprightReport(
        median_deg=float(np.median(angles)),
        max_deg=float(angles.max()),
        threshold_deg=UPSIDE_DOWN_DEG,
        turned_over=[names[k] for k in np.nonzero(angles > UPSIDE_DOWN_DEG)[0]],
    )


def track_report(
    names: list[str], track_lengths: np.ndarray, track_views: np.ndarray, sequence: SequenceReport
) -> TrackReport:
    """Track lengths [M] and the views [sum(lengths)] (indices into `names`) of each track."""
    num_views = len(names)
    lengths = np.asarray(track_lengths, dtype=np.int64)
    shared = _co_observations(num_views, lengths, np.asarray(track_views, dtype=np.int64))
    far_apart, fractions = 0, None
    order = sequence_order(names) if sequence.ordered else None
    if order is not None:
        position = np.empty(num_views, dtype=np.int64)
        position[order] = np.arange(num_views)
        gap = np.abs(position[:, None] - position[None, :])  # [N, N] photos apart
        if sequence.closed_loop:
            gap = np.minimum(gap, num_views - gap)
        far_apart = max(1, int(math.ceil(FAR_FRACTION_OF_SEQUENCE * num_views)))
        totals = shared.sum(1)  # [N]
        far = np.where(gap > far_apart, shared, 0).sum(1)  # [N]
        fractions = np.where(totals > 0, far / np.maximum(totals, 1), 0.0)  # [N]
    most = [] if fractions is None else np.argsort(-fractions, kind="stable")[:MOST_FAR_LISTED]
    return TrackReport(
        num_points=int(lengths.size),
        mean_length=float(lengths.mean()) if lengths.size else 0.0,
        median_length=float(np.median(lengths)) if lengths.size else 0.0,
        max_length=int(lengths.max()) if lengths.size else 0,
        far_apart=far_apart,
        median_far_fraction=None if fractions is None else float(np.median(fractions)),
        max_far_fraction=None if fractions is None else float(fractions.max()),
        most_far=[{"name": names[k], "fraction": round(float(fractions[k]), 4)} for k in most],
    )


def _co_observations(num_views: int, lengths: np.ndarray, views: np.ndarray) -> np.ndarray:
    """[N, N] how many 3D points each pair of views shares (diagonal zeroed)."""
    shared = np.zeros((num_views, num_views))
    point_of = np.repeat(np.arange(lengths.size), lengths)  # [T]
    for start in range(0, lengths.size, TRACK_CHUNK):
        rows = (point_of >= start) & (point_of < start + TRACK_CHUNK)
        block = np.zeros((min(TRACK_CHUNK, lengths.size - start), num_views))
        block[point_of[rows] - start, views[rows]] = 1.0
        shared += block.T @ block
    np.fill_diagonal(shared, 0.0)
    return shared


def assess_poses(
    names: list[str],
    c2w: np.ndarray,
    track_lengths: np.ndarray | None = None,
    track_views: np.ndarray | None = None,
    order_known: bool = True,
) -> PoseQuality:
    """All checks on camera-to-world poses [N, 3, 4] with OpenGL columns [right, up, back, t].
    order_known False: `names` are placeholders (no photos), so no capture order is checked."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if order_known:
        sequence = sequence_report(names, -c2w[:, :3, 2])
    else:
        sequence = SequenceReport(False, "no photo names beside the poses: capture order unknown")
    quality = PoseQuality(len(names), sequence, upright_report(names, c2w[:, :3, 1]))
    if track_lengths is not None and track_views is not None:
        quality.tracks = track_report(names, track_lengths, track_views, sequence)
    return quality


def describe_jumps(quality: PoseQuality, limit: int = 4) -> str:
    """'a.jpg -> b.jpg 174.2 deg, ...' for the first `limit` jumps."""
    jumps = quality.sequence.jumps
    text = ", ".join(f"{j.first} -> {j.second} {j.degrees:.1f} deg" for j in jumps[:limit])
    return text + (f" and {len(jumps) - limit} more" if len(jumps) > limit else "")


def check_rows(names: list[str] | None, c2w: np.ndarray) -> list[tuple[str, bool, str]]:
    """(name, ok, message) rows for `nerf inspect-poses`: `sequence` and `upright` on
    camera-to-world poses [N, 3, 4] (OpenGL columns); names None: the photos are unknown."""
    c2w = np.asarray(c2w, dtype=np.float64)
    known = names is not None and len(names) == len(c2w)
    if not known:  # file order is not capture order (imgs2poses sorts names as text)
        names = [f"view {k}" for k in range(len(c2w))]
    quality = assess_poses(names, c2w, order_known=known)
    sequence, upright = quality.sequence, quality.upright
    if sequence.reversals or sequence.detours:
        message = "; ".join(
            f"{j.first} -> {j.second} turn by {j.degrees:.0f} deg" for j in sequence.reversals
        )
        message += "; " if sequence.reversals and sequence.detours else ""
        message += "; ".join(
            f"{'/'.join(d.photos)} turned by {d.turned_deg:.0f} deg against the photos before "
            f"and after (which agree within {d.neighbours_deg:.0f} deg)"
            for d in sequence.detours
        )
        message += "; wrong poses (symmetric scenes fool SfM): rerun `nerf sfm` on the photos"
    elif sequence.ordered:
        message = (
            sequence.reason + f"; {len(sequence.jumps)} step(s) over the threshold, none turns back"
        )
    else:
        message = "not checked: " + sequence.reason
    rows = [("sequence", quality.sequence_ok, message)]
    spread = (
        f"up vectors {upright.median_deg:.1f} deg from their mean (median), at most "
        f"{upright.max_deg:.1f}"
    )
    if upright.turned_over:
        spread = f"upside down (over {upright.threshold_deg:.0f} deg from the mean up): " + (
            ", ".join(upright.turned_over[:4])
        )
    rows.append(("upright", not upright.turned_over, spread))
    return rows
