"""The mapping `nerf sfm` writes: the largest reconstruction, refused when too few photos
registered (`choose_model`), and mapped again with other seeds when its poses fail the checks
(`map_checked`; the pose checks are nerfcli.data.sfm.quality's)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nerfcli.data.formats import colmap_io
from nerfcli.data.sfm import colmap as sfm_colmap
from nerfcli.data.sfm.colmap import ColmapSettings, ProgressFn
from nerfcli.data.sfm.inputs import listing
from nerfcli.data.sfm.quality import assess_colmap_model, suspect_message
from nerfcli.errors import DataError

# When the first mapping's model fails the pose checks, the mapper runs again on the same
# features and matches with these seeds in turn, and the first model that passes is written.
# COLMAP's mapper is randomised and threaded, so a rerun can land elsewhere: on a 2-core AMD
# EPYC, the first of six `nerf sfm` runs on cup's 77 photos was refused (photos 65 -> 66 -> 67
# looked 130 and 168 deg apart) and the other five passed (whether their matches or only their
# mappings differed is not known). A map of those photos takes 15-20 s there.
REMAP_SEEDS = (1, 2)
MIN_REGISTERED = 3
MIN_REGISTERED_FRACTION = 0.5


def map_checked(
    reconstructions: list[Any],
    settings: ColmapSettings,
    build: Path,
    seconds: dict[str, float],
    report: ProgressFn,
    image_dir: Path,
    warnings: list[str],
) -> tuple[list[Any], Any]:
    """(reconstructions, chosen) of the first mapping whose largest model passes the pose
    checks: when the first mapping's fails them, the mapper runs again on the same features
    and matches with each of REMAP_SEEDS in turn (stage "remap"). When none passes, the first
    mapping's, which the pipeline's _write then refuses (or keeps with --accept-suspect)."""
    notes: list[str] = []
    chosen = choose_model(reconstructions, settings, image_dir, notes)
    problem = pose_problem(chosen, build / "check.0")
    if problem is None:
        warnings += notes
        return reconstructions, chosen
    total = len(settings.image_names)
    started = time.perf_counter()
    try:
        for seed in REMAP_SEEDS:
            report("remap", 0, total)
            again = sfm_colmap.incremental_mapping(
                settings, build / f"mapper.{seed}", lambda _, d, t: report("remap", d, t), seed
            )
            report("remap", total, total)
            more: list[str] = []
            try:
                candidate = choose_model(again, settings, image_dir, more)
            except DataError:
                continue  # too few photos this time: try the next seed
            if pose_problem(candidate, build / f"check.{seed}") is None:
                warnings += more
                warnings.append(
                    f"the first mapping failed the pose checks ({problem}); mapping again "
                    f"(seed {seed}) gave a model that passes them"
                )
                return again, candidate
    finally:
        seconds["remap"] = round(time.perf_counter() - started, 3)
    warnings += notes
    return reconstructions, chosen


def pose_problem(reconstruction: Any, folder: Path) -> str | None:
    """What the pose checks find wrong with a pycolmap reconstruction (None: they pass),
    read back through the model reader the pipeline writes with."""
    folder.mkdir()
    reconstruction.write_binary(str(folder))
    return suspect_message(assess_colmap_model(colmap_io.read_model(folder, "bin")))


def advice(matcher: str) -> str:
    tips = "take photos with more overlap (each part of the subject in 3 or more photos), "
    tips += "avoid blur and moving objects"
    return tips + (", or try --matcher exhaustive" if matcher == "sequential" else "")


def choose_model(
    reconstructions: list[Any], settings: ColmapSettings, image_dir: Path, warnings: list[str]
) -> Any:
    """The largest reconstruction, or a DataError when too few photos registered."""
    total = len(settings.image_names)
    if not reconstructions:
        stats = sfm_colmap.database_stats(settings.database)
        counts = sorted(stats.num_keypoints.values()) or [0]
        raise DataError(
            f"{image_dir}: COLMAP could not start a reconstruction: {stats.num_verified_pairs} "
            f"photo pair(s) of {total} photos passed geometric verification (SIFT found "
            f"{counts[0]}-{counts[-1]} features per photo); the photos must show the same scene "
            f"from nearby viewpoints; {advice(settings.matcher)}"
        )
    largest = reconstructions[0]
    registered = sfm_colmap.registered_names(largest)
    if len(registered) < MIN_REGISTERED or len(registered) < MIN_REGISTERED_FRACTION * total:
        missing = [name for name in settings.image_names if name not in set(registered)]
        split = f" (the mapper split them into {len(reconstructions)} models)"
        raise DataError(
            f"{image_dir}: only {len(registered)} of {total} photos registered "
            f"({100 * len(registered) / total:.0f}%){split if len(reconstructions) > 1 else ''}; "
            f"not registered: {listing(missing)}; {advice(settings.matcher)}"
        )
    if len(reconstructions) > 1:
        others = "; ".join(
            f"model {k + 1}: {rec.num_reg_images()} photos ({listing(sfm_colmap.registered_names(rec), 4)})"
            for k, rec in enumerate(reconstructions[1:], 1)
        )
        warnings.append(
            f"the mapper split the photos into {len(reconstructions)} models; wrote the largest "
            f"(model 1, {len(registered)} photos); the others: {others}; photos only there get "
            "no pose"
        )
    return largest
