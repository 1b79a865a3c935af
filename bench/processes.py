"""Training throughput with 1 and N processes side by side, in one run: `nerf train` on fern
(factor 8, the default model and its profile) for a few steps, alternating between one process
and `--nproc N` (the same global batch), each process on OMP_NUM_THREADS threads (default 1).
Reports the median it/s of each over the rounds (training time only, from the run summary).

    .venv/bin/python -m bench.processes --steps 60 --rounds 3 --nproc 2 --json-out OUT.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import machine, require_capture, write_json


def one_run(fern: Path, nproc: int, steps: int, threads: int, extra: list[str]) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bench-processes-")) / "run"
    cmd = [sys.executable, "-m", "nerfcli", "train", str(fern), "--out", str(out)]
    cmd += ["--iters", str(steps), "--device", "cpu", "--json", "--quiet"]
    cmd += ["--set", "train.eval_every=0", "--set", "train.ckpt_every=0", *extra]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"nerf train failed ({nproc} processes):\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    return {"its": summary["steps"] / summary["seconds"], "seconds": summary["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per process")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    fern = require_capture("fern")
    extra = [item for override in args.overrides for item in ("--set", override)]
    runs: dict[int, list[dict]] = {1: [], args.nproc: []}
    for round_ in range(args.rounds):
        for nproc in runs:  # interleaved, so a busy spell hits both
            result = one_run(fern, nproc, args.steps, args.threads, extra)
            runs[nproc].append(result)
            print(f"round {round_ + 1}: {nproc} process(es) {result['its']:.3f} it/s", flush=True)
    medians = {n: statistics.median(r["its"] for r in rs) for n, rs in runs.items()}
    print(f"\n| processes | it/s (median of {args.rounds}) | speed-up |\n|---|---|---|")
    for nproc, its in medians.items():
        print(f"| {nproc} | {its:.3f} | {its / medians[1]:.2f}x |")
    if args.json_out:
        doc = {"machine": machine(), "steps": args.steps, "threads": args.threads, "runs": runs}
        write_json(args.json_out, {**doc, "median_its": medians})


if __name__ == "__main__":
    main()
