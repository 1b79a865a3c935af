"""`nerf view`'s server side without a browser: browser camera -> image through the same render
as eval, small while moving and full size when still, a still render cancelled between its
chunks, chunks shared evenly, the render thread's torch threads its own, outputs, the keyframe book saved and rendered by render-video, the live source's weight copies,
and the command's messages (no viser, Ctrl-C)."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.data.rays import camera_rays
from nerfcli.errors import NerfError
from nerfcli.evaluation.camera_path import read_path_file
from nerfcli.evaluation.views import Cancelled, picture, render_camera
from nerfcli.render.image import balanced_chunk, render_view
from nerfcli.training.checkpoint import load_checkpoint, restore_model
from nerfcli.viewer.cameras import browser_from_pose, pose_from_browser, view_camera
from nerfcli.viewer.engine import Engine, EngineOptions
from nerfcli.viewer.keyframes import KeyframeBook
from nerfcli.viewer.sizing import Sizer
from nerfcli.viewer.source import LiveSource, ModelSource
from tests.conftest import tiny_nerf_args, write_llff

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
TINY = tiny_nerf_args(16, 2, "[]", 8, batch_rays=64, eval_every=2)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("view")
    scene = write_llff(root / "tiny", n=9)
    out = root / "run"
    result = runner.invoke(app, ["train", str(scene), *TINY, "--iters", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def browser_view(scene, fov=0.8, aspect=1.5, pose=None):
    wxyz, position = browser_from_pose(scene.render_poses[3] if pose is None else pose)
    return pose_from_browser(wxyz, position, fov, aspect)


def test_browser_camera_round_trip(run: Path):
    scene = load_checkpoint(run).scene
    view = browser_view(scene)
    np.testing.assert_allclose(view.matrix, scene.render_poses[3], atol=1e-6)
    camera = view_camera(scene, view, 20)
    assert (camera.height, camera.width) == (20, 30)
    assert math.isclose(2 * math.atan(10 / camera.K[1, 1]), 0.8, rel_tol=1e-6)


def test_view_at_the_capture_fov_renders_the_path_camera(run: Path):
    """A browser view with the capture's size and fov gives the rays render-video uses (the
    NDC frustum is the training cameras')."""
    scene = load_checkpoint(run).scene
    camera = scene.path_camera(scene.render_poses[2])
    fov = 2 * math.atan(0.5 * camera.height / camera.K[1, 1])
    view = browser_view(scene, fov, camera.width / camera.height, scene.render_poses[2])
    ours = camera_rays(view_camera(scene, view, camera.height))
    theirs = camera_rays(camera)
    for a, b in zip((ours.origins, ours.directions), (theirs.origins, theirs.directions)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_still_render_is_cancelled_between_chunks_also_in_ndc(run: Path):
    ckpt = load_checkpoint(run)
    model = restore_model(ckpt)
    assert ckpt.scene.ndc
    camera = view_camera(ckpt.scene, browser_view(ckpt.scene, fov=1.1, aspect=1.2), 17)
    asked = []

    def cancelled() -> bool:  # the camera moves after two chunks
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(Cancelled):
        render_camera(model, camera, 64, "cpu", cancelled)  # 340 rays: 6 chunks
    assert len(asked) == 3  # one thread (one_thread): chunks in turn, none after the third
    whole = render_camera(model, camera, 4096, "cpu")
    chunked = render_camera(model, camera, 64, "cpu", lambda: False)
    torch.testing.assert_close(chunked.rgb, whole.rgb, atol=1e-5, rtol=1e-5)


def test_balanced_chunk_shares_rays_evenly():
    assert balanced_chunk(10000, 8192, 2) == 5000  # not 8192 + 1808
    assert balanced_chunk(160000, 8192, 2) == 8000  # 20 chunks
    for rays in (1, 7, 999, 10000, 123457):
        for chunk in (64, 8192):
            for workers in (1, 2, 3):
                size = balanced_chunk(rays, chunk, workers)
                count = math.ceil(rays / size)  # chunks render_in_chunks cuts
                assert 1 <= size <= chunk
                assert count >= min(workers, rays)  # every worker has a chunk
                busiest = min(rays, math.ceil(count / workers) * size)  # rays of one worker
                assert size <= math.ceil(rays / workers)  # no chunk over a fair share
                assert busiest <= rays / workers + size  # at most one chunk over it


def test_render_thread_sets_its_own_torch_threads_only():
    """torch.set_num_threads in one thread becomes the count of every thread that has not yet
    run a parallel operation (the main thread of a training run that starts after the
    viewer); limit_this_thread keeps it to the render thread."""
    import subprocess
    import sys

    code = (
        "import threading, torch\n"
        "from nerfcli.viewer.engine import limit_this_thread\n"
        "seen, new = [], []\n"
        "s = threading.Thread(target=torch.set_num_threads, args=(3,)); s.start(); s.join()\n"
        "def render():\n"
        "    {set}\n"
        "    seen.append(torch.get_num_threads())\n"
        "t = threading.Thread(target=render); t.start(); t.join()\n"
        "u = threading.Thread(target=lambda: new.append(torch.get_num_threads()))\n"
        "u.start(); u.join()\n"
        "print(seen[0], torch.get_num_threads(), new[0])\n"
    )
    counts = {}
    for name, call in (("limited", "limit_this_thread(1)"), ("plain", "torch.set_num_threads(1)")):
        done = subprocess.run(
            [sys.executable, "-c", code.format(set=call)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        counts[name] = done.stdout.split()
    assert counts["limited"] == ["1", "3", "3"]  # render thread 1; main and new ones 3
    assert counts["plain"] == ["1", "1", "1"]  # what it guards against


def test_render_camera_is_render_view(run: Path):
    ckpt = load_checkpoint(run)
    model = restore_model(ckpt)
    camera = ckpt.scene.path_camera(ckpt.scene.render_poses[0])
    ours = render_camera(model, camera, 4096, "cpu", lambda: False)

    def render_fn(rays, near, far):
        return model.render_rays(rays, near, far, train=False)

    theirs = render_view(render_fn, camera, 4096, "cpu")
    torch.testing.assert_close(ours.rgb, theirs.rgb)
    for output in ("rgb", "depth", "accumulation"):
        image = picture(ours, output, True)
        assert image.shape == (*ours.rgb.shape[:2], 3) and image.dtype == np.uint8


def test_engine_small_while_moving_then_full_size(run: Path):
    ckpt = load_checkpoint(run)
    source = ModelSource.from_checkpoint(ckpt, "cpu")
    frames: list = []
    got = threading.Event()

    def show(client_id, image, info):
        frames.append((client_id, image, info))
        got.set()

    sizer = Sizer(full_height=24, moving_fps=8.0, min_height=4)
    sizer.rate = 24 * 36 * 8.0 / 4  # measured: a quarter of the full picture fits 1/8 s
    options = EngineOptions(still_after=0.3, warm_up=False)  # keep the rate set above
    engine = Engine(source, show, sizer, options).start()
    try:
        scene = ckpt.scene
        for k in range(4):  # moving
            engine.set_camera(7, browser_view(scene, aspect=1.5, pose=scene.render_poses[k]))
            time.sleep(0.05)
        deadline = time.monotonic() + 60

        def full_size_after_stop() -> bool:  # a still picture, or a moving one already full
            return bool(frames) and (
                any(info["still"] for _, _, info in frames) or frames[-1][2]["height"] == 24
            )

        while not full_size_after_stop() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # past still_after: a still picture, if one is owed, is drawn now
    finally:
        engine.stop()
    assert engine.errors == []
    moving = [info for _, _, info in frames if not info["still"]]
    assert moving and moving[0]["height"] < 24  # small while moving
    # full size once still: a still picture, unless the last moving one already was full size
    # (the sizer measures the speed: on a fast render the moving size reaches the full one)
    image, info = frames[-1][1], frames[-1][2]
    assert info["height"] == 24 and image.shape == (24, 36, 3)
    assert sizer.rate is not None and sizer.rate > 0


def test_sizer_keeps_the_moving_frame_rate():
    sizer = Sizer(full_height=400, moving_fps=8.0)
    assert sizer.moving_height(1.0) == 100  # nothing measured: a quarter
    sizer.record(200 * 200, 1.0)  # 40,000 pixels a second
    assert sizer.moving_height(1.0) == int(math.sqrt(40000 / 8))
    sizer.record(400 * 400, 0.1)  # 1.6 M a second, averaged with the first: 820,000
    assert sizer.moving_height(1.0) == int(math.sqrt(820000 / 8))
    for _ in range(20):
        sizer.record(400 * 400, 0.05)
    assert sizer.moving_height(1.0) == 400  # fast enough for the full size


def test_moving_size_settles_where_a_turn_takes_one_frame():
    """A turn costing a fixed 50 ms plus 1 us a pixel: the moving size converges to where a
    turn takes 1 / moving_fps (75 ms of pixels at 8 a second: 75,000 pixels), not to the
    render speed's 125,000."""
    sizer = Sizer(full_height=1000, moving_fps=8.0)
    sizer.record(400 * 400, 0.16)  # the render speed: 1 M pixels a second
    for _ in range(40):
        height = sizer.moving_height(1.0)
        sizer.record_moving(height * height, 0.05 + height * height * 1e-6)
    height = sizer.moving_height(1.0)
    assert abs(0.05 + height * height * 1e-6 - 1 / 8) < 0.005
    assert abs(height - math.sqrt(75000)) <= 3


def test_keyframe_book_saves_a_path_render_video_renders(run: Path, tmp_path: Path):
    ckpt = load_checkpoint(run)
    book = KeyframeBook(ckpt.scene, ckpt.path)
    for k in (0, 3, 6):
        book.add(ckpt.scene.render_poses[k], 40.0 + k, 1.5)
    book.move(1, ckpt.scene.render_poses[4])
    book.set_time(2, 1.5)
    book.set_fov(0, 35.0)
    book.add(ckpt.scene.render_poses[8], 50.0, 1.5)
    book.delete(3)
    with pytest.raises(NerfError, match="no keyframe 5"):
        book.delete(5)
    target = tmp_path / "camera_path.json"
    frames = book.save(target, height=12, fps=4)
    assert frames == 7  # 1.5 s at 4 fps, both ends
    loaded = read_path_file(target, ckpt.scene)
    np.testing.assert_allclose(loaded.poses[4], ckpt.scene.render_poses[4], atol=1e-5)  # t = 1 s
    np.testing.assert_allclose(loaded.poses[-1], ckpt.scene.render_poses[6], atol=1e-5)
    assert math.isclose(loaded.fov[0], 35.0) and (loaded.height, loaded.width) == (12, 18)
    video = tmp_path / "path.gif"
    result = runner.invoke(app, ["render-video", str(run), "--path", str(target), "-o", str(video)])
    assert result.exit_code == 0, result.output
    import imageio.v3 as iio

    assert iio.imread(video).shape == (7, 12, 18, 3)


def test_live_source_copies_weights_between_steps(run: Path):
    ckpt = load_checkpoint(run)
    trained = restore_model(ckpt)
    fresh = restore_model(ckpt)
    for parameter in fresh.parameters():
        torch.nn.init.zeros_(parameter)
    source = LiveSource(fresh, ckpt.scene, ckpt.config, refresh_seconds=0.0)
    assert not source.wants_weights()  # no page open
    source.demand.set()
    assert source.wants_weights()
    source.offer(trained, step=4)
    with torch.no_grad():  # the trainer moves on; the copy must not
        for parameter in trained.parameters():
            parameter.add_(1.0)
    model = source.model_for_render()
    reference = restore_model(ckpt)
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs)
    assert source.status.step == 4
    source.copy_seconds = 0.01  # a copy taking 10 ms: the next one 0.5 s later at 2%
    source._last_copy = time.monotonic()
    assert not source.wants_weights()
    source._last_copy -= 0.51
    assert source.wants_weights()


def test_view_without_viser_says_how_to_get_it(run: Path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_viser(name, *args, **kwargs):
        if name == "viser" or name.startswith("viser."):
            raise ImportError("No module named 'viser'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_viser)
    result = runner.invoke(app, ["view", str(run)])
    assert result.exit_code == 1
    assert "pip install 'nerfcli[viewer]'" in result.output


def test_train_view_refuses_nproc(tmp_path: Path):
    scene = write_llff(tmp_path / "tiny", n=9)
    result = runner.invoke(app, ["train", str(scene), "--view", "--nproc", "2"])
    assert result.exit_code == 1
    assert "--view watches one process" in result.output


def test_engine_depth_and_accumulation_pictures(run: Path):
    ckpt = load_checkpoint(run)
    source = ModelSource.from_checkpoint(ckpt, "cpu")
    frames: list = []
    engine = Engine(source, lambda c, image, info: frames.append((image, info)), Sizer(24))
    engine.options.still_after = 0.0
    engine.start()
    try:
        view = browser_view(ckpt.scene, aspect=1.5)
        for output in ("accumulation", "depth"):
            engine.set_output(3, output)
            engine.set_camera(3, view)
            deadline = time.monotonic() + 60
            while len(frames) < (1 if output == "accumulation" else 2):
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        engine.stop()
    accumulation, depth = frames[0][0], frames[1][0]
    assert (accumulation[..., 0] == accumulation[..., 1]).all()  # grey
    assert depth.shape == accumulation.shape == (24, 36, 3)
    assert not np.array_equal(depth, accumulation)
