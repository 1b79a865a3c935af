"""The format-neutral Scene: what every capture format (LLFF, Blender, transforms.json, the
generated scene) produces, and all that rays, training, rendering and evaluation read.

Conventions (the same for every format):
- `c2w` [N, 3, 4] float32 camera-to-world in the training frame, rotation columns
  [right, up, back] (OpenGL, as LLFF after its axis fix, Blender and nerfstudio).
- `K` [N, 3, 3] float32 per view at the loaded resolution; `distortion` [N, 6] OpenCV
  (k1, k2, p1, p2, k3, k4) per view or None for ideal pinholes. Distortion is applied to the
  ray directions, never by resampling the photos.
- `pixel_center` 0.0 (LLFF, Blender: exactly as nerf-pytorch) or 0.5 (transforms.json: as
  instant-ngp and nerfstudio): the ray of pixel column i passes through x = i + pixel_center.
- `near`, `far`: the ray range used for training and rendering (NDC: 0 and 1); `bounds`
  [N, 2] the per-view depth bounds in the training frame.
- `kind`, `frame`, `ndc`: the frame plan's (nerfcli.data.plan): kind "forward" (a
  forward-facing capture, rays in normalised device coordinates when `ndc`), "object" (inside
  `scene_box`) or "unbounded" (a walk-around capture with a background); frame "reference",
  "spherified", "walk-around" or "file".
- `splits`: index lists "train", "val", "test" into the views, numbered in the format's own
  order (LLFF: file order; Blender: train, val, test concatenated).
- `world_from_file` [4, 4]: maps the capture file's world coordinates to the training frame
  (rescale, recentre, the spherified frame, normalisation), so outputs map back to the file's frame.
- `images` [N, H, W, 3] float32 in [0, 1], already composited on `background` where the
  format has alpha ("white", "black"; "random" keeps `alpha` [N, H, W] so training can
  composite each batch on a random colour).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from nerfcli.data.cameras import Camera
from nerfcli.data.plan import SCENE_KINDS

KINDS = SCENE_KINDS
BACKGROUNDS = ("black", "white", "random")
BACKGROUND_RGB = {"black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0)}


@dataclass
class Scene:
    root: Path
    format: str  # "llff", "blender", "transforms"
    c2w: np.ndarray  # [N, 3, 4] float32
    K: np.ndarray  # [N, 3, 3] float32
    height: int  # every view shares one image size (at the loaded factor)
    width: int
    near: float
    far: float
    bounds: np.ndarray  # [N, 2] float32
    splits: dict[str, list[int]]
    render_poses: np.ndarray  # [F, 3, 4] float32, the default render path
    render_path: str  # "spiral", "circle", "spherical", "orbit"
    kind: str = "forward"  # one of KINDS (nerfcli.data.plan.SCENE_KINDS)
    ndc: bool = False  # rays in normalised device coordinates (forward scenes)
    frame: str = "file"  # one of nerfcli.data.plan.FRAMES
    scene_box: np.ndarray | None = None  # [2, 3] lo, hi in the training frame (kind "object")
    background: str = "black"  # one of BACKGROUNDS
    pixel_center: float = 0.0
    distortion: np.ndarray | None = None  # [N, 6] OpenCV k1 k2 p1 p2 k3 k4
    world_from_file: np.ndarray = field(default_factory=lambda: np.eye(4))  # [4, 4] float64
    factor: int = 1
    scale: float = 1.0  # training-frame units per stored unit (depth maps, bounds)
    image_files: list[str] = field(default_factory=list)
    images: np.ndarray | None = None  # [N, H, W, 3] float32 in [0, 1]
    alpha: np.ndarray | None = None  # [N, H, W] float32, kept only for background "random"
    depths: np.ndarray | None = None  # [N, H, W] ground-truth z-depth in stored units
    source: dict = field(default_factory=dict)  # format facts for reports (JSON values only)

    @property
    def num_views(self) -> int:
        return self.c2w.shape[0]

    @property
    def i_train(self) -> list[int]:
        return self.splits.get("train", [])

    @property
    def i_test(self) -> list[int]:
        return self.splits.get("test", [])

    @property
    def held_out(self) -> list[int]:
        """The views scored by eval and by the trainer's held-out PSNR: the test split, or
        when it is empty the first training view (so the number is never empty)."""
        return self.i_test or self.i_train[:1]

    def camera(self, view: int) -> Camera:
        """The camera of one view, with its own intrinsics and distortion."""
        return Camera(
            height=self.height,
            width=self.width,
            K=self.K[view],
            c2w=self.c2w[view],
            ndc=self.ndc,
            near=self.near,
            far=self.far,
            pixel_center=self.pixel_center,
            distortion=None if self.distortion is None else self.distortion[view],
        )

    def path_camera(self, c2w: np.ndarray) -> Camera:
        """A novel camera at pose c2w [3, 4] (render paths): the intrinsics of the first
        training view, as an ideal pinhole."""
        first = self.i_train[0] if self.i_train else 0
        return replace(self.camera(first), c2w=np.asarray(c2w, dtype=np.float32), distortion=None)

    def without_images(self) -> Scene:
        """The metadata only (what a checkpoint stores)."""
        return replace(self, images=None, alpha=None, depths=None)
