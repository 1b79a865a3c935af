"""`nerf view` in a real headless Chromium (Debian's `chromium` package, driven through the
DevTools protocol; skipped where it is absent): the page of a tiny checkpoint shows the render,
not blank; it changes when the camera is set from the server side; three keyframes added with
the page's buttons are saved as a camera path that `render-video --path` renders. And the
command itself: prints the URL, binds 127.0.0.1, Ctrl-C exits 130 without a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.evaluation.camera_path import read_path_file
from nerfcli.training.checkpoint import load_checkpoint
from tests.cdp import Browser, chromium_path
from tests.conftest import tiny_nerf_args, write_llff

pytest.importorskip("viser", reason="the viewer extra (viser) is not installed: make env")
runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
TINY = tiny_nerf_args(16, 2, "[]", 8, batch_rays=64, eval_every=2)
SHOTS = Path(os.environ.get("NERF_VIEW_SHOTS", "")) if os.environ.get("NERF_VIEW_SHOTS") else None


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    scene = write_llff(root / "tiny", n=9, height=48, width=64, focal=60.0)
    out = root / "run"
    result = runner.invoke(app, ["train", str(scene), *TINY, "--iters", "30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


class Frames:
    """Pictures the viewer sent, with a wait for the next one."""

    def __init__(self):
        self.items: list[tuple[int, np.ndarray, dict]] = []
        self.arrived = threading.Condition()

    def __call__(self, client_id, image, info):
        with self.arrived:
            self.items.append((client_id, image, info))
            self.arrived.notify_all()

    def wait(self, count: int, timeout: float = 90.0, still: bool = False):
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                done = [f for f in self.items if f[2]["still"]] if still else self.items
                if len(done) >= count:
                    return done[count - 1]
                left = deadline - time.monotonic()
                assert left > 0, f"{len(done)} of {count} pictures after {timeout} s"
                self.arrived.wait(left)


def click(browser: Browser, text: str) -> None:
    found = browser.evaluate(
        "(() => { const b = [...document.querySelectorAll('button')]"
        f".find(b => b.textContent.trim() === {text!r}); if (!b) return false; b.click(); "
        "return true; })()"
    )
    assert found, f"no button {text!r} on the page"


def wait_until(condition, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def render_region(shot: np.ndarray) -> np.ndarray:
    """The part of a screenshot left of the GUI panel, below the notification."""
    height, width = shot.shape[:2]
    return shot[height // 3 :, : width // 2, :3].astype(np.float32)


@pytest.mark.slow
@pytest.mark.skipif(
    chromium_path() is None, reason="chromium is not installed (apt-get install chromium)"
)
def test_page_shows_the_render_follows_the_server_camera_and_saves_a_path(
    run: Path, tmp_path: Path
):
    from nerfcli.viewer.server import Viewer
    from nerfcli.viewer.source import ModelSource

    ckpt = load_checkpoint(run)
    scene = ckpt.scene
    viewer = Viewer(ModelSource.from_checkpoint(ckpt, "cpu"), "127.0.0.1", 7420)
    frames = Frames()
    viewer.frame_hooks.append(frames)
    shots = SHOTS or tmp_path
    browser = Browser(chromium_path())
    try:
        browser.open(viewer.url)
        client_id, first, info = frames.wait(1, still=True)
        assert first.std() > 5, "the render is blank"
        time.sleep(1.5)  # the page draws the picture
        shot = iio.imread(browser.screenshot(shots / "view_first.png"))
        assert render_region(shot).std() > 5, "the page shows no picture"

        viewer.set_camera(client_id, scene.render_poses[30])  # a quarter of the spiral
        _, second, _ = frames.wait(2, still=True)
        assert second.shape == first.shape
        assert np.abs(second.astype(float) - first.astype(float)).mean() > 2, "same picture"
        time.sleep(1.5)
        moved = iio.imread(browser.screenshot(shots / "view_moved.png"))
        assert np.abs(render_region(moved) - render_region(shot)).mean() > 2

        target = tmp_path / "camera_path.json"
        browser.evaluate(
            "(() => { const i = [...document.querySelectorAll('input')].find(i => "
            "i.value.endsWith('camera_path.json')); const set = Object.getOwnPropertyDescriptor("
            f"HTMLInputElement.prototype, 'value').set; set.call(i, {str(target)!r}); "
            "i.dispatchEvent(new Event('input', {bubbles: true})); })()"
        )
        wait_until(lambda: viewer.keyframe_panel.fields.file.value == str(target), what="file name")
        for k, pose in enumerate(scene.render_poses[[0, 10, 20]]):
            viewer.set_camera(client_id, pose)
            frames.wait(3 + k, still=True)  # the browser's camera is there
            click(browser, "add keyframe (this view)")
            wait_until(lambda k=k: len(viewer.book.keyframes) == k + 1, what="a keyframe")
        click(browser, "save camera path")
        wait_until(target.is_file, what="the saved path")
        browser.screenshot(shots / "view_keyframes.png")
    finally:
        browser.close()
        viewer.close()
    path = read_path_file(target, scene)
    np.testing.assert_allclose(path.poses[0], scene.render_poses[0], atol=2e-3)
    np.testing.assert_allclose(path.poses[-1], scene.render_poses[20], atol=2e-3)
    video = tmp_path / "path.gif"
    result = runner.invoke(
        app, ["render-video", str(run), "--path", str(target), "-o", str(video), "--downscale", "2"]
    )
    assert result.exit_code == 0, result.output
    assert iio.imread(video).shape[0] == len(path.poses) == 61  # 2 s at 30 fps


@pytest.mark.slow
def test_command_prints_the_url_binds_localhost_and_stops_on_ctrl_c(run: Path):
    process = subprocess.Popen(
        [sys.executable, "-m", "nerfcli", "view", str(run), "--port", "7440"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:74"), url
        import urllib.request

        with urllib.request.urlopen(url, timeout=30) as reply:
            assert reply.status == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err and out == ""


@pytest.mark.slow
@pytest.mark.skipif(
    chromium_path() is None, reason="chromium is not installed (apt-get install chromium)"
)
def test_train_view_shows_the_latest_weights(tmp_path: Path, monkeypatch):
    """`nerf train --view`: the page shows pictures of the weights in training, and the run
    ends as without --view."""
    import nerfcli.cli.train as train_command

    scene = write_llff(tmp_path / "tiny", n=9, height=48, width=64, focal=60.0)
    started = []
    frames = Frames()
    original = train_command._start_viewer

    def start_and_open(*args):
        viewer = original(*args)
        viewer.viewer.frame_hooks.append(frames)
        browser = Browser(chromium_path())
        browser.open(viewer.url)
        started.append((viewer, browser))
        wait_until(lambda: viewer.viewer.server.get_clients(), 120, "the page")  # open first
        return viewer

    monkeypatch.setattr(train_command, "_start_viewer", start_and_open)
    out = tmp_path / "run"
    args = ["train", str(scene), *TINY, "--iters", "100", "--out", str(out), "--view"]
    try:
        result = runner.invoke(app, [*args, "--view-port", "7450", "--json", "-q"])
    finally:
        for _, browser in started:
            browser.close()
    assert result.exit_code == 0, result.output
    assert started and frames.items  # pictures of the weights in training
    viewer = started[0][0]
    assert viewer.source.status.step > 0 and viewer.viewer.engine.errors == []
