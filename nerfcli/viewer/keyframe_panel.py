"""The page's keyframe panel: buttons and fields over a KeyframeBook (keyframes.py); the
keyframes drawn as green frustums. Every button's action runs through `guarded`, so a
NerfError (no such keyframe, a bad file name) is shown in the panel, not raised."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

from nerfcli.data.scene import Scene
from nerfcli.errors import NerfError
from nerfcli.viewer.cameras import browser_from_pose, pose_from_browser, scene_vertical_fov
from nerfcli.viewer.page_items import scene_scale

KEY_COLOUR = (20, 200, 120)


def panel_fields(gui, scene: Scene, path_file: Path | None) -> SimpleNamespace:
    """The keyframe panel's buttons and fields."""
    with gui.add_folder("camera path"):
        fov = round(math.degrees(scene_vertical_fov(scene)), 1)
        fields = SimpleNamespace(
            add=gui.add_button("add keyframe (this view)"),
            index=gui.add_number("keyframe", 0, min=0, step=1),
            time=gui.add_number("its time (s)", 0.0, min=0.0, step=0.1),
            fov=gui.add_number("its fov (deg)", fov, min=1.0, max=170.0, step=0.5),
            apply=gui.add_button("set time and fov"),
            move=gui.add_button("move keyframe here"),
            go=gui.add_button("go to keyframe"),
            delete=gui.add_button("delete keyframe"),
            transition=gui.add_number("seconds between new keyframes", 1.0, min=0.05, step=0.1),
            fps=gui.add_number("fps", 30, min=1, max=120, step=1),
            height=gui.add_number("render height", scene.height, min=8, max=4096, step=1),
            cycle=gui.add_checkbox("loop", False),
            file=gui.add_text("file", str(path_file or "camera_path.json")),
            save=gui.add_button("save camera path"),
            message=gui.add_markdown("no keyframes yet"),
        )
    return fields


def camera_of(client) -> tuple:
    """(c2w [3, 4] OpenGL, vertical fov in degrees, aspect) of a client's camera."""
    camera = client.camera
    pose = pose_from_browser(camera.wxyz, camera.position, camera.fov, camera.aspect)
    return pose.matrix, math.degrees(pose.fov), pose.aspect


class KeyframePanel:
    """The panel of `viewer` (its server, book, source and set_camera)."""

    def __init__(self, viewer, path_file: Path | None):
        self.viewer = viewer
        self.book = viewer.book
        self.scale = 0.08 * scene_scale(viewer.source.scene)
        self.handles: list = []
        self.fields = panel_fields(viewer.server.gui, viewer.source.scene, path_file)
        actions = {
            "add": self.add,
            "apply": self.apply,
            "move": self.move,
            "go": self.go,
            "delete": self.delete,
            "save": self.save,
        }
        for name, action in actions.items():
            getattr(self.fields, name).on_click(self.guarded(action))

    def guarded(self, action):
        def run(event) -> None:
            try:
                action(event)
            except NerfError as exc:
                self.redraw(f"**error:** {exc}")

        return run

    def redraw(self, note: str = "") -> None:
        """The keyframes as frustums, and the panel's message (`note`, or the times)."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        with self.book.lock:
            keys = list(self.book.keyframes)
        for k, key in enumerate(keys):
            wxyz, position = browser_from_pose(key.c2w)
            handle = self.viewer.server.scene.add_camera_frustum(
                f"/keyframes/{k:03d}",
                fov=math.radians(key.fov),
                aspect=key.aspect,
                scale=self.scale,
                thickness=0.04 * self.scale,
                color=KEY_COLOUR,
                wxyz=wxyz,
                position=position,
            )
            self.handles.append(handle)
        times = ", ".join(f"{k}: {key.time:.2f}s" for k, key in enumerate(keys))
        summary = f"{len(keys)} keyframes ({times})" if keys else "no keyframes yet"
        self.fields.message.content = note or summary

    @property
    def index(self) -> int:
        return int(self.fields.index.value)

    def add(self, event) -> None:
        self.book.transition = float(self.fields.transition.value)
        c2w, fov, aspect = camera_of(event.client)
        self.fields.index.value = self.book.add(c2w, fov, aspect)
        self.redraw()

    def apply(self, event) -> None:
        self.book.set_fov(self.index, float(self.fields.fov.value))
        self.book.set_time(self.index, float(self.fields.time.value))
        self.redraw()

    def move(self, event) -> None:
        c2w, fov, _aspect = camera_of(event.client)
        self.book.move(self.index, c2w, fov)
        self.redraw()

    def go(self, event) -> None:
        key = self.book.get(self.index)
        self.viewer.set_camera(event.client_id, key.c2w, math.radians(key.fov))

    def delete(self, event) -> None:
        self.book.delete(self.index)
        self.redraw()

    def save(self, event) -> None:
        fields = self.fields
        target = Path(fields.file.value).expanduser()
        frames = self.book.save(
            target, int(fields.height.value), int(fields.fps.value), bool(fields.cycle.value)
        )
        self.redraw(
            f"wrote {target} ({frames} frames); render it with "
            f"`nerf render-video CKPT --path {target}`"
        )
