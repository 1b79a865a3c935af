"""Render speed of a trained TensoRF checkpoint, any scene kind: the plain render path against
the fast one, side by side in one run (frame by frame, alternating which goes first), and the
held-out PSNR of both.

    .venv/bin/python -m bench.render_speed --ckpt runs/fern/ckpt.pt
    .venv/bin/python -m bench.render_speed --ckpt runs/lego/ckpt.pt --frames 10 --views 5

plain: `RenderPolicy(fast=False)`, the path training takes (NDC: density on z-slices; box and
unbounded: density at every sample in the box / the contracted grid and the alpha mask;
colour at 8 weight quantiles per ray, composited per sample). fast: the default no-grad path:
NDC, nerfcli/models/tensorf/fast.py (the baked appearance slices are built inside its timed
frames, once enough rays were rendered); box and unbounded, models/tensorf/frozen.py (the
frozen field is baked inside the first timed frame of the held-out pass). The held-out PSNR of the fast path is taken twice:
before the spiral (the views too few for the bake: colour from the factors) and after it
(from the table the spiral baked). --reference adds the colour-at-every-sample render
(models/reference.py) on the held-out views, for how far both are from it. The CPU is set up
as the commands set it (`select_device`: glibc keeps freed memory); the load average before
and after goes into the output. Writes --json when given.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from pathlib import Path

import torch

from bench.common import machine, peak_rss_gb, write_json
from nerfcli.evaluation.evaluate import load_matching_scene
from nerfcli.metrics import psnr_from_mse
from nerfcli.models.reference import render_rays_reference
from nerfcli.render.image import render_view
from nerfcli.training.checkpoint import load_checkpoint, restore_model
from nerfcli.training.device import select_device


def held_out_psnr(render_fn, scene, chunk: int, views: list[int]) -> list[float]:
    """PSNR of each of the held-out `views` at full resolution."""
    values = []
    for view in views:
        out = render_view(render_fn, scene.camera(view), chunk, "cpu")
        gt = torch.from_numpy(scene.images[view])[: out.rgb.shape[0], : out.rgb.shape[1]]
        values.append(psnr_from_mse(float(torch.mean((out.rgb - gt) ** 2))))
    return values


def timed_render(render_fn, camera, chunk: int) -> tuple[object, float, float]:
    """(result, wall seconds, CPU seconds of this process) of one view."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = render_view(render_fn, camera, chunk, "cpu")
    return out, time.perf_counter() - wall, time.process_time() - cpu


def spiral(model, policies: dict, scene, frames: int, chunk: int) -> dict:
    """Each spiral frame with every policy in turn (the first one alternating); seconds per
    policy and the largest colour difference from the first policy's frame."""
    names = list(policies)
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    worst = 0.0

    def render_fn(rays, near, far):
        return model.render_rays(rays, near, far, train=False)

    for index, c2w in enumerate(scene.render_poses[:frames]):
        camera = scene.path_camera(c2w)
        order = names if index % 2 == 0 else names[::-1]
        images = {}
        for name in order:
            model.policy = policies[name]
            images[name], seconds, cpu_seconds = timed_render(render_fn, camera, chunk)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
        worst = max(worst, float((images[names[0]].rgb - images[names[-1]].rgb).abs().max()))
    pixels = camera.height * camera.width
    return {
        name: {
            "mpixel_per_second": round(len(wall[name]) * pixels / sum(wall[name]) / 1e6, 4),
            "seconds": round(sum(wall[name]), 2),
            "cpu_seconds": round(sum(cpu[name]), 2),
            "median_frame_seconds": round(statistics.median(wall[name]), 3),
            "first_frame_seconds": round(wall[name][0], 3),
        }
        for name in names
    } | {"max_abs_rgb_difference": round(worst, 5), "frames": min(frames, len(scene.render_poses))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=120, help="spiral frames (0: none)")
    parser.add_argument("--chunk", type=int, default=0, help="rays per chunk (0: the config's)")
    parser.add_argument("--reference", action="store_true", help="also the plain reference")
    parser.add_argument("--views", type=int, default=0, help="held-out views scored (0: all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    select_device("cpu")  # as every command's distributed.join does
    load_before = os.getloadavg()
    ckpt = load_checkpoint(args.ckpt)
    model = restore_model(ckpt)
    scene = load_matching_scene(ckpt, None)
    chunk = args.chunk or ckpt.config.render.chunk
    policies = {"plain": dataclasses.replace(model.policy, fast=False), "fast": model.policy}

    def render_fn(rays, near, far):
        return model.render_rays(rays, near, far, train=False)

    doc: dict = {"machine": machine(), "checkpoint": str(args.ckpt), "step": ckpt.step}
    doc["resolution"] = list(model.field.resolution)
    held_out = list(scene.held_out)
    if args.views > 0:  # every k-th, spread over the held-out views
        held_out = held_out[:: max(1, len(held_out) // args.views)][: args.views]
    doc["held_out_views"] = held_out
    doc["kind"] = scene.kind
    with torch.no_grad():
        for name, policy in policies.items():
            model.policy = policy
            start = time.perf_counter()
            views = held_out_psnr(render_fn, scene, chunk, held_out)
            doc[f"held_out_seconds_{name}"] = round(time.perf_counter() - start, 2)
            doc[f"psnr_{name}"] = [round(v, 3) for v in views]
            print(f"held-out PSNR {name}: {sum(views) / len(views):.3f} dB {doc[f'psnr_{name}']}")
        if args.reference:

            def reference_fn(rays, near, far):
                return render_rays_reference(model, rays, near, far, train=False)

            views = held_out_psnr(reference_fn, scene, 1024, held_out)
            doc["psnr_reference"] = [round(v, 3) for v in views]
            print(f"held-out PSNR reference: {sum(views) / len(views):.3f} dB")
        if args.frames > 0:
            doc["spiral"] = spiral(model, policies, scene, args.frames, chunk)
            result = doc["spiral"]
            ratio = result["plain"]["seconds"] / max(result["fast"]["seconds"], 1e-9)
            doc["spiral"]["speedup"] = round(ratio, 2)
            print(
                f"{scene.kind}: path {result['frames']} frames at {scene.width} x "
                f"{scene.height}: plain {result['plain']['seconds']} s "
                f"({result['plain']['mpixel_per_second']} Mpixel/s), fast "
                f"{result['fast']['seconds']} s ({result['fast']['mpixel_per_second']} "
                f"Mpixel/s): {ratio:.2f}x, max |rgb difference| "
                f"{result['max_abs_rgb_difference']}"
            )
            model.policy = policies["fast"]
            views = held_out_psnr(render_fn, scene, chunk, held_out)
            doc["psnr_fast_after_spiral"] = after = [round(v, 3) for v in views]
            mean = sum(views) / len(views)
            print(f"held-out PSNR fast after the spiral: {mean:.3f} dB {after}")
    doc["load_average"] = {"before": load_before, "after": os.getloadavg()}
    print(f"load average before {load_before}, after {doc['load_average']['after']}")
    doc["peak_rss_gb"] = round(peak_rss_gb(), 3)
    print(f"peak RSS {doc['peak_rss_gb']} GB")
    if args.json is not None:
        write_json(args.json, doc)


if __name__ == "__main__":
    main()
