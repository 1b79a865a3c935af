"""End to end through the CLI on tiny scenes: train -> eval -> render-video, resume, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nerfcli.cli.app import app
from tests.conftest import settings_args, tiny_nerf_args, write_llff

runner = CliRunner()

# A classic NeRF shrunk so each step takes milliseconds.
TINY_NERF = tiny_nerf_args(batch_rays=128, eval_every=10, ckpt_every=5, log_every=5)


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return write_llff(tmp_path / "scene", n=9)


def _train(scene: Path, out: Path, iters: int, *extra: str):
    return runner.invoke(
        app,
        [
            "train",
            str(scene),
            *TINY_NERF,
            "--iters",
            str(iters),
            "--out",
            str(out),
            "--json",
            *extra,
        ],
    )


def test_train_eval_render_from_checkpoint_alone(scene: Path, tmp_path: Path):
    out = tmp_path / "run"
    result = _train(scene, out, 20)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 20 and summary["model"] == "nerf"
    assert (out / "ckpt.pt").is_file() and (out / "config.yaml").is_file()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in lines if "loss" in r]
    assert [r["step"] for r in logged] == [5, 10, 15, 20]
    assert {"step", "loss", "psnr", "lr", "elapsed"} <= set(logged[0])
    assert any("test_psnr" in r for r in lines)
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[-1] == "step_0000020.pt"
    assert len(list((out / "previews").glob("*.png"))) == 3  # steps 0, 10, 20

    # eval and render-video need only the checkpoint
    result = runner.invoke(app, ["eval", str(out / "ckpt.pt"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [v["view"] for v in report["views"]] == [0, 8]
    assert report["height"] == 24 and report["width"] == 32
    assert 0 < report["psnr"] < 60 and -1 <= report["ssim"] <= 1
    metrics = json.loads((Path(report["out_dir"]) / "metrics.json").read_text())
    assert metrics["psnr"] == pytest.approx(report["psnr"])
    for kind in ("render", "gt", "error"):
        assert iio.imread(report["views"][0]["files"][kind]).shape == (24, 32, 3)

    video = tmp_path / "spiral.mp4"
    poses = tmp_path / "path.npy"
    result = runner.invoke(
        app,
        [
            "render-video",
            str(out / "ckpt.pt"),
            "--spiral",
            "--frames",
            "6",
            "--out",
            str(video),
            "--depth",
            "--poses-out",
            str(poses),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["frames"] == 6
    frames = list(iio.imiter(video))
    assert len(frames) == 6 and frames[0].shape == (24, 32, 3)
    assert Path(info["depth_video"]).is_file()
    path = np.load(poses)
    assert path.shape == (6, 3, 4) and path.dtype == np.float32

    gif = tmp_path / "small.gif"
    result = runner.invoke(
        app, ["render-video", str(out), "--frames", "3", "--downscale", "2", "--out", str(gif)]
    )
    assert result.exit_code == 0, result.output
    assert iio.imread(gif, index=None).shape[:3] == (3, 12, 16)

    # render with the path file we saved
    result = runner.invoke(
        app,
        [
            "render-video",
            str(out / "ckpt.pt"),
            "--path",
            str(poses),
            "--out",
            str(tmp_path / "again.gif"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["frames"] == 6


def test_a_run_that_ends_between_evals_scores_its_final_model(scene: Path, tmp_path: Path):
    # 13 steps with evals every 10: the summary's held-out PSNR is the final model's (a
    # budget-limited run used to report its step-0 baseline when it ended before an eval)
    out = tmp_path / "run"
    result = _train(scene, out, 13)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in lines if "test_psnr" in r]
    assert [r["step"] for r in evals] == [0, 10, 13]
    assert summary["test_psnr"] == pytest.approx(evals[-1]["test_psnr"])


def test_resume_is_bit_identical(scene: Path, tmp_path: Path):
    straight = tmp_path / "straight"
    assert _train(scene, straight, 16).exit_code == 0
    split = tmp_path / "split"
    assert _train(scene, split, 7).exit_code == 0  # stopped at step 7 ...
    result = runner.invoke(
        app, ["train", str(scene), "--out", str(split), "--resume", "--iters", "16", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["start_step"] == 7
    a = torch.load(straight / "ckpt.pt", weights_only=True)
    b = torch.load(split / "ckpt.pt", weights_only=True)
    assert a["step"] == b["step"] == 16
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_sigterm_saves_a_checkpoint_and_resume_continues(scene: Path, tmp_path: Path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "nerfcli",
        "train",
        str(scene),
        *TINY_NERF,
        "--iters",
        "100000",
        "--out",
        str(out),
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoints").is_dir():
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"resume" in err
    step = torch.load(out / "ckpt.pt", weights_only=True)["step"]
    assert step > 0
    result = runner.invoke(
        app,
        ["train", str(scene), "--out", str(out), "--resume", "--iters", str(step + 3), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == step + 3


def test_existing_run_folder_is_never_overwritten(scene: Path, tmp_path: Path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = _train(scene, out, 2)
    assert result.exit_code == 1
    assert "already exists" in result.output and "--resume" in result.output
    assert sorted(os.listdir(out)) == ["keep.txt"]


def test_resume_without_checkpoint(scene: Path, tmp_path: Path):
    result = runner.invoke(app, ["train", str(scene), "--out", str(tmp_path / "x"), "--resume"])
    assert result.exit_code == 1 and "nothing to resume" in result.output


@pytest.mark.parametrize(
    "args, message, code",
    [
        # a value no model has is a usage error naming the flag (issue 19: exit 2)
        (["--model", "nope"], "'nope' is not one of nerf, tensorf", 2),
        (["--set", "train.bogus=1"], "unknown key 'bogus'", 1),
        (["--set", "train.lr"], "section.key=value", 1),
        (["--config", "no-such-preset"], "unknown config", 1),
        (
            ["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "tpu"],
            "--device",
            1 if not torch.cuda.is_available() else 2,
        ),
    ],
)
def test_bad_train_options_are_one_line_errors(scene, tmp_path, args, message, code):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(scene), "--out", str(out), *args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_checkpoint_errors(scene: Path, tmp_path: Path):
    missing = runner.invoke(app, ["eval", str(tmp_path / "nope.pt")])
    assert missing.exit_code == 1 and "no such checkpoint" in missing.output
    out = tmp_path / "run"
    assert _train(scene, out, 3).exit_code == 0
    data = (out / "ckpt.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    for command in (["eval"], ["render-video"]):
        result = runner.invoke(app, [*command, str(truncated)])
        assert result.exit_code == 1, result.output
        assert "truncated.pt" in result.output and "Traceback" not in result.output
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    assert runner.invoke(app, ["eval", str(garbage)]).exit_code == 1

    # another format version
    payload = torch.load(out / "ckpt.pt", weights_only=True)
    payload["format_version"] = 99
    future = tmp_path / "future.pt"
    torch.save(payload, future)
    result = runner.invoke(app, ["eval", str(future)])
    assert result.exit_code == 1 and "format 99" in result.output


def test_eval_refuses_a_scene_that_does_not_match(scene: Path, tmp_path: Path):
    out = tmp_path / "run"
    assert _train(scene, out, 3).exit_code == 0
    other = write_llff(tmp_path / "other", n=7, seed=5)
    result = runner.invoke(app, ["eval", str(out / "ckpt.pt"), "--scene", str(other)])
    assert result.exit_code == 1
    assert "does not match the checkpoint" in result.output
    assert not (out / "eval").exists()


def test_render_video_refuses_to_overwrite(scene: Path, tmp_path: Path):
    out = tmp_path / "run"
    assert _train(scene, out, 3).exit_code == 0
    video = tmp_path / "v.gif"
    video.write_bytes(b"old")
    result = runner.invoke(app, ["render-video", str(out), "--frames", "2", "--out", str(video)])
    assert result.exit_code == 1 and "--force" in result.output
    assert video.read_bytes() == b"old"
    bad = runner.invoke(app, ["render-video", str(out), "--out", str(tmp_path / "v.avi")])
    assert bad.exit_code == 2 and ".mp4 or .gif" in bad.output  # a usage error (issue 19)
    circle = runner.invoke(app, ["render-video", str(out), "--circle"])
    assert circle.exit_code == 1 and "--spherify" in circle.output


def test_training_on_the_generated_scene_raises_held_out_psnr(tmp_path: Path):
    """A short run of a small classic NeRF on the generated scene: the held-out PSNR logged at
    step 0 and at the end must differ by several dB."""
    from nerfcli.data.synthetic import make_scene

    scene = make_scene(tmp_path / "synth", preset="small").path
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            str(scene),
            "--config",
            "synthetic",
            "--model",
            "nerf",
            "--iters",
            "100",
            "--out",
            str(out),
            "--json",
            *settings_args(
                {
                    "model.nerf.netwidth": 64,
                    "model.nerf.netwidth_fine": 64,
                    "model.nerf.netdepth": 4,
                    "model.nerf.netdepth_fine": 4,
                    "model.nerf.skips": "[2]",
                    "render.n_samples": 24,
                    "render.n_importance": 8,
                    "train.batch_rays": 256,
                    "train.lr": 3e-3,
                }
            ),
            "--set",
            "train.eval_every=100",
        ],
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["step"], r["test_psnr"]) for r in records if "test_psnr" in r]
    assert curve[0][0] == 0 and curve[-1][0] == 100
    assert curve[-1][1] - curve[0][1] > 4.0, curve


def test_the_classic_estimator_resumes_bit_identically_and_evaluates(tmp_path: Path):
    """A Blender scene (a box): the classic model trains through its occupancy estimator,
    updated every 4 steps; a run stopped at step 7 and resumed to 16 ends with the same
    networks and the same grid as one straight run, and eval renders through the grid."""
    from tests.unit.test_training_batches import write_rgba_blender

    root = write_rgba_blender(tmp_path / "blender", size=12, counts=(4, 1, 2))
    extra = ("--set", "model.nerf.estimator_every=4", "--set", "model.nerf.estimator_cells=8")
    extra += ("--set", "data.background=white")
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(root, straight, 16, *extra).exit_code == 0
    assert _train(root, split, 7, *extra).exit_code == 0
    result = runner.invoke(
        app, ["train", str(root), "--out", str(split), "--resume", "--iters", "16", "--json"]
    )
    assert result.exit_code == 0, result.output
    a = torch.load(straight / "ckpt.pt", weights_only=True)
    b = torch.load(split / "ckpt.pt", weights_only=True)
    assert a["model"]["estimator.occupied"].shape == (8, 8, 8)
    assert a["model"]["estimator.vertex_density"].numel() == 9**3  # updated: steps 4 to 16
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    result = runner.invoke(app, ["eval", str(straight), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["psnr"] > 0
