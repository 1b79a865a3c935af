"""`nerf sfm` on the real cup capture against its shipped COLMAP model.

    .venv/bin/python -m bench.sfm_cup --out bench/results/sfm_cup.json

Copies ../shared/data/cup/images (77 photos, 800 x 600) to a temp folder, runs the sfm pipeline
(nerfcli.data.sfm.pipeline.run_sfm, as `nerf sfm` does) and reports:
- photos registered (target: >= 95% of 77) and seconds per stage;
- after a similarity alignment (Umeyama) of the camera centres to cup/sparse/0: the median
  camera-centre error as % of the capture's extent (largest distance between two reference
  centres; target <= 2%) and the median viewing-direction error in degrees (target <= 2).
Prints one JSON document on stdout and writes it to --out when given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import machine, require_capture, write_json
from nerfcli.data.formats import colmap, colmap_io
from nerfcli.data.sfm.align import pose_errors
from nerfcli.data.sfm.pipeline import SfmOptions, run_sfm

TARGET_REGISTERED = 0.95
TARGET_CENTRE_PCT = 2.0
TARGET_DIRECTION_DEG = 2.0


def camera_frames(model_dir: Path) -> dict[str, np.ndarray]:
    """name -> c2w [3, 4] (COLMAP axes: column 2 is the viewing direction, 3 the centre)."""
    model = colmap_io.read_model(model_dir)
    return {image.name: colmap.colmap_c2w(image) for image in model.images}


def compare(estimated: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict:
    names = sorted(set(estimated) & set(reference))
    est = np.stack([estimated[n] for n in names])  # [N, 3, 4]
    ref = np.stack([reference[n] for n in names])
    errors = pose_errors(est[:, :, 3], est[:, :, 2], ref[:, :, 3], ref[:, :, 2])
    return {
        "compared_views": len(names),
        "extent": errors.extent,
        "scale": errors.alignment.scale,
        "median_centre_error_pct": errors.median_centre_error_pct,
        "max_centre_error_pct": errors.max_centre_error_pct,
        "median_direction_error_deg": errors.median_direction_error_deg,
        "max_direction_error_deg": errors.max_direction_error_deg,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    parser.add_argument("--matcher", choices=("exhaustive", "sequential"), default=None)
    parser.add_argument("--camera-model", default="SIMPLE_PINHOLE")
    parser.add_argument("--max-image-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    cup = require_capture("cup")
    options = SfmOptions(
        matcher=args.matcher,
        camera_model=args.camera_model,
        max_image_size=args.max_image_size,
        threads=args.threads,
    )
    with tempfile.TemporaryDirectory(prefix="sfm_cup.") as tmp:
        scene = Path(tmp) / "cup"
        shutil.copytree(cup / "images", scene / "images")

        started: list[str] = []

        def progress(stage: str, done: int, total: int | None) -> None:
            if not started or started[-1] != stage:
                started.append(stage)
                sys.stderr.write(f"{stage} ...\n")

        result = run_sfm(scene, options, progress)
        agreement = compare(
            camera_frames(scene / "sparse" / "0"), camera_frames(cup / "sparse" / "0")
        )
    fraction = result.num_registered / result.num_images
    doc = {
        "capture": "cup",
        "photos": result.num_images,
        "registered": result.num_registered,
        "registered_fraction": fraction,
        "models": [m.num_images for m in result.models],
        "matcher": result.matcher,
        "camera_model": result.camera_model,
        "focal": result.focal,
        "points": result.num_points,
        "mean_reprojection_error_px": result.mean_reprojection_error,
        "seconds": result.seconds,
        **agreement,
        "targets_met": {
            "registered": fraction >= TARGET_REGISTERED,
            "centre": agreement["median_centre_error_pct"] <= TARGET_CENTRE_PCT,
            "direction": agreement["median_direction_error_deg"] <= TARGET_DIRECTION_DEG,
        },
        "pycolmap": result.pycolmap,
        "machine": machine(),
    }
    print(json.dumps(doc, indent=2))
    if args.out is not None:
        write_json(args.out, doc)
    return 0 if all(doc["targets_met"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
