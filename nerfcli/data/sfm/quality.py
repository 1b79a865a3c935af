"""The pose checks (nerfcli.data.pose_checks) on a COLMAP model, and the refusal of a suspect
`nerf sfm` result: a run whose checks fail raises a DataError naming the photos and what to
try, before anything is renamed into the scene, unless the user passed --accept-suspect.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nerfcli.data.formats.colmap import colmap_c2w
from nerfcli.data.formats.colmap_model import ColmapModel
from nerfcli.data.pose_checks import PoseQuality, assess_poses
from nerfcli.errors import DataError

COLMAP_TO_OPENGL = np.array(
    [1.0, -1.0, -1.0, 1.0]
)  # [right, down, forward, t] -> [right, up, back, t]


def assess_colmap_model(model: ColmapModel) -> PoseQuality:
    """Every check, with the model's tracks, on its registered images (in name order)."""
    images = sorted(model.images, key=lambda image: image.name)
    names = [image.name for image in images]
    c2w = np.stack([colmap_c2w(image) for image in images]) * COLMAP_TO_OPENGL  # [N, 3, 4]
    index = {int(image.image_id): k for k, image in enumerate(images)}
    lengths = np.asarray(model.points.track_lengths, dtype=np.int64)  # [M]
    views = np.array([index.get(int(i), -1) for i in model.points.track_image_ids], np.int64)
    if (views < 0).any():  # an observation of an image the model does not list: drop its track
        point_of = np.repeat(np.arange(lengths.size), lengths)
        bad = np.unique(point_of[views < 0])
        keep = ~np.isin(point_of, bad)
        views = views[keep]
        lengths = np.delete(lengths, bad)
    return assess_poses(names, c2w, lengths, views)


def suspect_message(quality: PoseQuality) -> str | None:
    """What failed, naming the photos; None when every check passed."""
    problems = []
    for detour in quality.sequence.detours:
        photos = detour.photos
        run = photos[0] if len(photos) == 1 else f"{photos[0]} .. {photos[-1]} ({len(photos)})"
        problems.append(
            f"{run} turned by {detour.turned_deg:.0f} deg against the photos before and after "
            f"(which agree within {detour.neighbours_deg:.0f} deg)"
        )
    for jump in quality.sequence.reversals:
        problems.append(
            f"consecutive photos {jump.first} -> {jump.second} look {jump.degrees:.0f} deg apart "
            "(nearly opposite)"
        )
    if quality.upright.turned_over:
        names = quality.upright.turned_over
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        problems.append(
            f"{shown} upside down against the rest (over {quality.upright.threshold_deg:.0f} "
            "deg from the mean up vector)"
        )
    return "; ".join(problems) or None


def refuse_suspect(quality: PoseQuality, image_dir: Path, matcher: str, accept: bool) -> str | None:
    """Raise a DataError for a failed check, unless `accept`; then return the warning."""
    problem = suspect_message(quality)
    if problem is None:
        return None
    if accept:
        return f"pose checks failed, kept with --accept-suspect: {problem}"
    if matcher == "sequence":
        advice = (
            "the photos on either side of these differ too much to be linked; take more photos "
            "there (overlapping neighbours), or check that the names follow the capture order"
        )
    else:
        advice = (
            "symmetric or repetitive scenes match opposite sides of the subject (doppelgangers); "
            "with photos named in capture order, try --matcher sequence"
        )
    raise DataError(
        f"{image_dir}: the poses look wrong (nothing written): {problem}; {advice}; "
        "--accept-suspect keeps this result"
    )
