"""The viewer's render loop, apart from any web server: one thread renders every client's
latest camera, small while it moves and at full size once it has been still for `still_after`
seconds; a full-size picture is drawn in bands of rows and dropped as soon as the camera moves
again. Pictures go out through `show(client_id, image, info)`.

One thread for all clients keeps the viewer's cost to one core at most; in a training process
it also lowers its own priority (nice) and can be held to a share of the time (`duty`)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from nerfcli.evaluation.views import picture, render_camera
from nerfcli.viewer.cameras import ViewPose, view_camera
from nerfcli.viewer.sizing import Sizer
from nerfcli.viewer.source import ModelSource

ShowFn = Callable[[int, np.ndarray, dict], None]


@dataclass
class ClientView:
    pose: ViewPose | None = None
    output: str = "rgb"
    moved_at: float = 0.0  # monotonic time of the last camera update
    drawn: tuple | None = None  # (pose, output, height, weights version) of the last picture
    frames: int = 0


@dataclass
class EngineOptions:
    still_after: float = 0.15  # seconds without camera updates before the full-size render
    threads: int | None = None  # torch threads of the render thread (None: torch's default)
    nice: int = 0  # added to the render thread's niceness (Linux: per thread)
    duty: float = 1.0  # the render thread's largest share of wall time (sleeps to keep it)
    band_seconds: float = 0.25  # full-size pictures are drawn in bands of about this long


@dataclass
class Engine:
    source: ModelSource
    show: ShowFn
    sizer: Sizer
    options: EngineOptions = field(default_factory=EngineOptions)

    def __post_init__(self):
        self.clients: dict[int, ClientView] = {}
        self._wake = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.weights_version = 0
        self.errors: list[str] = []

    # -- what the server calls (any thread)

    def set_camera(self, client_id: int, pose: ViewPose) -> None:
        with self._wake:
            view = self.clients.setdefault(client_id, ClientView())
            if view.pose != pose:
                view.pose, view.moved_at = pose, time.monotonic()
            self._wake.notify_all()

    def set_output(self, client_id: int, output: str) -> None:
        with self._wake:
            self.clients.setdefault(client_id, ClientView()).output = output
            self._wake.notify_all()

    def drop_client(self, client_id: int) -> None:
        with self._wake:
            self.clients.pop(client_id, None)

    def refresh(self) -> None:
        """New weights: every client's picture is drawn again."""
        with self._wake:
            self.weights_version += 1
            self._wake.notify_all()

    def start(self) -> Engine:
        self._thread = threading.Thread(target=self._run, name="nerf-view-render", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # -- the render thread

    def _run(self) -> None:
        if self.options.nice:
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.options.nice)
            except (AttributeError, OSError):
                pass
        if self.options.threads is not None:
            torch.set_num_threads(self.options.threads)
        while True:
            job = self._next_job()
            if job is None:
                return
            start = time.perf_counter()
            try:
                self._render(*job)
            except Exception as exc:  # a render failure must not end the page
                self.errors.append(f"{type(exc).__name__}: {exc}")
                with self._wake:
                    self._wake.wait(1.0)
            busy = time.perf_counter() - start
            if self.options.duty < 1.0:  # hold the thread to its share of the time
                with self._wake:
                    if not self._stop:
                        self._wake.wait(busy * (1.0 / self.options.duty - 1.0))

    def _next_job(self) -> tuple[int, ClientView, int, bool] | None:
        """(client id, a copy of its view, height, still) of the next picture, waiting for one."""
        with self._wake:
            while not self._stop:
                now = time.monotonic()
                wait = 1.0
                for client_id, view in self.clients.items():
                    if view.pose is None or not self.source.ready():
                        continue
                    still = now - view.moved_at >= self.options.still_after
                    height = (
                        self.sizer.still_height()
                        if still
                        else self.sizer.moving_height(view.pose.aspect)
                    )
                    key = (view.pose, view.output, height, self.weights_version)
                    if key != view.drawn and (
                        still or view.drawn is None or view.drawn[0] != view.pose
                    ):
                        return client_id, replace(view), height, still
                    if not still:  # wake when it becomes still
                        wait = min(wait, self.options.still_after - (now - view.moved_at) + 1e-3)
                self._wake.wait(max(wait, 1e-3))
            return None

    def _render(self, client_id: int, view: ClientView, height: int, still: bool) -> None:
        model = self.source.model_for_render()
        scene = self.source.scene
        camera = view_camera(scene, view.pose, height)
        chunk = self.source.config.render.chunk
        start = time.perf_counter()
        if not still or view.output == "depth":  # depth: one normalisation per picture
            result = render_camera(model, camera, chunk, self.source.device)
            bands = [picture(result, view.output, scene.ndc)]
        else:
            bands = self._render_bands(client_id, view, camera, model, chunk)
            if bands is None:  # the camera moved: drop this picture
                return
        seconds = time.perf_counter() - start
        self.sizer.record(camera.height * camera.width, seconds)
        image = np.concatenate(bands, 0)
        with self._wake:
            current = self.clients.get(client_id)
            if current is None:
                return
            current.drawn = (view.pose, view.output, height, self.weights_version)
            current.frames += 1
        info = {"height": camera.height, "width": camera.width, "seconds": seconds, "still": still}
        self.show(client_id, image, info)

    def _render_bands(self, client_id, view, camera, model, chunk) -> list[np.ndarray] | None:
        """The full-size picture in bands of rows (a band is the same camera with its principal
        point moved), given up when the client's camera moves on."""
        rate = self.sizer.rate or 1e5
        rows = max(8, int(rate * self.options.band_seconds / camera.width))
        bands = []
        for top in range(0, camera.height, rows):
            band = band_camera(camera, top, min(rows, camera.height - top))
            result = render_camera(model, band, chunk, self.source.device)
            bands.append(picture(result, view.output, self.source.scene.ndc))
            with self._wake:
                current = self.clients.get(client_id)
                if current is None or current.pose != view.pose or self._stop:
                    return None
        return bands


def band_camera(camera, top: int, rows: int):
    """Rows top .. top + rows of `camera`'s picture, as a camera of its own."""
    K = np.array(camera.K, np.float32)
    K[1, 2] -= top
    return replace(camera, height=rows, K=K)
