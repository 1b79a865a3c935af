"""The viewer's frame times through its server API (the Engine the page drives: the same render
thread, sizing and bands; no websocket), and what `nerf train --view` costs training.

    .venv/bin/python -m bench.viewer look --ckpt runs/lego/ckpt.pt [--ckpt runs/cup/ckpt.pt ...]
    .venv/bin/python -m bench.viewer train --scene ../shared/data/fern --minutes 2
    .venv/bin/python -m bench.viewer train --scene ../shared/data/fern --minutes 5 --side-by-side

look: a client connects (its camera set at t = 0) -> time to the first picture; the camera then
plays the scene's default path at 30 updates a second for --orbit-seconds -> pictures a second
and their size while it moves; it stops -> time to the full-size picture. The browser's window
has the capture's aspect and field of view.

train: the same time budget twice, without and with --view, the second with a scripted client
playing the default path against the page the whole time (`nerf train` run in-process, its
viewer reached through `cli.train._start_viewer`); steps, steps/s and held-out PSNR of both.
In turn in this process, or with --side-by-side at the same time, each run its own process
at one torch thread (the fair comparison on a shared machine). The machine's load goes into
the output (it is shared: compare the ratio).
"""

from __future__ import annotations

import argparse
import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import machine, write_json
from nerfcli.training.checkpoint import load_checkpoint
from nerfcli.training.device import select_device
from nerfcli.viewer.cameras import browser_from_pose, pose_from_browser, scene_vertical_fov
from nerfcli.viewer.engine import Engine, EngineOptions
from nerfcli.viewer.sizing import Sizer
from nerfcli.viewer.source import ModelSource


class Recorder:
    """The pictures a viewer sends: (arrival time, info), and the images with keep_images."""

    def __init__(self, keep_images: bool = False):
        self.frames: list[tuple[float, dict]] = []
        self.images: list[np.ndarray] = []
        self.keep_images = keep_images
        self.arrived = threading.Condition()

    def __call__(self, client_id, image, info):
        with self.arrived:
            self.frames.append((time.perf_counter(), info))
            if self.keep_images:
                self.images.append(image)
            self.arrived.notify_all()

    def wait_quiet(self, seconds: float, timeout: float) -> None:
        """Until no picture has come for `seconds` (the browser's echo of a camera set)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            last = self.frames[-1][0] if self.frames else 0.0
            if time.perf_counter() - last >= seconds:
                return
            time.sleep(0.05)

    def wait_for(self, test, timeout: float) -> tuple[float, dict] | None:
        deadline = time.perf_counter() + timeout
        with self.arrived:
            while True:
                for frame in self.frames:
                    if test(frame):
                        return frame
                left = deadline - time.perf_counter()
                if left <= 0:
                    return None
                self.arrived.wait(left)


def path_views(scene):
    fov = scene_vertical_fov(scene)
    aspect = scene.width / scene.height
    for c2w in scene.render_poses:
        wxyz, position = browser_from_pose(c2w)
        yield pose_from_browser(wxyz, position, fov, aspect)


def look(ckpt_path: Path, orbit_seconds: float, max_height: int | None) -> dict:
    ckpt = load_checkpoint(ckpt_path)
    source = ModelSource.from_checkpoint(ckpt, select_device("auto"))
    scene = ckpt.scene
    recorder = Recorder()
    full = min(scene.height, max_height) if max_height else scene.height
    engine = Engine(source, recorder, Sizer(full_height=full), EngineOptions()).start()
    engine.warm.wait(300)  # as `nerf view`, which prints its URL once warm
    views = list(path_views(scene))
    load = os.getloadavg()
    try:
        start = time.perf_counter()
        engine.set_camera(1, views[0])
        first = recorder.wait_for(lambda f: True, 120)
        recorder.wait_for(lambda f: f[1]["still"], 300)  # settle: the full picture of the start
        moving_from = time.perf_counter()
        count = 0
        while time.perf_counter() - moving_from < orbit_seconds:
            engine.set_camera(1, views[(count + 1) % len(views)])
            count += 1
            time.sleep(1 / 30)
        stopped = time.perf_counter()
        full_frame = recorder.wait_for(lambda f: f[0] > stopped and f[1]["still"], 300)
    finally:
        engine.stop()
    moving = [
        info for t, info in recorder.frames if moving_from < t <= stopped and not info["still"]
    ]
    return {
        "checkpoint": str(ckpt_path),
        "step": ckpt.step,
        "full_size": [full, round(full * scene.width / scene.height)],
        "warm_up_s": None if engine.warm_up_seconds is None else round(engine.warm_up_seconds, 3),
        "first_picture_s": round(first[0] - start, 3) if first else None,
        "first_picture_size": [first[1]["height"], first[1]["width"]] if first else None,
        "moving_pictures_per_s": round(len(moving) / (stopped - moving_from), 2),
        "moving_heights_min_median_max": _spread([i["height"] for i in moving]),
        "camera_updates": count,
        "full_picture_after_stop_s": round(full_frame[0] - stopped, 3) if full_frame else None,
        "full_picture_render_s": round(full_frame[1]["seconds"], 3) if full_frame else None,
        "moving_turn_s": _median_gap(recorder.frames, moving_from, stopped),
        "longest_gap_while_moving_s": _longest_gap(recorder.frames, moving_from, stopped),
        "still_pictures_while_moving": sum(
            1 for t, info in recorder.frames if moving_from < t <= stopped and info["still"]
        ),
        "errors": engine.errors[:3],
        "load_before": load,
        "load_after": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
    }


def _spread(values: list) -> list | None:
    return [min(values), int(np.median(values)), max(values)] if values else None


def _longest_gap(frames, start: float, end: float) -> float | None:
    times = [start] + [t for t, info in frames if start < t <= end] + [end]
    return round(float(np.max(np.diff(times))), 3)


def _median_gap(frames, start: float, end: float) -> float | None:
    """The median time between two moving pictures in (start, end]."""
    times = [t for t, info in frames if start < t <= end and not info["still"]]
    gaps = np.diff(times)
    return round(float(np.median(gaps)), 3) if len(gaps) else None


def train_cost(scene: Path, minutes: float, extra: list[str], order=("plain", "view")) -> dict:
    import json

    from typer.testing import CliRunner

    import nerfcli.cli.train as train_command
    from nerfcli.cli.app import app

    runner = CliRunner()
    out_root = Path(os.environ.get("BENCH_OUT", "/tmp")) / f"viewer-bench-{os.getpid()}"
    results = {}
    original = train_command._start_viewer
    for mode in order:
        stop = threading.Event()
        drivers = []

        def start_and_drive(*args, stop=stop, drivers=drivers):
            viewer = original(*args)
            thread = threading.Thread(target=_drive, args=(viewer, stop), daemon=True)
            thread.start()
            drivers.append((viewer, thread))
            return viewer

        train_command._start_viewer = start_and_drive
        args = ["train", str(scene), "--max-minutes", str(minutes), "--out", str(out_root / mode)]
        args += [*extra, "--json", "-q"] + (
            ["--view", "--view-port", "7470"] if mode == "view" else []
        )
        load = os.getloadavg()
        result = runner.invoke(app, args)
        stop.set()
        train_command._start_viewer = original
        if result.exit_code != 0:
            raise SystemExit(f"{mode}: {result.output[-2000:]}")
        doc = json.loads(result.stdout[result.stdout.index("{") :])
        doc["load_before"], doc["load_after"] = load, os.getloadavg()
        if drivers:
            viewer = drivers[0][0]
            doc["viewer_pictures"] = (
                viewer.viewer.engine.clients.get(1).frames
                if viewer.viewer.engine.clients.get(1)
                else 0
            )
            doc["viewer_errors"] = viewer.viewer.engine.errors[:3]
        doc["steps_per_s"] = doc["steps"] / max(doc["seconds"], 1e-9)
        results[mode] = doc
    return compare(results) if len(results) == 2 else results


def compare(results: dict) -> dict:
    """The view run against the plain one: steps, steps/s and held-out PSNR."""
    view, plain = results["view"], results["plain"]
    results["steps_ratio"] = view["steps"] / max(plain["steps"], 1)
    results["steps_per_s_ratio"] = view["steps_per_s"] / plain["steps_per_s"]
    results["psnr_difference_db"] = (view["test_psnr"] or math.nan) - (
        plain["test_psnr"] or math.nan
    )
    return results


def side_by_side(scene: Path, minutes: float, settings: list[str]) -> dict:
    """The plain and the --view run at the same time, each its own process with one torch
    thread (OMP_NUM_THREADS=1 and --threads 1): on a shared machine both see the same load."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    processes = {}
    for mode in ("plain", "view"):
        command = [sys.executable, "-m", "bench.viewer", "train", "--scene", str(scene)]
        command += ["--minutes", str(minutes), "--only", mode, "--threads", "1"]
        command += [arg for setting in settings for arg in ("--set", setting)]
        processes[mode] = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    results = {}
    for mode, process in processes.items():
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"{mode} run failed (exit {process.returncode})")
        results[mode] = json.loads(out)[mode]
    return compare(results)


def _drive(viewer, stop: threading.Event) -> None:
    """A scripted client: 'connects' and plays the default path, 30 updates a second."""
    source = viewer.source
    views = list(path_views(source.scene))
    source.demand.set()
    k = 0
    while not stop.is_set():
        viewer.viewer.engine.set_camera(1, views[k % len(views)])
        k += 1
        time.sleep(1 / 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    look_parser = sub.add_parser("look")
    look_parser.add_argument("--ckpt", type=Path, action="append", required=True)
    look_parser.add_argument("--orbit-seconds", type=float, default=10.0)
    look_parser.add_argument("--max-height", type=int, default=None)
    train_parser = sub.add_parser("train")
    train_parser.add_argument("--scene", type=Path, required=True)
    train_parser.add_argument("--minutes", type=float, default=2.0)
    train_parser.add_argument("--view-first", action="store_true", help="run --view first")
    train_parser.add_argument("--only", choices=("plain", "view"), help="one of the two runs")
    train_parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="both runs at the same time, each its own process at one torch thread",
    )
    train_parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of training in both runs (the viewer's render thread sets 1, and "
        "that reaches the whole process: compare --view against a 1-thread plain run)",
    )
    train_parser.add_argument(
        "--set", action="append", default=[], help="a train setting KEY=VALUE (repeatable)"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.mode == "look":
        doc = {"machine": machine(), "load_before": os.getloadavg()}
        doc["runs"] = [look(path, args.orbit_seconds, args.max_height) for path in args.ckpt]
        doc["load_after"] = os.getloadavg()
    elif args.side_by_side:
        doc = {"machine": machine(), **side_by_side(args.scene, args.minutes, args.set)}
    else:
        extra = [arg for setting in args.set for arg in ("--set", setting)]
        order = ("view", "plain") if args.view_first else ("plain", "view")
        order = (args.only,) if args.only else order
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        doc = {"machine": machine(), **train_cost(args.scene, args.minutes, extra, order)}
    import json

    text = json.dumps(
        doc, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)
    )
    print(text)
    if args.json:
        write_json(args.json, json.loads(text))


if __name__ == "__main__":
    main()
