"""Scratch profiling and tuning loop for the TensoRF model on a real capture (fern by default).

    .venv/bin/python bench/profile_tensorf.py --minutes 10 --device-profile cpu
    .venv/bin/python bench/profile_tensorf.py --profile-steps 5 --set model.tensorf.step_ratio=1

Trains with Adam on random batches across all training pixels and reports held-out PSNR on the
test views (0, 8, 16) at full resolution at the given minutes of training time; evaluation time
is not counted as training time (it is reported separately).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from collections import defaultdict

import numpy as np
import torch

from nerfcli.config import build_config, merge_dicts
from nerfcli.data.formats.llff import load_scene
from nerfcli.data.rays import Rays, make_rays
from nerfcli.models.tensorf import TensorfModel, device_profile
from nerfcli.render.image import render_in_chunks


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def build(args):
    base = device_profile(args.device_profile) if args.device_profile else {}
    cfg = build_config(base=merge_dicts({}, base), overrides=args.set)
    scene = load_scene(args.scene, factor=cfg.data.factor, llffhold=cfg.data.llffhold)
    return cfg, scene


def training_rays(scene, ndc: bool):
    origins, directions, viewdirs, colours = [], [], [], []
    for index in scene.i_train:
        rays = make_rays(scene.height, scene.width, scene.focal, scene.c2w[index], ndc=ndc)
        origins.append(rays.origins.reshape(-1, 3))
        directions.append(rays.directions.reshape(-1, 3))
        viewdirs.append(rays.viewdirs.reshape(-1, 3))
        colours.append(torch.from_numpy(scene.images[index]).reshape(-1, 3))
    rays = Rays(torch.cat(origins), torch.cat(directions), torch.cat(viewdirs))
    return rays, torch.cat(colours)


@torch.no_grad()
def evaluate(model, scene, cfg, near, far, chunk):
    model.eval()
    psnrs, seconds = [], []
    for index in scene.i_test:
        rays = make_rays(scene.height, scene.width, scene.focal, scene.c2w[index], ndc=cfg.data.ndc)
        start = time.perf_counter()
        out = render_in_chunks(
            lambda r: model.render_rays(r, near, far, train=False), rays.reshape(-1), chunk
        )
        seconds.append(time.perf_counter() - start)
        target = torch.from_numpy(scene.images[index]).reshape(-1, 3)
        mse = torch.mean((out.rgb.clamp(0, 1) - target) ** 2)
        psnrs.append(-10.0 * math.log10(float(mse)))
    model.train()
    return float(np.mean(psnrs)), psnrs, float(np.mean(seconds))


class Timer:
    def __init__(self):
        self.totals = defaultdict(float)
        self.cpu_totals = defaultdict(float)

    def section(self, name):
        timer = self

        class _Section:
            def __enter__(self):
                self.start = time.perf_counter()
                self.cpu_start = time.process_time()

            def __exit__(self, *exc):
                timer.totals[name] += time.perf_counter() - self.start
                timer.cpu_totals[name] += time.process_time() - self.cpu_start

        return _Section()


def lr_factor(cfg, step):
    return cfg.train.lr_decay_rate ** (step / cfg.train.lr_decay_steps)


def make_optimizer(model, cfg, step):
    groups = model.param_groups(cfg.train.lr)
    for group in groups:
        group["initial_lr"] = group["lr"]
        group["lr"] = group["initial_lr"] * lr_factor(cfg, step)
    return torch.optim.Adam(groups)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scene", default="/work/shared/data/fern")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--eval-at", default="1,2,3,5,10", help="minutes to evaluate at")
    parser.add_argument("--device-profile", default="cpu")
    parser.add_argument("--set", action="append", default=[], help="section.key=value")
    parser.add_argument("--profile-steps", type=int, default=0, help="time N steps and stop")
    parser.add_argument("--profile-at-step", type=int, default=0, help="advance model first")
    parser.add_argument(
        "--clock", default="wall", choices=["wall", "cpu"], help="budget in wall or CPU time"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stats-every", type=int, default=100)
    parser.add_argument("--save", default="", help="save the model state here at the end")
    parser.add_argument("--load", default="", help="start from this saved model state")
    parser.add_argument("--json", default="", help="write the curve here")
    parser.add_argument("--torch-profile", action="store_true", help="op table of the steps")
    parser.add_argument("--render-frame", action="store_true", help="time one spiral frame")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, scene = build(args)
    near, far = scene.near_far(cfg.data.ndc)
    model = TensorfModel(cfg)
    if args.load:
        state = torch.load(args.load, weights_only=True)
        model.adapt_to_state_dict(state)
        model.load_state_dict(state)
    rays, colours = training_rays(scene, cfg.data.ndc)
    num_pixels = colours.shape[0]
    batch = cfg.train.batch_rays
    generator = torch.Generator().manual_seed(args.seed)
    optimizer = make_optimizer(model, cfg, 0)
    print(
        f"rays {num_pixels}, batch {batch}, grid {model.resolution}, "
        f"samples {model.num_samples(near, far)}, params "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M",
        flush=True,
    )
    eval_at = sorted(float(x) for x in args.eval_at.split(",") if float(x) <= args.minutes)
    if args.minutes not in eval_at:
        eval_at.append(args.minutes)
    curve = []
    train_seconds = 0.0
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    step = 0
    timer = Timer()
    stats_every = args.stats_every
    last_report = time.perf_counter()
    profile_steps = args.profile_steps
    while True:
        if profile_steps and step >= args.profile_at_step + profile_steps:
            break
        if step == args.profile_at_step and profile_steps:
            timer = Timer()
            profile_start = time.perf_counter()
            if args.torch_profile:
                profiler = torch.profiler.profile()
                profiler.__enter__()
        if not profile_steps and (
            step >= cfg.train.iters or train_seconds >= args.minutes * 60 + 1e-9
        ):
            break
        start = clock()
        with timer.section("before_step"):
            if model.before_step(step):
                optimizer = make_optimizer(model, cfg, step)
        with timer.section("batch"):
            index = torch.randint(0, num_pixels, (batch,), generator=generator)
            batch_rays = rays[index]
            target = colours[index]
        with timer.section("forward"):
            result = model.render_rays(batch_rays, near, far, train=True, generator=generator)
            loss, scalars = model.loss(result, target, step)
        with timer.section("backward"):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with timer.section("adam"):
            factor = lr_factor(cfg, step)
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor
            optimizer.step()
        train_seconds += clock() - start
        step += 1
        if step % stats_every == 0 and not profile_steps:
            now = time.perf_counter()
            print(
                f"step {step} t={train_seconds:.0f}s mse {scalars['mse']:.5f} "
                f"psnr_train {-10 * math.log10(scalars['mse']):.2f} "
                f"it/s {stats_every / (now - last_report):.2f} grid {model.resolution} "
                f"S {model.num_samples(near, far)} occ {model.occupancy():.2f} "
                f"counts {model.last_sample_counts} "
                f"rss {peak_rss_gb():.2f}G",
                flush=True,
            )
            last_report = now
        if eval_at and train_seconds >= eval_at[0] * 60:
            minute = eval_at.pop(0)
            psnr, per_view, eval_seconds = evaluate(model, scene, cfg, near, far, cfg.render.chunk)
            curve.append({"minute": minute, "step": step, "psnr": psnr, "per_view": per_view})
            print(
                f"EVAL minute {minute:g} step {step} psnr {psnr:.2f} "
                f"views {[round(p, 2) for p in per_view]} "
                f"frame {eval_seconds:.1f}s rss {peak_rss_gb():.2f}G",
                flush=True,
            )
            last_report = time.perf_counter()
    if not profile_steps and (not curve or curve[-1]["step"] != step):
        psnr, per_view, eval_seconds = evaluate(model, scene, cfg, near, far, cfg.render.chunk)
        curve.append(
            {"minute": train_seconds / 60, "step": step, "psnr": psnr, "per_view": per_view}
        )
        print(
            f"EVAL end minute {train_seconds / 60:.2f} step {step} psnr {psnr:.2f} "
            f"views {[round(p, 2) for p in per_view]} frame {eval_seconds:.1f}s",
            flush=True,
        )
    if profile_steps:
        total = time.perf_counter() - profile_start
        if args.torch_profile:
            profiler.__exit__(None, None, None)
            print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
        print(f"profile: {profile_steps} steps, {total / profile_steps * 1000:.0f} ms/step")
        for name, seconds in timer.totals.items():
            cpu = timer.cpu_totals[name]
            print(
                f"  {name:12s} {seconds / profile_steps * 1000:7.1f} ms wall "
                f"{cpu / profile_steps * 1000:7.1f} ms cpu"
            )
    if args.render_frame:
        pose = scene.render_poses[0]
        frame = make_rays(scene.height, scene.width, scene.focal, pose, ndc=cfg.data.ndc)
        model.eval()
        with torch.no_grad():
            start = time.perf_counter()
            render_in_chunks(
                lambda r: model.render_rays(r, near, far, train=False),
                frame.reshape(-1),
                cfg.render.chunk,
            )
            seconds = time.perf_counter() - start
        print(f"spiral frame {seconds:.2f}s -> 120 frames {seconds * 120 / 60:.1f} min")
    if args.save:
        torch.save(model.state_dict(), args.save)
    print(f"steps {step}, train time {train_seconds:.0f}s, peak rss {peak_rss_gb():.2f} GB")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"args": vars(args), "curve": curve, "steps": step}, handle, indent=1)


if __name__ == "__main__":
    main()
