"""The page (viser): the model rendered from each browser's camera, the capture's cameras as
frustums with their photos (held-out views in red), the scene box, the default render path,
the checkpoint's step and held-out PSNR, and the keyframe panel (keyframes.py)."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nerfcli.errors import NerfError
from nerfcli.evaluation.camera_path import default_path
from nerfcli.evaluation.views import OUTPUTS
from nerfcli.viewer.cameras import browser_from_pose, pose_from_browser, scene_vertical_fov
from nerfcli.viewer.engine import Engine, EngineOptions
from nerfcli.viewer.keyframe_panel import KeyframePanel
from nerfcli.viewer.keyframes import KeyframeBook
from nerfcli.viewer.page_items import add_capture
from nerfcli.viewer.sizing import Sizer
from nerfcli.viewer.source import ModelSource

FrameHook = Callable[[int, np.ndarray, dict], None]


def import_viser():
    try:
        import viser
    except ImportError:
        raise NerfError(
            "`nerf view` needs the viewer extra (viser): pip install 'nerfcli[viewer]' "
            "(or `make env`, which installs it)"
        ) from None
    return viser


class Viewer:
    """A viser server showing `source`. `frame_hooks` see every picture sent (the bench and
    the tests time them)."""

    def __init__(
        self,
        source: ModelSource,
        host: str = "127.0.0.1",
        port: int = 7007,
        max_height: int | None = None,
        options: EngineOptions | None = None,
        path_file: Path | None = None,
    ):
        viser = import_viser()
        self.source = source
        scene = source.scene
        with contextlib.redirect_stdout(io.StringIO()):  # viser's banner: stdout is ours
            self.server = viser.ViserServer(host=host, port=port, label="nerf view", verbose=False)
        self.server.scene.set_up_direction("+y" if scene.render_path == "spiral" else "+z")
        self.frame_hooks: list[FrameHook] = []
        self.connected_at: dict[int, float] = {}
        full = min(scene.height, max_height) if max_height else scene.height
        self.engine = Engine(
            source, self._show, Sizer(full_height=full), options or EngineOptions()
        )
        self.book = KeyframeBook(scene, source.checkpoint_path)
        self.path_file = path_file
        self._status = self.server.gui.add_markdown(self._status_text())
        output = self.server.gui.add_dropdown("output", OUTPUTS, initial_value="rgb")

        @output.on_update
        def _(event) -> None:
            if event.client_id is not None:
                self.engine.set_output(event.client_id, output.value)

        shown = self.server.gui.add_checkbox("show cameras, box and path", True)

        @shown.on_update
        def _(event) -> None:
            self.show_overlays(shown.value)

        add_capture(self.server, scene, default_path(scene))
        self.keyframe_panel = KeyframePanel(self, path_file)
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)
        self.engine.start()

    @property
    def url(self) -> str:
        host = self.server.get_host()
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{self.server.get_port()}"

    def _connect(self, client) -> None:
        self.connected_at[client.client_id] = time.perf_counter()
        wxyz, position = browser_from_pose(default_path(self.source.scene)[0])
        client.camera.fov = scene_vertical_fov(self.source.scene)
        client.camera.wxyz, client.camera.position = wxyz, position
        demand = getattr(self.source, "demand", None)
        if demand is not None:
            demand.set()

        @client.camera.on_update
        def _(camera) -> None:
            self.engine.set_camera(client.client_id, self.browser_pose(camera))

        self.engine.set_camera(client.client_id, self.browser_pose(client.camera))

    def _disconnect(self, client) -> None:
        self.engine.drop_client(client.client_id)
        self.connected_at.pop(client.client_id, None)
        demand = getattr(self.source, "demand", None)
        if demand is not None and not self.server.get_clients():
            demand.clear()

    @staticmethod
    def browser_pose(camera):
        return pose_from_browser(camera.wxyz, camera.position, camera.fov, camera.aspect)

    def set_camera(self, client_id: int, c2w: np.ndarray, fov: float | None = None) -> None:
        """Move a browser's camera from the server side (c2w [3, 4] OpenGL, training frame)."""
        client = self.server.get_clients().get(client_id)
        if client is None:
            raise NerfError(f"no client {client_id} connected")
        wxyz, position = browser_from_pose(c2w)
        with client.atomic():
            if fov is not None:
                client.camera.fov = fov
            client.camera.wxyz, client.camera.position = wxyz, position
        # the browser may not echo a camera it was given: render it now
        self.engine.set_camera(client_id, self.browser_pose(client.camera))

    def show_overlays(self, visible: bool) -> None:
        """Show or hide everything drawn over the render (cameras, box, paths, keyframes)."""
        self.server.scene.set_global_visibility(visible)

    def _show(self, client_id: int, image: np.ndarray, info: dict) -> None:
        client = self.server.get_clients().get(client_id)
        if client is not None:
            client.scene.set_background_image(image, format="jpeg", jpeg_quality=85)
        self._status.content = self._status_text(info)
        for hook in self.frame_hooks:
            hook(client_id, image, info)

    def _status_text(self, info: dict | None = None) -> str:
        status = self.source.status
        psnr = "-" if status.test_psnr is None else f"{status.test_psnr:.2f} dB"
        what = "training, step" if status.training else "step"
        text = f"**{what}** {status.step} · **held-out PSNR** {psnr}"
        if info:
            text += f"  \nrender {info['width']}x{info['height']} in {info['seconds']:.2f} s"
        return text

    def refresh_status(self) -> None:
        self._status.content = self._status_text()

    def close(self) -> None:
        self.engine.stop()
        with contextlib.redirect_stdout(io.StringIO()):
            self.server.stop()
