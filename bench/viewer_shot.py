"""A camera path made in the page, and what `render-video --path` makes of it: the page's
painted screenshot at keyframe 2 beside the video's frame at the same time.

    .venv/bin/python -m bench.viewer_shot --ckpt runs/cup/ckpt.pt --out runs/cup_shot \\
        --picture bench/pictures/viewer_cup_keyframe2.png

In a headless Chromium (Debian's, driven through tests/cdp.py): the page of `nerf view`
opens; three keyframes are added with the page's "add keyframe (this view)" button, the
camera put at three views of the default path from the server side between them; keyframe 2
(index 1) is set in the panel and the page's "go to keyframe" button clicked, with the
cameras, box and path hidden ("show cameras, box and path" off); once the server has sent
the full-size picture, screenshots are taken until the canvas is painted (not blank, the
same twice in a row); "save camera path" writes camera_path.json, and `nerf render-video
--path` renders it (mp4). The screenshot's render area (left of the panel, above the axes
gizmo), area-resized to the render's pixels, is compared with the video's frame at
keyframe 2's time, and with the picture the server sent (before JPEG and the browser)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from bench.common import write_json
from bench.viewer import Recorder
from nerfcli.data.images import resize_area
from nerfcli.metrics import psnr_from_mse
from nerfcli.training.checkpoint import load_checkpoint
from nerfcli.training.device import select_device
from nerfcli.viewer.server import Viewer
from nerfcli.viewer.source import ModelSource
from tests.cdp import Browser, chromium_path

CLOSE_NOTICES = """(() => { for (const b of document.querySelectorAll('button')) {
  const box = b.closest('[class*=Notification]');
  if (box && !b.textContent.trim()) b.click(); } })()"""
SET_INPUT = """(() => {{ const i = [...document.querySelectorAll('input')].find(i => i.value === {old});
  const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
  set.call(i, {new}); i.dispatchEvent(new Event('input', {{bubbles: true}})); }})()"""
BUTTON_LEFT = """(() => [...document.querySelectorAll('button')].find(b =>
  b.textContent.trim() === 'add keyframe (this view)').getBoundingClientRect().left *
  window.devicePixelRatio)()"""


def click(browser: Browser, text: str) -> None:
    found = browser.evaluate(
        "(() => { const b = [...document.querySelectorAll('button')]"
        f".find(b => b.textContent.trim() === {text!r}); if (!b) return false; b.click(); "
        "return true; })()"
    )
    if not found:
        raise SystemExit(f"no button {text!r} on the page")


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def make_path_in_page(viewer: Viewer, browser: Browser, recorder: Recorder, target: Path, poses):
    """Three keyframes added with the page's button, the file named in its field; returns the
    client id."""
    first = recorder.wait_for(lambda f: f[1]["still"], 600)
    if first is None:
        raise SystemExit("no picture from the viewer")
    client_id = next(iter(viewer.server.get_clients()))
    browser.evaluate(CLOSE_NOTICES)
    old = json.dumps(viewer.keyframe_panel.fields.file.value)
    browser.evaluate(SET_INPUT.format(old=old, new=json.dumps(str(target))))
    wait_until(lambda: viewer.keyframe_panel.fields.file.value == str(target), 60, "file name")
    for k, pose in enumerate(poses):
        asked = time.perf_counter()
        viewer.set_camera(client_id, pose)
        recorder.wait_for(lambda f, asked=asked: f[0] > asked and f[1]["still"], 600)
        click(browser, "add keyframe (this view)")
        wait_until(lambda k=k: len(viewer.book.keyframes) == k + 1, 60, "a keyframe")
    return client_id


def shoot_keyframe(viewer, browser, recorder, index: int, shot_path: Path):
    """The page at keyframe `index` ("go to keyframe"), overlays hidden: (the painted
    screenshot, the render area's columns, the picture the server sent)."""
    viewer.show_overlays(False)
    viewer.keyframe_panel.fields.index.value = index
    wait_until(lambda: viewer.keyframe_panel.index == index, 60, "the keyframe index")
    asked = time.perf_counter()
    click(browser, "go to keyframe")
    sent = recorder.wait_for(lambda f: f[0] > asked and f[1]["still"], 600)
    if sent is None:
        raise SystemExit("no full-size picture at the keyframe")
    recorder.wait_quiet(1.0, 600)
    right = int(browser.evaluate(BUTTON_LEFT)) - 24  # the render area ends left of the panel
    shot = browser.painted(lambda s: s[: s.shape[0] - 120, :right], timeout=120)
    iio.imwrite(shot_path, shot)
    return shot, right, recorder.images[-1]


def render_video(ckpt: Path, path_file: Path, video: Path) -> np.ndarray:
    command = [sys.executable, "-m", "nerfcli", "render-video", str(ckpt), "--path"]
    command += [str(path_file), "-o", str(video), "--force", "-q"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"render-video failed: {done.stderr[-1000:]}")
    return np.asarray(iio.imread(video))  # [F, H, W, 3]


def compare(shot, right: int, frame: np.ndarray, sent: np.ndarray) -> tuple[dict, np.ndarray]:
    """The screenshot area-resized to the sent picture's pixels (the canvas covers the
    window), compared over the render area with the video's frame (the mp4 keeps even sizes:
    the top-left of the picture) and the sent picture; the side-by-side of that area, x4."""
    size = [int(v) for v in sent.shape[:2]]
    page = resize_area(shot, *size)  # [H, W, 3]
    rows = min(frame.shape[0], int(sent.shape[0] * (shot.shape[0] - 120) / shot.shape[0]))
    columns = min(frame.shape[1], int(sent.shape[1] * right / shot.shape[1]))
    page, frame, sent = (image[:rows, :columns, :3] for image in (page, frame, sent))

    def scores(a, b) -> dict:
        difference = np.abs(a.astype(np.float64) - b.astype(np.float64))
        mse = float(np.mean((difference / 255) ** 2))
        return {
            "mean_abs_255": round(float(difference.mean()), 2),
            "p99_abs_255": round(float(np.percentile(difference, 99)), 1),
            "max_abs_255": int(difference.max()),
            "psnr_db": round(psnr_from_mse(mse), 2),
        }

    doc = {
        "picture_size": size,
        "compared_area": [rows, columns],
        "screenshot_vs_video_frame": scores(page, frame),
        "sent_picture_vs_video_frame": scores(sent, frame),
        "screenshot_vs_sent_picture": scores(page, sent),
    }
    difference = np.abs(page.astype(np.int16) - frame.astype(np.int16))
    amplified = np.clip(difference * 8, 0, 255).astype(np.uint8)  # [h, w, 3] x8
    gap = np.full((rows, 2, 3), 255, np.uint8)
    side = np.concatenate([page, gap, frame, gap, amplified], 1)
    return doc, np.repeat(np.repeat(side, 4, 0), 4, 1)  # x4, nearest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for the run's files")
    parser.add_argument("--picture", type=Path, required=True, help="the side-by-side PNG")
    parser.add_argument("--page-picture", type=Path, default=None, help="the screenshot's copy")
    parser.add_argument("--port", type=int, default=7480)
    parser.add_argument("--window", default="1280,800")
    args = parser.parse_args()
    if chromium_path() is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(args.ckpt)
    scene = ckpt.scene
    viewer = Viewer(ModelSource.from_checkpoint(ckpt, select_device("auto")), port=args.port)
    viewer.engine.warm.wait(300)
    recorder = Recorder(keep_images=True)
    viewer.frame_hooks.append(recorder)
    count = len(scene.render_poses)
    poses = scene.render_poses[[0, count // 8, count // 4]]
    target = args.out / "camera_path.json"
    load = os.getloadavg()
    browser = Browser(chromium_path(), window=tuple(int(v) for v in args.window.split(",")))
    try:
        browser.open(viewer.url)
        make_path_in_page(viewer, browser, recorder, target, poses)
        shot, right, sent = shoot_keyframe(
            viewer, browser, recorder, 1, args.out / "page_keyframe2.png"
        )
        click(browser, "save camera path")
        wait_until(target.is_file, 60, "the saved path")
    finally:
        browser.close()
        viewer.close()
    path = json.loads(target.read_text())
    key_time = viewer.book.keyframes[1].time
    index = int(round(key_time * path["fps"]))
    frames = render_video(args.ckpt, target, args.out / "path.mp4")
    doc, side = compare(shot, right, frames[index], sent)
    doc |= {"checkpoint": str(args.ckpt), "step": ckpt.step, "video_frame": index}
    doc |= {"video_frames": len(frames), "keyframe_time_s": key_time, "fps": path["fps"]}
    doc |= {"load_before": load, "load_after": os.getloadavg()}
    iio.imwrite(args.out / "sent_keyframe2.png", sent)
    iio.imwrite(args.out / "video_frame_keyframe2.png", frames[index])
    args.picture.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.picture, side)
    if args.page_picture:
        iio.imwrite(args.page_picture, shot)
    write_json(args.out / "shot.json", doc)
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
