"""The whole loop on a phone capture, as a new user runs it: cup's 77 photos alone in a new
folder, then `nerf sfm`, `nerf train --max-minutes M` and `nerf render-video`, each with its
defaults, and each stage's seconds (issue 23 asks the render stage <= 90 s).

    .venv/bin/python -m bench.phone_loop --work runs/phone --json bench/results/phone_loop.json

Each stage runs as its own `nerf` process, one after another (nothing else should run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import machine, require_capture, write_json


def run_stage(args: list[str]) -> tuple[float, dict]:
    """(wall seconds, the command's --json document) of one `nerf` command."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "nerfcli", *args, "--json", "-q"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return round(time.perf_counter() - start, 1), json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="a new folder for the capture")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    cup = require_capture("cup")
    if args.work.exists():
        parser.error(f"{args.work} exists: give a new folder")
    shutil.copytree(cup / "images", args.work / "images")
    doc: dict = {"machine": machine(), "photos": len(list((args.work / "images").iterdir()))}
    seconds, sfm = run_stage(["sfm", str(args.work)])
    doc["sfm"] = {"seconds": seconds, "registered": sfm.get("num_registered")}
    run = args.work / "run"
    seconds, train = run_stage(
        ["train", str(args.work), "--out", str(run), "--max-minutes", str(args.minutes)]
    )
    doc["train"] = {"seconds": seconds, "steps": train["steps"], "factor": train.get("factor")}
    seconds, video = run_stage(["render-video", str(run / "ckpt.pt")])
    doc["render"] = {
        "seconds": seconds,
        "frames": video["frames"],
        "size": [video["width"], video["height"]],
        "seconds_per_frame": video["seconds_per_frame"],
    }
    print(json.dumps(doc, indent=2))
    if args.json:
        write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
