"""Training, eval and render-video across processes (torch.distributed, gloo, 2 ranks of one
thread each) against one process with the same global batch.

Two ways of starting the ranks, both running the real `nerf` command:
* `nerf train --nproc 2`, which goes through torch.distributed.run (torchrun --standalone): the
  resume and the killed-rank tests;
* children forked from a forkserver that imported torch once, with the environment torchrun
  gives its workers (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): the rest, so that
  a 2-rank run costs a fraction of a second rather than three fresh interpreters.

Tolerance (2 ranks against 1 process, float32 on the CPU, one thread each): the two runs draw
the same global batch and the same jitter (seeded per block of the batch), and each rank's
chunk losses are weighted by their share of the global batch, so the only difference is the
order of float32 additions: one process accumulates the chunk gradients one after another, two
processes add two partial sums (and the logged loss terms go through a float32 buffer). Each
sum moves by ~1 ulp (6e-8 relative). The logged losses keep that size (measured over 20 steps:
<= 5e-7 relative), so they must agree to 1e-5. The weights go through Adam, which divides each
gradient component by its own running size: a component whose gradient nearly cancels (its
size comparable to the rounding of its sum) can take a step of a different size, up to one
learning rate (TensoRF grids: 2e-2). Measured on fern: classic max 9e-7, relative L2 per
tensor 6e-7; TensoRF median 5e-8, a few grid elements up to 1.2e-4, relative L2 per tensor up
to 6.4e-5. Each weight tensor must therefore agree to 1e-3 in relative L2 (|a - b| / |a|), 15x
above that noise; a rank that skips the gradient exchange (each steps on its own half batch)
misses by 2.5e-2 (classic) and 0.58 (TensoRF) after 20 steps, and its losses by ~1e-2.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import socket
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
pytestmark = pytest.mark.usefixtures("one_thread")

LOSS_RTOL = 1e-5  # logged loss, PSNR and held-out PSNR, relative
WEIGHT_RTOL = 1e-3  # each weight tensor, relative L2: |a - b| / |a|

COMMON = {
    "train.log_every": 1,
    "train.eval_every": 10,
    "train.eval_downscale": 8,
    "train.ckpt_every": 10,
    "render.chunk": 1024,
}
MODELS = {
    # the classic model, tiny, with its CPU profile's 32-ray gradient chunks
    "nerf": [
        "--model",
        "nerf",
        *settings_args(
            {
                "model.nerf.netwidth": 32,
                "model.nerf.netwidth_fine": 32,
                "model.nerf.netdepth": 4,
                "model.nerf.netdepth_fine": 4,
                "model.nerf.skips": "[2]",
                "render.n_samples": 16,
                "render.n_importance": 16,
                "train.batch_rays": 256,
                "train.grad_chunk_rays": 32,
                **COMMON,
            }
        ),
    ],
    # TensoRF on a small grid, upsampled (parameters replaced, optimizer rebuilt) at step 10
    "tensorf": [
        "--model",
        "tensorf",
        *settings_args(
            {
                "model.tensorf.grid_init": "[16,16,8]",
                "model.tensorf.grid_final": "[32,32,16]",
                "model.tensorf.upsample_steps": "[10]",
                "model.tensorf.density_components": "[4,2,2]",
                "model.tensorf.appearance_components": "[8,4,4]",
                "model.tensorf.app_dim": 8,
                "model.tensorf.decoder_width": 16,
                "model.tensorf.max_samples": 32,
                "model.tensorf.colour_samples": 4,
                "train.batch_rays": 256,
                "train.grad_chunk_rays": 64,
                **COMMON,
            }
        ),
    ],
}


# ----------------------------------------------------------------------------- starting ranks


@pytest.fixture(scope="module")
def fork_context():
    if sys.platform != "linux":
        pytest.skip("the 2-rank runs fork their ranks (Linux)")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "imageio.v3", "nerfcli.cli.app", __name__])
    return context


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(argv: list[str], rank: int, world: int, port: int, log: str) -> None:
    """One rank: torchrun's environment, then `nerf ARGV` (stdout to LOG.out, stderr LOG.err)."""
    for suffix, fd in ((".out", 1), (".err", 2)):
        os.dup2(os.open(log + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        NERF_DIST_TIMEOUT="30",
    )
    torch.set_num_threads(1)
    app(argv, prog_name="nerf")


def run_ranks(context, argv: list[str], logs: Path, world: int = 2) -> str:
    """`nerf ARGV` in `world` forked ranks; every rank must exit 0. Returns rank 0's stdout."""
    logs.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    ranks = [
        context.Process(target=rank_main, args=(argv, r, world, port, str(logs / f"rank{r}")))
        for r in range(world)
    ]
    for process in ranks:
        process.start()
    for r, process in enumerate(ranks):
        process.join(120)
        if process.is_alive():
            process.kill()
        err = (logs / f"rank{r}.err").read_text(errors="replace")
        assert process.exitcode == 0, f"rank {r} exited {process.exitcode}:\n{err}"
    return (logs / "rank0.out").read_text()


def nerf_nproc(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NERF_DIST_TIMEOUT": "30"}
    cmd = [sys.executable, "-m", "nerfcli", *argv, "--nproc", "2"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


# ----------------------------------------------------------------------------- comparing runs


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(one: Path, two: Path, from_step: int = 0) -> None:
    """Logged losses, held-out PSNR and final weights of two runs agree (module tolerance)."""
    a = [r for r in records(one) if r["step"] > from_step]
    b = [r for r in records(two) if r["step"] > from_step]
    steps = [(r["step"], "loss" in r) for r in a]
    assert [(r["step"], "loss" in r) for r in b] == steps
    for key in ("loss", "psnr", "test_psnr"):
        x = [r[key] for r in a if key in r]
        y = [r[key] for r in b if key in r]
        np.testing.assert_allclose(y, x, rtol=LOSS_RTOL, err_msg=key)
    wa = torch.load(one / "ckpt.pt", weights_only=True)
    wb = torch.load(two / "ckpt.pt", weights_only=True)
    assert wa["step"] == wb["step"]
    assert wa["model"].keys() == wb["model"].keys()
    for key, value in wa["model"].items():
        other = wb["model"][key]
        assert other.shape == value.shape, key
        if value.is_floating_point() and value.numel():
            gap = float((other.double() - value.double()).norm() / value.double().norm())
            assert gap <= WEIGHT_RTOL, f"{key}: weights differ by {gap:.2e} (relative L2)"


@pytest.fixture(scope="module")
def fern_runs(tmp_path_factory):
    """One-process reference runs on fern (factor 8), made once per model: {model: folder}."""
    done: dict[str, Path] = {}

    def reference(scene: Path, model: str, iters: int = 20) -> Path:
        key = f"{model}-{iters}"
        if key not in done:
            out = tmp_path_factory.mktemp("one") / key
            result = runner.invoke(app, train_args(scene, out, model, iters))
            assert result.exit_code == 0, result.output
            done[key] = out
        return done[key]

    return reference


def train_args(scene: Path, out: Path, model: str, iters: int) -> list[str]:
    return ["train", str(scene), "--out", str(out), "--iters", str(iters), "--quiet"] + [
        *MODELS[model],
        "--factor",
        "8",
        "--device",
        "cpu",
    ]


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("model", ["nerf", "tensorf"])
def test_two_ranks_train_like_one_process(fork_context, fern_runs, fern_dir, tmp_path, model):
    """20 steps on fern with a global batch of 256 rays, 128 per rank (TensoRF across its
    upsample at step 10): the same logged losses, held-out PSNR and weights."""
    one = fern_runs(fern_dir, model)
    two = tmp_path / "two"
    run_ranks(fork_context, train_args(fern_dir, two, model, 20), tmp_path / "logs")
    assert_same_run(one, two)
    if model == "tensorf":  # the upsample to 32 x 32 x 16 happened (in both: same shapes)
        grid = torch.load(two / "ckpt.pt", weights_only=True)["model"]
        assert grid["field.density_planes.0"].shape[-2:] == (32, 32)
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())


def test_resume_from_one_process_into_two(fern_runs, fern_dir, tmp_path):
    """The one-process run's step-10 checkpoint, continued by `nerf train --resume --nproc 2`
    to step 20: the same run as 20 steps in one process (steps 11-20, the final weights)."""
    straight = fern_runs(fern_dir, "nerf")
    split = tmp_path / "split"
    shutil.copytree(straight, split)
    shutil.copy(split / "checkpoints" / "step_0000010.pt", split / "ckpt.pt")
    assert torch.load(split / "ckpt.pt", weights_only=True)["step"] == 10
    args = ["train", str(fern_dir), "--out", str(split), "--resume", "--iters", "20", "--json"]
    done = nerf_nproc(args)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # rank 0's alone
    assert (summary["start_step"], summary["steps"], summary["processes"]) == (10, 20, 2)
    assert "x 2 processes" in " ".join(done.stderr.split())  # rich wraps the line
    assert_same_run(straight, split, from_step=10)


# ----------------------------------------------------------------------------- eval and video


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    scene = write_llff(tmp_path_factory.mktemp("scene") / "scene", n=9)
    out = tmp_path_factory.mktemp("run") / "run"
    args = tiny_nerf_args(batch_rays=64, eval_every=0)
    result = runner.invoke(app, ["train", str(scene), *args, "--iters", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / "ckpt.pt"


def _rank_then_report(argv: list[str], rank: int, world: int, port: int, log: str) -> None:
    """rank_main, then what is left of the job once the command returned (LOG.after)."""
    import torch.distributed as dist

    from nerfcli.training import distributed

    try:
        rank_main(argv, rank, world, port, log)
        code = None
    except SystemExit as exc:
        code = exc.code
    after = {"code": code, "group": dist.is_initialized(), "world": distributed.current().world}
    Path(log + ".after").write_text(json.dumps(after))


def test_ranks_leave_the_job_together_when_the_command_succeeds(
    fork_context, tiny_checkpoint, tmp_path
):
    """A succeeded command leaves the process group on every rank before the interpreter exits
    (a barrier, then destroy): left to exit, a rank that finished first tore gloo down while
    rank 0 still wrote, and now and then died of SIGABRT, failing a finished job."""
    port = _free_port()
    argv = ["eval", str(tiny_checkpoint), "--out", str(tmp_path / "e"), "--json"]
    logs = [str(tmp_path / f"rank{r}") for r in range(2)]
    ranks = [
        fork_context.Process(target=_rank_then_report, args=(argv, r, 2, port, logs[r]))
        for r in range(2)
    ]
    for process in ranks:
        process.start()
    for process, log in zip(ranks, logs):
        process.join(120)
        assert process.exitcode == 0, Path(log + ".err").read_text(errors="replace")
        after = json.loads(Path(log + ".after").read_text())
        assert after == {"code": 0, "group": False, "world": 1}


def test_eval_split_across_ranks_gives_the_same_metrics(fork_context, tiny_checkpoint, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    result = runner.invoke(app, ["eval", str(tiny_checkpoint), "--out", str(one), "--json"])
    assert result.exit_code == 0, result.output
    stdout = run_ranks(
        fork_context, ["eval", str(tiny_checkpoint), "--out", str(two), "--json"], tmp_path / "l"
    )
    a, b = json.loads(result.stdout), json.loads(stdout)
    assert [v["view"] for v in b["views"]] == [v["view"] for v in a["views"]] == [0, 8]
    for key in ("psnr", "ssim"):
        assert b[key] == pytest.approx(a[key], rel=1e-6)
        assert [v[key] for v in b["views"]] == pytest.approx([v[key] for v in a["views"]])
    assert json.loads((two / "metrics.json").read_text())["psnr"] == b["psnr"]
    for view in (0, 8):  # view 8 was rendered and written by rank 1
        x = iio.imread(one / f"view{view:03d}_render.png").astype(int)
        y = iio.imread(two / f"view{view:03d}_render.png").astype(int)
        assert np.abs(x - y).max() <= 1


def test_render_video_split_across_ranks_gives_the_same_frames(
    fork_context, tiny_checkpoint, tmp_path
):
    """5 frames over 2 ranks (the last round has one frame): the same video as 1 rank."""
    videos = {}
    for name, world in (("one", 1), ("two", 2)):
        video = tmp_path / f"{name}.mp4"
        args = ["render-video", str(tiny_checkpoint), "--frames", "5", "--out", str(video)]
        args += ["--depth", "--json"]
        if world == 1:
            result = runner.invoke(app, args)
            assert result.exit_code == 0, result.output
        else:
            info = json.loads(run_ranks(fork_context, args, tmp_path / "logs"))
            assert info["frames"] == 5 and info["processes"] == 2
        videos[name] = [
            np.stack(list(iio.imiter(p))) for p in (video, video.with_name(f"{name}_depth.mp4"))
        ]
    for a, b in zip(videos["one"], videos["two"]):
        assert a.shape == b.shape and a.shape[0] == 5
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


# ----------------------------------------------------------------------------- failures


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _rank_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


def test_a_killed_rank_ends_the_job_within_60_seconds(tmp_path):
    if sys.platform != "linux":
        pytest.skip("finds the ranks through /proc (Linux)")
    scene = write_llff(tmp_path / "scene", n=6)
    out = tmp_path / "run"
    args = tiny_nerf_args(batch_rays=64, eval_every=0, ckpt_every=5)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "nerfcli", "train", str(scene), *args, "--iters", "1000000"]
    launcher = subprocess.Popen(
        [*cmd, "--out", str(out), "--nproc", "2", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 90
    while not (out / "ckpt.pt").is_file():
        assert launcher.poll() is None, launcher.communicate()[1]
        assert time.monotonic() < deadline, "no checkpoint from the 2-rank run"
        time.sleep(0.2)
    victim = next(pid for pid in _children(launcher.pid) if _rank_of(pid) == 1)
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    try:
        _, err = launcher.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        launcher.kill()
        pytest.fail("the job did not end within 60 s of a rank's death")
    assert time.monotonic() - killed < 60
    assert launcher.returncode != 0
    assert "rank 1 of 2" in err and "SIGKILL" in err and "--resume" in err, err
    assert torch.load(out / "ckpt.pt", weights_only=True)["step"] >= 5  # rank 0's last one
    shutil.rmtree(out)
