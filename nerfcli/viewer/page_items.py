"""What the page draws besides the render: the capture's cameras (frustums with their photos,
held-out views red), the scene box and the default render path; and the keyframe panel."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from nerfcli.data.scene import Scene
from nerfcli.errors import NerfError
from nerfcli.viewer.cameras import browser_from_pose, pose_from_browser, scene_vertical_fov

TRAIN_COLOUR = (40, 110, 220)
HELD_OUT_COLOUR = (230, 40, 40)
PATH_COLOUR = (240, 180, 0)
KEY_COLOUR = (20, 200, 120)


def scene_scale(scene: Scene) -> float:
    """A length for drawing: the spread of the camera positions."""
    positions = scene.c2w[:, :3, 3]
    spread = float(np.linalg.norm(positions.max(0) - positions.min(0)))
    return spread if spread > 1e-6 else 1.0


def thumbnail(scene: Scene, view: int, height: int = 64) -> np.ndarray | None:
    """A small copy of view's photo: the loaded image, or the file beside the capture."""
    if scene.images is not None:
        image = scene.images[view]
    else:
        image = _read_photo(scene, view)
        if image is None:
            return None
    step = max(1, image.shape[0] // height)
    small = image[::step, ::step]
    if small.dtype != np.uint8:
        small = (np.clip(small, 0, 1) * 255).astype(np.uint8)
    return np.ascontiguousarray(small[..., :3])


def _read_photo(scene: Scene, view: int) -> np.ndarray | None:
    if view >= len(scene.image_files):
        return None
    name = scene.image_files[view]
    root = Path(str(scene.root))
    folders = [root, root / "images", root / f"images_{scene.factor}"]
    for folder in folders:
        for candidate in (folder / name, folder / f"{name}.png"):
            if candidate.is_file():
                try:
                    import imageio.v3 as iio

                    return np.asarray(iio.imread(candidate))
                except Exception:
                    return None
    return None


def add_capture(server, scene: Scene, path_poses: np.ndarray) -> None:
    scale = 0.06 * scene_scale(scene)
    fov = scene_vertical_fov(scene)
    aspect = scene.width / scene.height
    held_out = set(scene.held_out)
    for view in range(scene.num_views):
        wxyz, position = browser_from_pose(scene.c2w[view])
        name = "held-out" if view in held_out else "train"
        server.scene.add_camera_frustum(
            f"/cameras/{name}/{view:03d}",
            fov=fov,
            aspect=aspect,
            scale=scale,
            thickness=0.04 * scale,
            color=HELD_OUT_COLOUR if view in held_out else TRAIN_COLOUR,
            image=thumbnail(scene, view),
            wxyz=wxyz,
            position=position,
        )
    if scene.scene_box is not None:
        server.scene.add_line_segments(
            "/scene_box",
            box_edges(np.asarray(scene.scene_box)),
            (200, 200, 200),
            thickness=0.01 * scale / 0.06,
        )
    positions = np.asarray(path_poses)[:, :3, 3]
    segments = np.stack([positions[:-1], positions[1:]], 1)  # [F - 1, 2, 3]
    server.scene.add_line_segments(
        "/default_path", segments, PATH_COLOUR, thickness=0.005 * scale / 0.06
    )


def box_edges(box: np.ndarray) -> np.ndarray:
    """The 12 edges [12, 2, 3] of an axis-aligned box [2, 3] (lo, hi)."""
    lo, hi = box
    corners = np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    edges = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
    return np.stack([[corners[a], corners[b]] for a, b in edges])


def _panel_fields(gui, scene: Scene, path_file: Path | None) -> SimpleNamespace:
    """The keyframe panel's buttons and fields."""
    with gui.add_folder("camera path"):
        fields = SimpleNamespace(
            add=gui.add_button("add keyframe (this view)"),
            index=gui.add_number("keyframe", 0, min=0, step=1),
            time=gui.add_number("its time (s)", 0.0, min=0.0, step=0.1),
            fov=gui.add_number(
                "its fov (deg)",
                round(math.degrees(scene_vertical_fov(scene)), 1),
                min=1.0,
                max=170.0,
                step=0.5,
            ),
            apply=gui.add_button("set time and fov"),
            move=gui.add_button("move keyframe here"),
            go=gui.add_button("go to keyframe"),
            delete=gui.add_button("delete keyframe"),
            transition=gui.add_number("seconds between new keyframes", 1.0, min=0.05, step=0.1),
            fps=gui.add_number("fps", 30, min=1, max=120, step=1),
            height=gui.add_number("render height", scene.height, min=8, max=4096, step=1),
            cycle=gui.add_checkbox("loop", False),
            out=gui.add_text("file", str(path_file or "camera_path.json")),
            save=gui.add_button("save camera path"),
            message=gui.add_markdown("no keyframes yet"),
        )
    return fields


def add_keyframe_panel(viewer, path_file: Path | None):
    """Buttons and fields of the keyframe panel; keyframes are drawn as green frustums."""
    book, scene = viewer.book, viewer.source.scene
    scale = 0.08 * scene_scale(scene)
    handles: list = []
    f = _panel_fields(viewer.server.gui, scene, path_file)
    add, index, time_field, fov_field = f.add, f.index, f.time, f.fov
    apply, move, go, delete, transition = f.apply, f.move, f.go, f.delete, f.transition
    fps, height, cycle, out, save, message = f.fps, f.height, f.cycle, f.out, f.save, f.message

    def redraw(note: str = "") -> None:
        for handle in handles:
            handle.remove()
        handles.clear()
        with book.lock:
            keys = list(book.keyframes)
        for k, key in enumerate(keys):
            wxyz, position = browser_from_pose(key.c2w)
            handles.append(
                viewer.server.scene.add_camera_frustum(
                    f"/keyframes/{k:03d}",
                    fov=math.radians(key.fov),
                    aspect=key.aspect,
                    scale=scale,
                    thickness=0.04 * scale,
                    color=KEY_COLOUR,
                    wxyz=wxyz,
                    position=position,
                )
            )
        times = ", ".join(f"{k}: {key.time:.2f}s" for k, key in enumerate(keys))
        message.content = note or (
            f"{len(keys)} keyframes ({times})" if keys else "no keyframes yet"
        )

    def guarded(action):
        def run(event) -> None:
            try:
                action(event)
            except NerfError as exc:
                redraw(f"**error:** {exc}")

        return run

    def camera_of(event):
        pose = pose_from_browser(
            event.client.camera.wxyz,
            event.client.camera.position,
            event.client.camera.fov,
            event.client.camera.aspect,
        )
        return pose.matrix, math.degrees(pose.fov), pose.aspect

    @add.on_click
    @guarded
    def _(event) -> None:
        book.transition = float(transition.value)
        c2w, fov, aspect = camera_of(event)
        index.value = book.add(c2w, fov, aspect)
        redraw()

    @apply.on_click
    @guarded
    def _(event) -> None:
        book.set_fov(int(index.value), float(fov_field.value))
        book.set_time(int(index.value), float(time_field.value))
        redraw()

    @move.on_click
    @guarded
    def _(event) -> None:
        c2w, fov, _aspect = camera_of(event)
        book.move(int(index.value), c2w, fov)
        redraw()

    @go.on_click
    @guarded
    def _(event) -> None:
        key = book.get(int(index.value))
        viewer.set_camera(event.client_id, key.c2w, math.radians(key.fov))

    @delete.on_click
    @guarded
    def _(event) -> None:
        book.delete(int(index.value))
        redraw()

    @save.on_click
    @guarded
    def _(event) -> None:
        target = Path(out.value).expanduser()
        frames = book.save(target, int(height.value), int(fps.value), bool(cycle.value))
        redraw(
            f"wrote {target} ({frames} frames); render it with `nerf render-video CKPT --path {target}`"
        )

    return {
        "add": add,
        "save": save,
        "file": out,
        "message": message,
        "index": index,
        "redraw": redraw,
    }
