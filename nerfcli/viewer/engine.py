"""The viewer's render loop, apart from any web server: one thread renders every client's
latest camera, small while it moves and at full size once it has been still for `still_after`
seconds; the full-size picture is drawn in one call (its chunks shared by both cores) and
given up at the next chunk as soon as the camera moves again. Pictures go out through
`show(client_id, image, info)`.

One thread for all clients keeps the viewer's cost bounded; in a training process it also
lowers its own priority (nice), renders with one torch thread and can be held to a share of
the time (`duty`). Before any client comes, the thread renders the capture's first path view
once (`warm_up`): the model's render snapshots (the frozen field) are built then, and the
speed measured, so a page's first picture is already sized from it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from nerfcli.evaluation.views import Cancelled, picture, render_camera
from nerfcli.viewer.cameras import ViewPose, scene_vertical_fov, view_camera
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
    threads: int | None = None  # torch threads of the render thread (None: the process's)
    nice: int = 0  # added to the render thread's niceness (Linux: per thread)
    duty: float = 1.0  # the render thread's largest share of wall time (sleeps to keep it)
    warm_up: bool = True  # render once before any client (snapshots built, speed measured)
    cancel_seconds: float = 0.1  # a still picture's chunks take about this long each


def limit_this_thread(threads: int) -> None:
    """torch.set_num_threads(threads) for the calling thread only.

    torch keeps the last count set by any thread in a process-wide value, and every thread
    that has not yet run a parallel operation takes its count from that value on its first
    one (a training loop that starts after the viewer would train on the viewer's one
    thread). So the count is set here after this thread's own first one, and the
    process-wide value put back from a throwaway thread."""
    before = torch.get_num_threads()  # this thread's count, initialised now
    torch.set_num_threads(threads)
    restore = threading.Thread(target=torch.set_num_threads, args=(before,))
    restore.start()
    restore.join()


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
        self.warm = threading.Event()  # set once the warm-up is done (or skipped)
        self.warm_up_seconds: float | None = None

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
            self._wake.notify_all()

    def refresh(self) -> None:
        """New weights: every client's picture is drawn again."""
        with self._wake:
            self.weights_version += 1
            self._wake.notify_all()

    def start(self) -> Engine:
        torch.get_num_threads()  # this thread's count is its own before the render thread's
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
            limit_this_thread(self.options.threads)
        self._warm_up()
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

    def _warm_up(self) -> None:
        """The capture's first path view, once to build the snapshots and once timed at the
        first moving size; skipped for a source without weights yet."""
        try:
            if not self.options.warm_up or not self.source.ready():
                return
            start = time.perf_counter()
            scene = self.source.scene
            c2w = np.asarray(scene.render_poses[0], np.float64)[:3, :4]
            pose = ViewPose(
                tuple(float(v) for v in c2w.reshape(-1)),
                scene_vertical_fov(scene),
                scene.width / scene.height,
            )
            model, chunk = self.source.model_for_render(), self.source.config.render.chunk
            for height in (self.sizer.min_height, self.sizer.moving_height(pose.aspect)):
                camera = view_camera(scene, pose, height)
                began = time.perf_counter()
                render_camera(model, camera, chunk, self.source.device)
            self.sizer.record(camera.height * camera.width, time.perf_counter() - began)
            self.warm_up_seconds = time.perf_counter() - start
        except Exception as exc:
            self.errors.append(f"warm-up: {type(exc).__name__}: {exc}")
        finally:
            self.warm.set()

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

    def _moved_on(self, client_id: int, pose: ViewPose) -> bool:
        """True when the client has gone, its camera moved or the engine stops (any thread)."""
        current = self.clients.get(client_id)
        return self._stop or current is None or current.pose != pose

    def _still_chunk(self, chunk: int) -> int:
        """Rays a chunk of a still picture: about `cancel_seconds` of one worker's time at the
        measured speed, but not under 4096 (lego, 2 cores: 1024-ray chunks made a frame
        30-60% slower, 4096 as fast as 8192), nor over the config's."""
        if self.sizer.rate is None:
            return chunk
        workers = max(1, torch.get_num_threads())
        rays = int(self.sizer.rate * self.options.cancel_seconds / workers)
        return min(chunk, max(4096, rays))

    def _render(self, client_id: int, view: ClientView, height: int, still: bool) -> None:
        turn = time.perf_counter()
        model = self.source.model_for_render()
        scene = self.source.scene
        camera = view_camera(scene, view.pose, height)
        chunk = self.source.config.render.chunk
        cancelled = None
        if still:  # chunks of about `cancel_seconds`: a camera that moves on waits no longer
            cancelled = lambda: self._moved_on(client_id, view.pose)  # noqa: E731
            chunk = self._still_chunk(chunk)
        start = time.perf_counter()
        try:
            result = render_camera(model, camera, chunk, self.source.device, cancelled)
        except Cancelled:  # the camera moved: drop this picture
            return
        image = picture(result, view.output, scene.ndc)
        seconds = time.perf_counter() - start
        pixels = camera.height * camera.width
        self.sizer.record(pixels, seconds)
        with self._wake:
            current = self.clients.get(client_id)
            if current is None:
                return
            current.drawn = (view.pose, view.output, height, self.weights_version)
            current.frames += 1
        info = {"height": camera.height, "width": camera.width, "seconds": seconds, "still": still}
        self.show(client_id, image, info)
        if not still:
            self.sizer.record_moving(pixels, time.perf_counter() - turn)
