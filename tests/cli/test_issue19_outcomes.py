"""Issue 19, tracebacks and wrong outcomes: each test failed on the main of the day and names
the item it covers. Bad input is one line naming the flag or the file (exit 2 for usage, 1
otherwise), never a traceback, and nothing half-made is left on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nerfcli.cli.app import app
from tests.conftest import tiny_nerf_args, write_llff

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
TINY = tiny_nerf_args(batch_rays=64, eval_every=0, ckpt_every=5, log_every=5)
ROOT = Path(__file__).resolve().parents[2]


def one_error_line(result, *needles: str) -> str:
    """The run failed cleanly: no traceback, one line on stderr holding every needle."""
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    text = " ".join(lines)
    for needle in needles:
        assert needle in text, text
    return text


def train(scene: Path, out: Path, *extra: str, iters: int = 2):
    args = ["train", str(scene), *TINY, "--iters", str(iters), "--out", str(out), *extra]
    return runner.invoke(app, args)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(scene, run folder) of a two-step classic NeRF on a 32 x 24 capture."""
    base = tmp_path_factory.mktemp("trained")
    scene = write_llff(base / "scene", n=9)
    before = __import__("torch").get_num_threads()
    __import__("torch").set_num_threads(1)
    try:
        result = train(scene, base / "run", "--quiet")
    finally:
        __import__("torch").set_num_threads(before)
    assert result.exit_code == 0, result.output
    return scene, base / "run"


# --- eval --out (item: an existing file: traceback; an existing folder: metrics overwritten)


def test_eval_out_existing_file_is_refused(trained, tmp_path):
    _, run = trained
    target = tmp_path / "taken.txt"
    target.write_text("mine")
    result = runner.invoke(app, ["eval", str(run), "--out", str(target)])
    assert result.exit_code == 2
    one_error_line(result, "--out", "a file, not a folder")
    assert target.read_text() == "mine"


def test_eval_out_existing_folder_is_refused_and_kept(trained, tmp_path):
    _, run = trained
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "metrics.json").write_text('{"mine": 1}')
    result = runner.invoke(app, ["eval", str(run), "--out", str(folder)])
    assert result.exit_code == 1
    one_error_line(result, str(folder), "not empty", "choose another --out")
    assert json.loads((folder / "metrics.json").read_text()) == {"mine": 1}


def test_eval_twice_writes_a_fresh_numbered_folder(trained):
    _, run = trained
    first = runner.invoke(app, ["eval", str(run), "--json", "--quiet"])
    second = runner.invoke(app, ["eval", str(run), "--json", "--quiet"])
    assert first.exit_code == 0 and second.exit_code == 0, second.output
    one, two = json.loads(first.stdout)["out_dir"], json.loads(second.stdout)["out_dir"]
    assert one != two and Path(two).name == Path(one).name + "_2"
    assert (Path(one) / "metrics.json").is_file() and (Path(two) / "metrics.json").is_file()


# --- --downscale larger than the image (traceback: a zero-pixel camera; an empty folder left)


@pytest.mark.parametrize("command", ["eval", "render-video"])
def test_downscale_larger_than_the_image(trained, tmp_path, command):
    _, run = trained
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    result = runner.invoke(app, [command, str(run), "--downscale", "64"])  # default outputs
    assert result.exit_code == 2
    one_error_line(result, "--downscale 64", "32 x 24 (W x H)")
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_render_video_json_width_is_the_files(trained, tmp_path):
    """32 x 24 at --downscale 3 is 10 x 8; an .mp4 keeps even sizes, so 10 x 8 (was 10 and 8
    by luck); at --downscale 5: 6 x 4 from 6 x 4. The odd case: --downscale 7, 4 x 3 -> 4 x 2."""
    import imageio.v3 as iio

    _, run = trained
    out = tmp_path / "odd.mp4"
    args = ["render-video", str(run), "--frames", "2", "--downscale", "7", "--out", str(out)]
    result = runner.invoke(app, [*args, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    frame = iio.imread(out, index=0)
    assert (doc["height"], doc["width"]) == frame.shape[:2] == (2, 4)


# --- paths with [ ] printed as rich markup


def test_bracket_paths_print_as_they_are(tmp_path):
    scene = write_llff(tmp_path / "scene[x]", n=9)
    out = tmp_path / "runs[bold]"
    result = train(scene, out)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stderr.split())
    assert f"{scene}" in text and f"{out / 'ckpt.pt'}" in text
    evaluated = runner.invoke(app, ["eval", str(out)])
    assert evaluated.exit_code == 0, evaluated.output
    assert str(out) in " ".join(evaluated.stderr.split())


# --- --set values no model can run with


@pytest.mark.parametrize(
    "setting, named",
    [
        ("model.tensorf.decoder_width=-3", "model.tensorf.decoder_width"),
        ("model.tensorf.app_dim=0", "model.tensorf.app_dim"),
        ("model.tensorf.lr_grid=-0.02", "model.tensorf.lr_grid"),
        ("model.tensorf.lr_network=.inf", "model.tensorf.lr_network"),
        ("train.lr=.inf", "train.lr"),
        ("train.lr=.nan", "train.lr"),
        ("model.tensorf.distance_scale=-25", "model.tensorf.distance_scale"),
        ("model.tensorf.grid_init=[128,-1,128]", "model.tensorf.grid_init"),
        ("model.tensorf.density_components=[16,0,4]", "model.tensorf.density_components"),
        ("model.tensorf.step_ratio=0", "model.tensorf.step_ratio"),
        ("model.nerf.raw_noise_std=-1", "model.nerf.raw_noise_std"),
        ("render.raw_noise_std=-1", "model.nerf.raw_noise_std"),  # its spelling before the move
    ],
)
def test_set_values_no_model_can_run_with(tmp_path, setting, named):
    scene = write_llff(tmp_path / "scene")
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", str(scene), "--iters", "2", "--set", setting, "--out", str(out)]
    )
    assert result.exit_code == 1
    one_error_line(result, named)
    assert not out.exists()


def test_unallocatable_batch_leaves_no_folder(tmp_path):
    scene = write_llff(tmp_path / "scene")
    out = tmp_path / "run"
    result = train(scene, out, "--set", "train.batch_rays=100000000000")
    assert result.exit_code == 1
    one_error_line(result, "out of memory", "train.batch_rays=100000000000", "was removed")
    assert not out.exists()
    again = train(scene, out, "--quiet")  # the folder blocks nothing
    assert again.exit_code == 0, again.output


# --- option values: exit 2 naming the flag


@pytest.mark.parametrize(
    "args, flag",
    [
        (["train", "{scene}", "--iters", "0"], "--iters"),
        (["train", "{scene}", "--max-minutes", "0"], "--max-minutes"),
        (["train", "{scene}", "--max-minutes", "-5"], "--max-minutes"),
        (["train", "{scene}", "--format", "bogus"], "--format"),
        (["train", "{scene}", "--scene-type", "sideways"], "--scene-type"),
        (["train", "{scene}", "--device", "gpu"], "--device"),
        (["train", "{scene}", "--model", "bogus"], "--model"),
        (["rays", "{scene}", "--view", "0", "--format", "nope"], "--format"),
        (["rays", "{scene}", "--view", "0", "--scene-type", "x"], "--scene-type"),
        (["inspect-poses", "{scene}", "--format", "nope"], "--format"),
        (["eval", "{scene}", "--device", "tpu"], "--device"),
        (["render-video", "{scene}", "--device", "tpu"], "--device"),
        (["demo", "--model", "bogus", "--out", "{tmp}/demo"], "--model"),
        (["demo", "--iters", "0", "--out", "{tmp}/demo"], "--iters"),
        (["sfm", "{tmp}/photos", "--fps", "0"], "--fps"),
        (["sfm", "{tmp}/photos", "--fps", "-1"], "--fps"),
    ],
)
def test_bad_option_values_exit_2_naming_the_flag(tmp_path, args, flag):
    scene = write_llff(tmp_path / "scene")
    args = [a.format(scene=scene, tmp=tmp_path) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert flag in result.output and "Traceback" not in result.output
    assert "data." not in result.output  # no internal key
    assert not (tmp_path / "demo").exists()


def test_factor_shrinking_to_nothing_is_a_usage_error(tmp_path):
    scene = write_llff(tmp_path / "scene")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(scene), "--factor", "64", "--out", str(out)])
    assert result.exit_code == 2
    one_error_line(result, "--factor 64")
    assert not out.exists()


# --- --resume given another capture; train into an existing --out


def test_resume_on_another_capture_is_refused(trained, tmp_path):
    scene, run = trained
    other = write_llff(tmp_path / "other", n=9, seed=5)
    before = (run / "ckpt.pt").stat().st_mtime_ns
    result = runner.invoke(app, ["train", str(other), "--out", str(run), "--resume"])
    assert result.exit_code == 1
    one_error_line(result, "--resume", str(scene), str(other))
    assert (run / "ckpt.pt").stat().st_mtime_ns == before


def test_train_into_an_existing_out_is_refused_before_loading(trained, tmp_path):
    _, run = trained
    missing = tmp_path / "not-a-scene"  # refused for --out before the scene is even looked at
    result = runner.invoke(app, ["train", str(missing), "--out", str(run)])
    assert result.exit_code == 1
    one_error_line(result, str(run), "already exists")


# --- camera path files


def test_all_zero_camera_path_is_refused(trained, tmp_path):
    _, run = trained
    path = tmp_path / "zeros.npy"
    np.save(path, np.zeros((5, 3, 4), np.float32))
    out = tmp_path / "v.mp4"
    result = runner.invoke(app, ["render-video", str(run), "--path", str(path), "--out", str(out)])
    assert result.exit_code == 1
    one_error_line(result, str(path), "5 of 5", "no rotation")
    assert not out.exists()


def test_text_file_as_camera_path(trained, tmp_path):
    _, run = trained
    path = tmp_path / "path.txt"
    path.write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n")
    result = runner.invoke(app, ["render-video", str(run), "--path", str(path)])
    assert result.exit_code == 1
    text = one_error_line(result, str(path), "not a .npy file")
    assert "pickle" not in text


def test_frames_with_a_path_file_is_warned(trained, tmp_path):
    _, run = trained
    poses = tmp_path / "poses.npy"
    made = runner.invoke(
        app,
        ["render-video", str(run), "--frames", "2", "--downscale", "4", "--poses-out", str(poses)]
        + ["--out", str(tmp_path / "a.mp4"), "--quiet"],
    )
    assert made.exit_code == 0, made.output
    result = runner.invoke(
        app,
        ["render-video", str(run), "--path", str(poses), "--frames", "50", "--downscale", "4"]
        + ["--out", str(tmp_path / "b.mp4"), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["frames"] == 2
    assert "--frames 50 is ignored" in " ".join(result.stderr.split())


# --- eval of a file that is not a checkpoint


@pytest.mark.parametrize(
    "content, says",
    [
        (b"hello, not a checkpoint\n", "not a torch file"),
        (b"", "empty file"),
    ],
)
def test_eval_of_a_file_that_is_not_a_checkpoint(tmp_path, content, says):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    result = runner.invoke(app, ["eval", str(path)])
    assert result.exit_code == 1
    text = one_error_line(result, str(path), says)
    assert "weights_only" not in text and "truncated" not in text


def test_eval_of_a_pickled_object_names_it(tmp_path):
    import torch

    path = tmp_path / "model.pt"
    torch.save({"format_version": 2, "thing": Path("x")}, path)  # not a plain tensor dict
    result = runner.invoke(app, ["eval", str(path)])
    assert result.exit_code == 1
    text = one_error_line(result, str(path), "not a readable nerfcli checkpoint", "Python objects")
    assert "weights_only" not in text and "WeightsUnpickler" not in text


# --- Ctrl-C in the first moments (the imports ran before the error boundary)


def test_keyboard_interrupt_during_the_imports_exits_130_quietly():
    """A KeyboardInterrupt raised while the app's modules are imported (where a Ctrl-C in
    the first ~0.2 s lands) is caught by the console script: exit 130, no traceback."""
    code = (
        "import sys\n"
        "class Stop:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'typer':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Stop())\n"
        "sys.argv = ['nerf', '--help']\n"
        "from nerfcli.cli.entry import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip() == "interrupted"


# --- words tied to a trained run


def test_eval_testskip_on_llff_is_warned(trained):
    _, run = trained
    result = runner.invoke(app, ["eval", str(run), "--testskip", "4", "--json"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stderr.split())
    assert "--testskip is for Blender captures" in text


def test_train_summary_says_where_test_psnr_was_scored(tmp_path):
    scene = write_llff(tmp_path / "scene", n=9)
    args = ["train", str(scene), *tiny_nerf_args(batch_rays=64, eval_every=2, log_every=5)]
    result = runner.invoke(
        app, [*args, "--iters", "3", "--out", str(tmp_path / "run"), "--json", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["test_psnr"] is not None and doc["test_psnr_downscale"] == 2
    loud = runner.invoke(app, [*args, "--iters", "3", "--out", str(tmp_path / "run2")])
    assert loud.exit_code == 0, loud.output
    text = " ".join(loud.stderr.split())
    assert "held-out PSNR" in text and "at 1/2 resolution" in text
    assert "32 x 24 (W x H)" in text


def test_blender_view_numbers_agree_between_train_and_eval(tmp_path):
    """Training thins val/test by testskip 8 (views 3.. in its own order), eval scores every
    test view (numbered 3 + 4 + k): train prints the test views in eval's numbering."""
    from tests.unit.test_blender import write_blender

    scene = write_blender(tmp_path / "lego", counts=(3, 4, 17), size=(8, 8))
    out = tmp_path / "run"
    args = ["train", str(scene), *tiny_nerf_args(batch_rays=32, eval_every=0), "--iters", "1"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stderr.split())
    assert "test views [7, 15, 23] (3)" in text, text
    report = runner.invoke(app, ["eval", str(out), "--json", "--quiet"])
    assert report.exit_code == 0, report.output
    numbers = [v["view"] for v in json.loads(report.stdout)["views"]]
    assert numbers == list(range(7, 24)) and {7, 15, 23} <= set(numbers)


def test_progress_bar_ends_on_the_final_values(tmp_path, monkeypatch):
    """The final held-out eval runs after the last step event: the bar must still end on it
    (it showed the previous eval's value)."""
    import nerfcli.cli.train as train_cli

    made = []
    real = train_cli.make_progress

    def keep(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(train_cli, "make_progress", keep)
    scene = write_llff(tmp_path / "scene", n=9)
    args = ["train", str(scene), *tiny_nerf_args(batch_rays=64, eval_every=2, log_every=1)]
    result = runner.invoke(app, [*args, "--iters", "3", "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    task = made[-1].tasks[0]
    assert task.fields["test"] == f"{doc['test_psnr']:.2f}"
    assert task.fields["loss"] == pytest.approx(doc["final_loss"])
    assert task.completed == 3
