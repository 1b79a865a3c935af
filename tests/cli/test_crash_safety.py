"""Crash safety of `nerf train`: a process killed at any moment leaves a loadable checkpoint,
`--resume` continues from it, and a full or read-only output folder is a one-line error (exit 1)
before training where that can be detected, never a torn ckpt.pt.

How the kills are made (every one a real SIGKILL of a real training process):

* `python -m nerfcli train` in a subprocess, killed mid-training: the end-to-end path.
* Kills *inside* a checkpoint write, made deterministic: the child runs the real CLI with the
  `open` that save_checkpoint uses swapped for a file object that holds the process still at
  one point of the nth write of ckpt.pt (64 KiB into torch.save's bytes; after all bytes and
  the fsync but before the rename) or with `os.link` holding it after the rename but before the
  numbered copy; it touches a marker file and the test SIGKILLs it there. The stand-ins change
  nothing the code under test does; they only make the kill land where it has to.
* Kills at random moments of real, unhooked writes: a model wide enough for a ~17 MB
  checkpoint, a checkpoint every step, and a SIGKILL a random 0-10 ms after the temp file of a
  write appears, over several kill/resume rounds.

Disk full and read-only, for real where the kernel allows: a child enters a private user and
mount namespace and mounts a 2 MB tmpfs and a read-only tmpfs (ENOSPC and EROFS even as root;
skipped where unprivileged namespaces are forbidden). Everywhere: RLIMIT_FSIZE makes writes past
a size fail with EFBIG (same code path as a full disk, root included), /dev/full fails
save_checkpoint with a real ENOSPC, a path under a file fails with ENOTDIR, and folder
permissions (skipped for root, whom they do not stop).

Children the test kills are forked from a forkserver that imported torch once, so a kill round
costs a fraction of a second rather than a fresh interpreter.
"""

from __future__ import annotations

import builtins
import ctypes
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import nerfcli.training.checkpoint as checkpoint_module
from nerfcli.cli.app import app
from nerfcli.errors import CheckpointError
from nerfcli.training.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import settings_args, tiny_nerf_args, write_llff

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


# A classic NeRF shrunk so each step takes milliseconds; a checkpoint every 2 steps (~280 KB).
TINY = tiny_nerf_args(batch_rays=64, eval_every=0, ckpt_every=2, log_every=1)
# Wide layers but few rays: cheap steps, a ~17 MB checkpoint that takes tens of ms to write.
WIDE = [
    *TINY,
    *settings_args(
        {
            "model.nerf.netwidth": 384,
            "model.nerf.netwidth_fine": 384,
            "train.batch_rays": 16,
            "train.ckpt_every": 1,
        }
    ),
]


# ----------------------------------------------------------------------------- helpers


def stray_temps(out: Path) -> list[Path]:
    """Temp files of unfinished atomic writes in a run folder."""
    found = list(out.glob(".ckpt.pt.*"))
    for sub in ("checkpoints", "previews"):
        if (out / sub).is_dir():
            found += list((out / sub).glob(".*"))
    return sorted(found)


def logged_steps(out: Path) -> list[int]:
    """Steps of the loss records of metrics.jsonl (every line must be JSON)."""
    lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [record["step"] for record in map(json.loads, lines) if "loss" in record]


def assert_one_line_error(output: str, *fragments: str) -> str:
    """Exactly one `error:` line, holding every fragment, and no traceback."""
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    for fragment in fragments:
        assert fragment in errors[0], output
    return errors[0]


def resume(scene: Path, out: Path, iters: int) -> dict:
    result = runner.invoke(
        app,
        ["train", str(scene), "--out", str(out), "--resume", "--iters", str(iters)]
        + ["--json", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def wait_for(condition: Callable[[], bool], timeout: float, alive: Callable[[], bool], log: Path):
    deadline = time.monotonic() + timeout
    while not condition():
        if not alive():
            pytest.fail(f"the training process ended early:\n{_read(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for the training process:\n{_read(log)}")
        time.sleep(0.001)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


@pytest.fixture(scope="module")
def module_scene(tmp_path_factory) -> Path:
    return write_llff(tmp_path_factory.mktemp("scene") / "scene", n=9)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, module_scene) -> Path:
    """A finished 4-step run (checkpoints at steps 2 and 4); tests copy it."""
    out = tmp_path_factory.mktemp("trained") / "run"
    result = runner.invoke(
        app, ["train", str(module_scene), *TINY, "--iters", "4", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    return out


def copy_run(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


# ----------------------------------------------------------------------------- child processes


@pytest.fixture(scope="module")
def fork_context():
    if sys.platform != "linux":
        pytest.skip("the kill tests fork training children (Linux)")
    context = multiprocessing.get_context("forkserver")
    preload = [
        "torch",
        "imageio.v3",
        "nerfcli.cli.app",
        "nerfcli.training.trainer",
        "nerfcli.models.nerf",
    ]
    context.set_forkserver_preload([*preload, __name__])  # imported once, not per child
    return context


def start_child(context, argv: list[str], log: Path, *hooks: tuple) -> multiprocessing.Process:
    """Run `nerf ARGV` in a forked child (stdout and stderr to `log`), after `hooks`."""
    process = context.Process(target=child_main, args=(argv, str(log), hooks), daemon=True)
    process.start()
    return process


def child_main(argv: list[str], log: str, hooks: tuple) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    for name, *args in hooks:
        HOOKS[name](*args)
    torch.set_num_threads(1)
    app(argv, prog_name="nerf")


def finish(process: multiprocessing.Process, timeout: float = 120) -> int:
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join(10)
        pytest.fail("the training process did not finish in time")
    return process.exitcode


def kill(process: multiprocessing.Process) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.join(30)
    assert process.exitcode == -signal.SIGKILL


def _hold(marker: str) -> None:
    """Stop here and tell the test, which SIGKILLs this process."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(300)
    os._exit(99)  # not killed: the test has failed already


def _hook_hold_in_write(marker: str, stage: str, nth: int) -> None:
    """Hold the nth write of ckpt.pt: "mid-write" once 64 KiB of torch.save's bytes reached the
    temp file; "written" after every byte and the fsync, before close and rename."""
    writes = [0]

    class HoldingFile:
        def __init__(self, path, mode):
            self.handle = builtins.open(path, mode)
            is_latest = Path(path).name.startswith(".ckpt.pt.")
            writes[0] += is_latest
            self.held = is_latest and writes[0] == nth
            self.size = 0

        def write(self, data) -> int:
            count = self.handle.write(data)
            self.size += len(data)
            if self.held and stage == "mid-write" and self.size >= 64 * 1024:
                self.handle.flush()
                _hold(marker)
            return count

        def flush(self) -> None:
            self.handle.flush()

        def fileno(self) -> int:
            return self.handle.fileno()

        def __enter__(self):
            return self

        def __exit__(self, *exc_info) -> None:
            if self.held and stage == "written" and exc_info[0] is None:
                _hold(marker)
            self.handle.close()

    checkpoint_module.open = HoldingFile


def _hook_hold_before_link(marker: str, nth: int) -> None:
    """Hold the nth numbered copy: the new ckpt.pt is in place, checkpoints/ lacks it."""
    real_link = os.link
    calls = [0]

    def link(source, target, *args, **kwargs):
        calls[0] += 1
        if calls[0] == nth:
            _hold(marker)
        return real_link(source, target, *args, **kwargs)

    os.link = link


def _hook_file_size_limit(limit: int) -> None:
    """Writes past `limit` bytes fail with EFBIG (Python ignores SIGXFSZ), as on a full disk."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


HOOKS = {
    "hold_in_write": _hook_hold_in_write,
    "hold_before_link": _hook_hold_before_link,
    "file_size_limit": _hook_file_size_limit,
}


# ----------------------------------------------------------------------------- SIGKILL


def test_sigkill_during_training_then_resume(tmp_path: Path):
    scene = write_llff(tmp_path / "scene", n=9)
    out = tmp_path / "run"
    log = tmp_path / "train.log"
    command = [sys.executable, "-m", "nerfcli", "train", str(scene), *TINY]
    command += ["--iters", "100000", "--out", str(out), "--quiet"]
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            command,
            stdout=handle,
            stderr=handle,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        try:
            wait_for(
                lambda: len(list((out / "checkpoints").glob("step_*.pt"))) >= 2,
                180,
                lambda: process.poll() is None,
                log,
            )
            time.sleep(random.Random(0).uniform(0.0, 0.2))
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert process.returncode == -signal.SIGKILL

    ckpt = load_checkpoint(out / "ckpt.pt")
    assert ckpt.step >= 4 and ckpt.step % 2 == 0
    assert max(logged_steps(out)) >= ckpt.step  # the killed run may have logged further

    summary = resume(scene, out, ckpt.step + 3)
    assert summary["start_step"] == ckpt.step
    assert summary["steps"] == ckpt.step + 3
    assert stray_temps(out) == []
    # The log reads as one run: the records the killed run wrote past its checkpoint are gone.
    assert logged_steps(out) == list(range(1, ckpt.step + 4))
    assert load_checkpoint(out / "ckpt.pt").step == ckpt.step + 3


@pytest.mark.parametrize(
    "stage, nth, survivor",
    [
        ("mid-write", 1, None),  # the first checkpoint torn: nothing to resume, nothing corrupt
        ("mid-write", 2, 2),  # the second torn: the first survives
        ("written", 2, 2),  # written and fsynced, not renamed: still the first
        ("renamed", 2, 4),  # renamed, numbered copy missing: the new one
    ],
)
def test_sigkill_inside_a_checkpoint_write(
    fork_context, module_scene, tmp_path, stage, nth, survivor
):
    out = tmp_path / "run"
    log = tmp_path / "child.log"
    marker = tmp_path / "held"
    if stage == "renamed":
        hook = ("hold_before_link", str(marker), nth)
    else:
        hook = ("hold_in_write", str(marker), stage, nth)
    argv = ["train", str(module_scene), *TINY, "--iters", "1000", "--out", str(out), "--quiet"]
    child = start_child(fork_context, argv, log, hook)
    try:
        wait_for(marker.exists, 120, child.is_alive, log)
        kill(child)
    finally:
        if child.is_alive():
            child.kill()
    temps = stray_temps(out)
    if stage == "mid-write":
        assert len(temps) == 1 and temps[0].stat().st_size >= 64 * 1024
        with pytest.raises(CheckpointError):  # proof that the kill tore the file it was writing
            load_checkpoint(temps[0])
    elif stage == "written":
        assert len(temps) == 1
        assert torch.load(temps[0], weights_only=True)["step"] == 4  # complete, never renamed
    else:
        assert temps == []

    if survivor is None:
        assert not (out / "ckpt.pt").exists()
        result = runner.invoke(app, ["train", str(module_scene), "--out", str(out), "--resume"])
        assert result.exit_code == 1
        assert_one_line_error(result.output, "nothing to resume", "before its first checkpoint")
        return
    assert load_checkpoint(out / "ckpt.pt").step == survivor
    if stage == "renamed":
        assert not (out / "checkpoints" / "step_0000004.pt").exists()
    summary = resume(module_scene, out, survivor + 2)
    assert summary["start_step"] == survivor and summary["steps"] == survivor + 2
    assert stray_temps(out) == []
    assert (out / "checkpoints" / f"step_{survivor + 2:07d}.pt").is_file()
    assert logged_steps(out) == list(range(1, survivor + 3))


def test_sigkill_at_random_moments_of_real_checkpoint_writes(fork_context, module_scene, tmp_path):
    rng = random.Random(1234)
    out = tmp_path / "run"
    log = tmp_path / "child.log"
    last_step = 0
    torn = 0
    rounds = 5
    for round_number in range(rounds):
        if round_number == 0:
            argv = ["train", str(module_scene), *WIDE, "--out", str(out)]
        else:
            argv = ["train", str(module_scene), "--out", str(out), "--resume"]
        child = start_child(fork_context, [*argv, "--iters", "100000", "--quiet"], log)
        # Kill during the 1st, 2nd or 3rd checkpoint write of this round (the first round
        # needs one finished checkpoint to have anything to resume).
        target_write = rng.randint(2 if round_number == 0 else 1, 3)
        seen: set[str] = set()

        def write_started() -> bool:
            seen.update(p.name for p in out.glob(".ckpt.pt.*"))  # noqa: B023
            return len(seen) >= target_write  # noqa: B023

        try:
            wait_for(write_started, 120, child.is_alive, log)
            time.sleep(rng.uniform(0.0, 0.01))
            kill(child)
        finally:
            if child.is_alive():
                child.kill()
        torn += bool(list(out.glob(".ckpt.pt.*")))  # the kill landed before the rename
        ckpt = load_checkpoint(out / "ckpt.pt")  # loads after every kill
        assert ckpt.step >= last_step
        last_step = ckpt.step
    assert torn >= 1, "no kill landed inside a checkpoint write"
    summary = resume(module_scene, out, last_step + 1)
    assert summary["start_step"] == last_step and summary["steps"] == last_step + 1
    assert stray_temps(out) == []
    assert logged_steps(out) == list(range(1, last_step + 2))
    shutil.rmtree(out)  # ~100 MB of checkpoints


# ----------------------------------------------------------------------------- disk full


def test_disk_full_during_a_checkpoint_write_keeps_the_previous_one(
    trained_run, tmp_path, monkeypatch
):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    out = copy_run(trained_run, tmp_path)
    before = (out / "ckpt.pt").read_bytes()
    ckpt = load_checkpoint(out / "ckpt.pt")
    ckpt.step = 6
    # Every byte save_checkpoint writes goes to /dev/full, which fails with a real ENOSPC.
    monkeypatch.setattr(
        checkpoint_module,
        "open",
        lambda path, mode: builtins.open("/dev/full", mode),
        raising=False,
    )
    with pytest.raises(CheckpointError, match="No space left on device") as caught:
        save_checkpoint(ckpt, out / "ckpt.pt")
    assert "\n" not in str(caught.value) and "previous checkpoint" in str(caught.value)
    assert (out / "ckpt.pt").read_bytes() == before
    assert stray_temps(out) == []


def test_too_little_free_space_is_refused_before_training(module_scene, tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=200_000))
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", str(module_scene), *TINY, "--iters", "4", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 1
    assert_one_line_error(result.output, "only 0.2 MB free", "needs about")
    assert not out.exists()  # refused before the run folder was made


def test_file_size_limit_fails_cleanly_before_and_during_training(
    fork_context, module_scene, trained_run, tmp_path
):
    # Before training: the 4 KiB probe write is refused; no run folder is left behind.
    new = tmp_path / "new"
    log = tmp_path / "before.log"
    argv = ["train", str(module_scene), *TINY, "--iters", "4", "--out", str(new), "--quiet"]
    assert finish(start_child(fork_context, argv, log, ("file_size_limit", 1000))) == 1
    assert_one_line_error(_read(log), "cannot write the run folder", "File too large")
    assert not new.exists()

    # During training: the next checkpoint (~280 KB) does not fit; ckpt.pt stays step 4.
    out = copy_run(trained_run, tmp_path)
    log = tmp_path / "during.log"
    argv = ["train", str(module_scene), "--out", str(out), "--resume", "--iters", "8", "--quiet"]
    assert finish(start_child(fork_context, argv, log, ("file_size_limit", 64 * 1024))) == 1
    assert_one_line_error(_read(log), "ckpt.pt: cannot write checkpoint (File too large)")
    assert load_checkpoint(out / "ckpt.pt").step == 4
    assert stray_temps(out) == []


CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 0x1
MS_REC = 0x4000
MS_PRIVATE = 0x40000


def _mount_private_tmpfs(mounts: list[tuple[str, str, int]]) -> None:
    """Enter a new user + mount namespace and mount tmpfs at each (target, options, flags)."""
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> None:
        if result != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"{what}: {os.strerror(errno)}")

    uid, gid = os.getuid(), os.getgid()
    check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    for target, options, flags in mounts:
        check(
            libc.mount(b"tmpfs", os.fsencode(target), b"tmpfs", flags, options.encode()),
            f"mount tmpfs on {target}",
        )


def tmpfs_child(scene: str, root: str, report: str) -> None:
    """In a private namespace: a read-only tmpfs and a 2 MB one; writes what happened."""
    full, read_only = Path(root) / "full", Path(root) / "ro"
    try:
        _mount_private_tmpfs([(str(full), "size=2m", 0), (str(read_only), "size=1m", MS_RDONLY)])
    except OSError as exc:
        Path(report).write_text(json.dumps({"unavailable": str(exc)}))
        return
    torch.set_num_threads(1)
    child_runner = CliRunner()

    def train(out: Path, *extra: str):
        args = ["train", scene, *TINY, "--out", str(out), "--quiet", *extra]
        return child_runner.invoke(app, args)

    def fill(leave: int) -> Path:
        filler = full / "filler"
        with open(filler, "wb") as handle:
            try:
                while shutil.disk_usage(full).free > leave:
                    handle.write(b"\0" * 4096)
                    handle.flush()
            except OSError:
                pass
        return filler

    results: dict = {}
    result = train(read_only / "run", "--iters", "4")
    results["read_only"] = {
        "exit": result.exit_code,
        "output": result.output,
        "left": os.listdir(read_only),
    }
    filler = fill(0)
    result = train(full / "run", "--iters", "4")
    results["full"] = {"exit": result.exit_code, "output": result.output}
    results["full"]["left"] = (full / "run").exists()
    filler.unlink()
    filler = fill(1 << 20)  # 1 MB left: takes the probe, not a checkpoint plus margin
    result = train(full / "run", "--iters", "4")
    results["nearly_full"] = {"exit": result.exit_code, "output": result.output}
    results["nearly_full"]["left"] = (full / "run").exists()
    filler.unlink()

    out = full / "run"
    keep_all = ["--set", "train.ckpt_every=1", "--set", "train.keep_checkpoints=1000"]
    result = train(out, "--iters", "1000", *keep_all)
    results["mid_run"] = {
        "exit": result.exit_code,
        "output": result.output,
        "temps": [p.name for p in stray_temps(out)],
        "step": load_checkpoint(out / "ckpt.pt").step,
        "logged": logged_steps(out),
    }
    shutil.rmtree(out / "checkpoints")  # free space, then continue
    step = results["mid_run"]["step"]
    result = child_runner.invoke(
        app,
        ["train", scene, "--out", str(out), "--resume", "--iters", str(step + 2), "--json", "-q"],
    )
    results["resume"] = {"exit": result.exit_code, "output": result.output}
    if result.exit_code == 0:
        results["resume"]["summary"] = json.loads(result.stdout)
        results["resume"]["logged"] = logged_steps(out)
    Path(report).write_text(json.dumps(results))


def test_real_full_and_read_only_filesystems(fork_context, module_scene, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "ro").mkdir()
    report = tmp_path / "report.json"
    child = fork_context.Process(
        target=tmpfs_child, args=(str(module_scene), str(tmp_path), str(report)), daemon=True
    )
    child.start()
    assert finish(child) == 0 and report.is_file()
    results = json.loads(report.read_text())
    if "unavailable" in results:
        pytest.skip(f"no private tmpfs here ({results['unavailable']}); RLIMIT_FSIZE test covers")

    ro = results["read_only"]
    assert ro["exit"] == 1 and ro["left"] == []
    assert_one_line_error(ro["output"], "cannot create the run folder", "Read-only file system")

    full = results["full"]
    assert full["exit"] == 1 and not full["left"]
    assert_one_line_error(full["output"], "only 0.0 MB free")

    nearly = results["nearly_full"]
    assert nearly["exit"] == 1 and not nearly["left"]
    assert_one_line_error(nearly["output"], "MB free but a checkpoint of this model needs")

    # The disk filled up during training: one line, the last good checkpoint, no temp files.
    mid = results["mid_run"]
    assert mid["exit"] == 1
    assert_one_line_error(mid["output"], "cannot write checkpoint (No space left on device)")
    assert mid["step"] >= 2 and mid["temps"] == []
    assert mid["logged"][: mid["step"]] == list(range(1, mid["step"] + 1))

    resumed = results["resume"]
    assert resumed["exit"] == 0, resumed["output"]
    assert resumed["summary"]["start_step"] == mid["step"]
    assert resumed["logged"] == list(range(1, mid["step"] + 3))


# ----------------------------------------------------------------------------- read-only


def test_output_under_a_file_is_a_one_line_error(module_scene, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("precious")
    result = runner.invoke(
        app,
        ["train", str(module_scene), *TINY, "--iters", "4", "--out", str(blocker / "run")],
    )
    assert result.exit_code == 1
    assert_one_line_error(result.output, "cannot create the run folder", "Not a directory")
    assert blocker.read_text() == "precious"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root ignores folder permissions (test_real_full_and_read_only_filesystems and "
    "test_output_under_a_file_is_a_one_line_error cover root)",
)
def test_read_only_folders_are_one_line_errors(module_scene, trained_run, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    out = copy_run(trained_run, tmp_path)
    before = (out / "ckpt.pt").read_bytes()
    locked.chmod(0o555)
    out.chmod(0o555)
    try:
        result = runner.invoke(
            app, ["train", str(module_scene), *TINY, "--iters", "4", "--out", str(locked / "r")]
        )
        assert result.exit_code == 1
        assert_one_line_error(result.output, "Permission denied")
        # Resuming into a read-only run folder is refused before any training.
        result = runner.invoke(
            app, ["train", str(module_scene), "--out", str(out), "--resume", "--iters", "8"]
        )
        assert result.exit_code == 1
        assert_one_line_error(result.output, "cannot write the run folder", "Permission denied")
    finally:
        locked.chmod(0o755)
        out.chmod(0o755)
    assert (out / "ckpt.pt").read_bytes() == before
    assert logged_steps(out) == [1, 2, 3, 4]
