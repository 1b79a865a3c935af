"""A small client of Chromium's DevTools protocol for the browser test: start Debian's headless
chromium (no browser downloads), open a page, evaluate JavaScript, take screenshots."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless chromium with one page, driven over the DevTools websocket."""

    def __init__(self, executable: str, timeout: float = 60.0, window=(800, 600)):
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="nerf-chromium-")
        self.process = subprocess.Popen(
            [
                executable,
                *CHROMIUM_FLAGS,
                f"--window-size={window[0]},{window[1]}",
                f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools server")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            pages = [t for t in json.load(reply) if t.get("type") == "page"]
        self.socket = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=20)
        self.ids = itertools.count(1)

    def call(self, method: str, timeout: float = 60.0, **params) -> dict:
        ident = next(self.ids)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def open(self, url: str) -> None:
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def painted(self, region, timeout: float = 60.0, interval: float = 0.5):
        """A screenshot (uint8 [H, W, 3]) once the page has painted: `region(shot)` (the part
        that matters, as an array) is not blank (std > 5) and the same in two screenshots in
        a row (mean difference < 0.5). Raises TimeoutError otherwise."""
        import imageio.v3 as iio
        import numpy as np

        deadline = time.monotonic() + timeout
        previous = None
        while time.monotonic() < deadline:
            data = self.call("Page.captureScreenshot", format="png")["data"]
            shot = np.asarray(iio.imread(base64.b64decode(data)))[..., :3]
            part = np.asarray(region(shot), np.float32)
            if (
                previous is not None
                and part.std() > 5
                and part.shape == previous.shape
                and np.abs(part - previous).mean() < 0.5
            ):
                return shot
            previous = part
            time.sleep(interval)
        raise TimeoutError("the page did not paint a steady picture")

    def close(self) -> None:
        try:
            self.socket.close()
        except Exception:
            pass
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)
