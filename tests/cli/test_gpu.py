"""Every command on CUDA: train (each model), resume (also of a CPU run), eval, render-video,
rays in pinned host memory, bf16 and TF32 against fp32, and 2 GPUs with NCCL where there are
two. Skipped without CUDA; `bench/gpu.sh` runs these first.

Tolerances per device (what each arithmetic can promise):
- CUDA fp32 with TF32 off (eval, render-video, fast-vs-reference outside training): the CPU's,
  1e-5 absolute / 1e-4 relative on colours; rendered frames to 1/255 of the CPU's.
- TF32 matmuls (inside the training loop, train.tf32): 10 mantissa bits, ~1e-3 relative per
  product, so 1e-2 on colours.
- bf16 autocast (train.precision=bf16): 8 mantissa bits, ~4e-3 relative per op, so 5e-2.
- A resumed CUDA run is not bit-identical (grid_sample and index_add backward use atomics):
  weights to 1e-2 relative L2 of a straight run, against ~1 for a different run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.models.config import build_config
from tests.conftest import settings_args, tiny_nerf_args, write_llff

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
runner = CliRunner()

TINY_TENSORF = [
    "--model",
    "tensorf",
    "--factor",
    "1",
    *settings_args(
        {
            "model.tensorf.grid_init": "[16,16,8]",
            "model.tensorf.grid_final": "[24,24,12]",
            "model.tensorf.upsample_steps": "[4]",
            "model.tensorf.density_components": "[4,2,2]",
            "model.tensorf.appearance_components": "[8,4,4]",
            "model.tensorf.app_dim": 8,
            "model.tensorf.decoder_width": 16,
            "train.batch_rays": 256,
        }
    ),
]
MODELS = {
    "nerf": tiny_nerf_args(batch_rays=256, grad_chunk_rays=0),
    "tensorf": TINY_TENSORF,
}
COMMON = settings_args({"train.eval_every": 4, "train.ckpt_every": 4, "train.log_every": 2})


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return write_llff(tmp_path / "scene", n=9)


def train(scene: Path, out: Path, model: str, iters: int, *extra: str) -> dict:
    args = ["train", str(scene), *MODELS[model], *COMMON, "--iters", str(iters)]
    result = runner.invoke(app, [*args, "--out", str(out), "--device", "cuda", "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def relative_l2(a: dict, b: dict) -> float:
    worst = 0.0
    for key, value in a.items():
        if value.is_floating_point() and value.numel():
            x, y = value.double(), b[key].double()
            worst = max(worst, float((x - y).norm() / x.norm().clamp_min(1e-12)))
    return worst


@pytest.mark.parametrize("model", ["nerf", "tensorf"])
def test_train_resume_eval_and_render_video_on_cuda(scene, tmp_path, model):
    straight = train(scene, tmp_path / "straight", model, 8)
    assert straight["device"].startswith("cuda") and straight["steps"] == 8
    assert straight["peak_vram_gb"] > 0
    logged = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").open()]
    assert all(r["vram_gb"] > 0 for r in logged if "loss" in r)
    assert np.isfinite(straight["final_loss"])

    split = tmp_path / "split"
    train(scene, split, model, 4)
    result = runner.invoke(
        app, ["train", str(scene), "--out", str(split), "--resume", "--iters", "8", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["start_step"] == 4
    a = torch.load(tmp_path / "straight" / "ckpt.pt", weights_only=True)["model"]
    b = torch.load(split / "ckpt.pt", weights_only=True)["model"]
    assert relative_l2(a, b) < 1e-2

    ckpt = str(split / "ckpt.pt")
    reports = {}
    for device in ("cuda", "cpu"):
        out = tmp_path / f"eval_{device}"
        result = runner.invoke(app, ["eval", ckpt, "--device", device, "--out", str(out), "--json"])
        assert result.exit_code == 0, result.output
        reports[device] = json.loads(result.stdout)
    assert reports["cuda"]["psnr"] == pytest.approx(reports["cpu"]["psnr"], abs=0.01)
    frames = {}
    for device in ("cuda", "cpu"):
        video = tmp_path / f"{device}.mp4"
        args = ["render-video", ckpt, "--frames", "3", "--device", device, "--out", str(video)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        frames[device] = np.stack(list(iio.imiter(video))).astype(int)
    assert np.abs(frames["cuda"] - frames["cpu"]).max() <= 2  # 1/255 before the codec


def test_a_cpu_run_resumes_on_cuda_reseeded_with_a_warning(scene, tmp_path):
    out = tmp_path / "run"
    args = ["train", str(scene), *MODELS["nerf"], *COMMON, "--out", str(out), "--device", "cpu"]
    assert runner.invoke(app, [*args, "--iters", "3"]).exit_code == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(
            app, ["train", str(scene), "--out", str(out), "--resume", "--iters", "5"]
        )
    assert result.exit_code == 0, result.output
    assert any("reseeded" in str(w.message) for w in caught)
    state = torch.load(out / "ckpt.pt", weights_only=True)["rng"]
    assert bytes(state["generator_device"].tolist()).decode() == "cuda"


def test_rays_past_the_budget_live_in_pinned_host_memory(tmp_path):
    from nerfcli.data.formats import load_scene
    from nerfcli.training.batches import RaySource
    from nerfcli.training.session import start_run

    cfg = build_config(
        None, ["model.name=nerf", "data.factor=1", "train.device_rays_gb=0", "train.iters=3"]
    )
    scene = load_scene(write_llff(tmp_path / "s", n=4), cfg.data)
    gpu = torch.device("cuda")
    trainer = start_run(cfg, scene, tmp_path / "run", gpu).trainer
    source = trainer.source
    assert source.home.type == "cpu" and source.table.is_pinned()
    assert trainer.generator.device.type == "cpu"
    index = torch.randint(0, source.num_rays, (77,))
    for _ in range(3):  # the pinned buffer is reused: each copy lands before the next gather
        picked = source._gather(index)
        assert picked.device.type == "cuda"
        assert torch.equal(picked.cpu(), source.table[index])
    on_device = RaySource(scene, gpu, gpu, torch.Generator(device=gpu))
    assert on_device.table.device.type == "cuda"
    assert torch.equal(on_device.table.cpu(), source.table)
    assert trainer.run().steps == 3


def test_tf32_is_on_inside_the_training_loop_only(scene, tmp_path):
    from nerfcli.training.trainer import StepEvent

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    seen = []
    from nerfcli.data.formats import load_scene
    from nerfcli.models.resolve import ConfigRequest, resolve_config
    from nerfcli.training.session import start_run

    asked = ("data.factor=1", "train.iters=2")
    cfg = resolve_config(ConfigRequest(scene, "llff", "nerf", asked, "cuda"))
    run = start_run(cfg, load_scene(scene, cfg.data), tmp_path / "run", torch.device("cuda"))
    run.trainer.on_event = lambda e: (
        isinstance(e, StepEvent) and seen.append(torch.backends.cuda.matmul.allow_tf32)
    )
    run.trainer.run()
    assert seen == [True, True]
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


@pytest.mark.parametrize("arithmetic, tolerance", [("fp32", 1e-5), ("tf32", 1e-2), ("bf16", 5e-2)])
def test_fast_render_matches_the_reference_per_arithmetic(arithmetic, tolerance):
    from nerfcli.data.rays import make_rays
    from nerfcli.models.reference import render_rays_reference
    from nerfcli.models.registry import build_model
    from nerfcli.training.precision import autocast, tf32_scope

    cfg = build_config(
        None,
        [
            "model.tensorf.grid_init=[11,9,7]",
            "model.tensorf.colour_samples=0",
            "model.tensorf.weight_threshold=-1",
            "model.tensorf.decoder_width=32",
        ],
    )
    torch.manual_seed(0)
    model = build_model(cfg).cuda()
    rays = make_rays(12, 16, 14.0, torch.eye(4)[:3], ndc=True).reshape(-1).to("cuda")
    with torch.no_grad():
        reference = render_rays_reference(model, rays, 0.0, 1.0, train=False)
        with (
            tf32_scope(arithmetic == "tf32"),
            autocast(torch.device("cuda"), torch.bfloat16 if arithmetic == "bf16" else None),
        ):
            fast = model.render_rays(rays, 0.0, 1.0, train=False)
    error = float((fast.rgb.float() - reference.rgb).abs().max())
    assert error <= tolerance, f"{arithmetic}: {error:.2e}"


def test_bf16_training_tracks_fp32(scene, tmp_path):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    runs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        runs[precision] = train(scene, out, "tensorf", 6, "--set", f"train.precision={precision}")
    assert runs["bf16"]["final_loss"] == pytest.approx(runs["fp32"]["final_loss"], rel=0.1)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpus_train_like_one_with_nccl(scene, tmp_path):
    args = ["train", str(scene), *MODELS["tensorf"], *COMMON, "--iters", "8", "--device", "cuda"]
    one = tmp_path / "one"
    train(scene, one, "tensorf", 8, "--set", "train.tf32=false")
    two = tmp_path / "two"
    env = {**os.environ, "NERF_DIST_TIMEOUT": "60"}
    cmd = [sys.executable, "-m", "nerfcli", *args, "--set", "train.tf32=false"]
    done = subprocess.run(
        [*cmd, "--out", str(two), "--nproc", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["processes"] == 2
    a = torch.load(one / "ckpt.pt", weights_only=True)["model"]
    b = torch.load(two / "ckpt.pt", weights_only=True)["model"]
    assert relative_l2(a, b) < 1e-2
