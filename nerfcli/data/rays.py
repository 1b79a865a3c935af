"""Camera rays and normalised device coordinates, with the reference nerf-pytorch conventions.

Pixel (i, j) = (column, row); camera looks down -z with y up:
    dirs = [(i + c - cx) / fx, -(j + c - cy) / fy, -1]     rays_d = R @ dirs,  rays_o = t
with c = the camera's pixel_center (0 for LLFF and Blender as the reference, 0.5 for
transforms.json). With OpenCV distortion the normalised image point is first undistorted
(`nerfcli.data.distortion`), so the photos are never resampled.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from nerfcli.data.cameras import Camera, intrinsics


@dataclass
class Rays:
    """A bundle of rays; every field shares the leading shape (e.g. [H, W] or [R])."""

    origins: torch.Tensor  # [..., 3] (NDC when ndc was applied)
    directions: torch.Tensor  # [..., 3] (NDC when ndc was applied; not normalised)
    viewdirs: torch.Tensor  # [..., 3] unit directions before NDC (the network's view input)

    def reshape(self, *shape: int) -> Rays:
        return Rays(
            self.origins.reshape(*shape, 3),
            self.directions.reshape(*shape, 3),
            self.viewdirs.reshape(*shape, 3),
        )

    def __getitem__(self, index) -> Rays:
        return Rays(self.origins[index], self.directions[index], self.viewdirs[index])

    def to(self, device: torch.device | str) -> Rays:
        return Rays(self.origins.to(device), self.directions.to(device), self.viewdirs.to(device))

    def __len__(self) -> int:
        return self.origins.shape[0]


def _as_tensor(x, dtype=torch.float32, device=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(dtype=dtype, device=device if device is not None else x.device)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def _camera_directions(cols: torch.Tensor, rows: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Camera-frame directions [..., 3] through pixel columns/rows [...] (no half-pixel shift)."""
    return torch.stack(
        [(cols - K[0, 2]) / K[0, 0], -(rows - K[1, 2]) / K[1, 1], -torch.ones_like(cols)], -1
    )  # [..., 3]


def _rotate(dirs: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
    """R @ d for every direction [..., 3], written elementwise (as the reference's sum).

    Elementwise arithmetic gives bit-identical results whatever the batch shape, so the rays of
    a few pixels equal the same pixels of a full image exactly (a matmul would not promise that).
    """
    rotation = c2w[:3, :3]
    x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    return torch.stack(
        [rotation[k, 0] * x + rotation[k, 1] * y + rotation[k, 2] * z for k in range(3)], -1
    )  # [..., 3]


def normalize_directions(directions: torch.Tensor) -> torch.Tensor:
    """Unit vectors [..., 3] (elementwise, so results do not depend on the batch shape)."""
    x, y, z = directions[..., 0], directions[..., 1], directions[..., 2]
    return directions / torch.sqrt(x * x + y * y + z * z)[..., None]


def pixel_directions(
    height: int, width: int, K, device: torch.device | str | None = None
) -> torch.Tensor:
    """Camera-frame ray directions [H, W, 3] for every pixel (meshgrid 'xy')."""
    K = _as_tensor(K, device=device)
    i, j = torch.meshgrid(
        torch.arange(width, dtype=torch.float32, device=K.device),
        torch.arange(height, dtype=torch.float32, device=K.device),
        indexing="xy",
    )  # i: [H, W] column index, j: [H, W] row index
    return _camera_directions(i, j, K)  # [H, W, 3]


def get_rays(height: int, width: int, K, c2w, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """World-frame ray origins and directions [H, W, 3] for camera c2w [3, 4]."""
    c2w = _as_tensor(c2w, device=device)
    dirs = pixel_directions(height, width, K, device=c2w.device)  # [H, W, 3]
    rays_d = _rotate(dirs, c2w)  # [H, W, 3]
    rays_o = c2w[:3, 3].expand(rays_d.shape)  # [H, W, 3]
    return rays_o, rays_d


def rays_for_pixels(K, c2w, cols, rows) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays [P, 3] through the given pixel columns and rows (same numbers as get_rays)."""
    c2w = _as_tensor(c2w)
    K = _as_tensor(K, device=c2w.device)
    cols = _as_tensor(cols, device=c2w.device)
    rows = _as_tensor(rows, device=c2w.device)
    dirs = _camera_directions(cols, rows, K)  # [P, 3]
    rays_d = _rotate(dirs, c2w)  # [P, 3]
    rays_o = c2w[:3, 3].expand(rays_d.shape)  # [P, 3]
    return rays_o, rays_d


def ndc_rays(
    height: int, width: int, focal: float, near: float, rays_o: torch.Tensor, rays_d: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map rays into normalised device coordinates of the forward-facing frustum.

    Origins are first moved onto the plane z = -near; that plane maps to z = -1 and z = -inf to
    z = +1, so t in [0, 1] covers near..infinity.
    """
    t = -(near + rays_o[..., 2]) / rays_d[..., 2]  # [...]
    rays_o = rays_o + t[..., None] * rays_d
    ox, oy, oz = rays_o[..., 0], rays_o[..., 1], rays_o[..., 2]
    dx, dy, dz = rays_d[..., 0], rays_d[..., 1], rays_d[..., 2]
    ax = -1.0 / (width / (2.0 * focal))
    ay = -1.0 / (height / (2.0 * focal))
    o0 = ax * ox / oz
    o1 = ay * oy / oz
    o2 = 1.0 + 2.0 * near / oz
    d0 = ax * (dx / dz - ox / oz)
    d1 = ay * (dy / dz - oy / oz)
    d2 = -2.0 * near / oz
    return torch.stack([o0, o1, o2], -1), torch.stack([d0, d1, d2], -1)


def make_rays(height: int, width: int, focal: float, c2w, ndc: bool, device=None, K=None) -> Rays:
    """All rays [H, W] of one view in the training frame, NDC applied when asked (near = 1)."""
    if K is None:
        K = intrinsics(height, width, focal)
    rays_o, rays_d = get_rays(height, width, K, c2w, device=device)  # [H, W, 3] each
    return _finish_rays(height, width, focal, rays_o, rays_d, ndc)


def make_pixel_rays(
    height: int, width: int, focal: float, c2w, ndc: bool, cols, rows, K=None
) -> Rays:
    """The rays [P] through pixels (cols[p], rows[p]); equal to make_rays(...)[rows, cols]."""
    if K is None:
        K = intrinsics(height, width, focal)
    rays_o, rays_d = rays_for_pixels(K, c2w, cols, rows)  # [P, 3] each
    return _finish_rays(height, width, focal, rays_o, rays_d, ndc)


def _finish_rays(
    height: int, width: int, focal: float, rays_o: torch.Tensor, rays_d: torch.Tensor, ndc: bool
) -> Rays:
    viewdirs = normalize_directions(rays_d)  # [..., 3]
    if ndc:
        rays_o, rays_d = ndc_rays(height, width, focal, 1.0, rays_o, rays_d)
    return Rays(rays_o, rays_d, viewdirs)


def _camera_frame_directions(camera: Camera, cols: torch.Tensor, rows: torch.Tensor):
    """Camera-frame directions [..., 3] through pixels (cols, rows) of `camera`."""
    K = _as_tensor(camera.K, device=cols.device)
    cols = cols + camera.pixel_center if camera.pixel_center else cols
    rows = rows + camera.pixel_center if camera.pixel_center else rows
    if camera.distortion is None or not np.any(camera.distortion):
        return _camera_directions(cols, rows, K)
    from nerfcli.data.distortion import undistort

    xd = (cols - K[0, 2]) / K[0, 0]  # OpenCV normalised image coordinates (y down)
    yd = (rows - K[1, 2]) / K[1, 1]
    x, y = undistort(xd, yd, _as_tensor(camera.distortion, device=cols.device))
    return torch.stack([x, -y, -torch.ones_like(x)], -1)


def camera_rays(camera: Camera, device=None) -> Rays:
    """All rays [H, W] of one camera in the training frame (NDC applied for NDC cameras)."""
    c2w = _as_tensor(camera.c2w, device=device)
    if camera.distortion is None or not np.any(camera.distortion):
        dirs = _grid_directions(camera, c2w.device)  # [H, W, 3]
    else:  # undistorting is iterative (fox: 0.28 s a view): once per lens, not per frame
        dirs = _undistorted_grid(
            camera.width,
            camera.height,
            tuple(np.asarray(camera.K, dtype=np.float64).ravel().tolist()),
            tuple(np.asarray(camera.distortion, dtype=np.float64).ravel().tolist()),
            float(camera.pixel_center),
            str(c2w.device),
        )
    rays_d = _rotate(dirs, c2w)
    rays_o = c2w[:3, 3].expand(rays_d.shape)
    return _finish_rays(*camera.ndc_frustum, rays_o, rays_d, camera.ndc)


def _grid_directions(camera: Camera, device) -> torch.Tensor:
    """Camera-frame directions [H, W, 3] through every pixel of `camera`."""
    i, j = torch.meshgrid(
        torch.arange(camera.width, dtype=torch.float32, device=device),
        torch.arange(camera.height, dtype=torch.float32, device=device),
        indexing="xy",
    )  # [H, W] column and row index
    return _camera_frame_directions(camera, i, j)


@functools.lru_cache(maxsize=4)
def _undistorted_grid(width, height, K, distortion, pixel_center, device) -> torch.Tensor:
    """_grid_directions of a camera with lens distortion, by value (the frames of a video,
    the views of a capture share a lens): read-only, callers only rotate it."""
    camera = Camera(
        height=height,
        width=width,
        K=np.asarray(K).reshape(3, 3),
        c2w=np.eye(4)[:3],
        ndc=False,
        near=0.0,
        far=1.0,
        pixel_center=pixel_center,
        distortion=np.asarray(distortion),
    )
    return _grid_directions(camera, torch.device(device))


def camera_pixel_rays(camera: Camera, cols, rows) -> Rays:
    """The rays [P] through pixels (cols[p], rows[p]); equal to camera_rays(camera)[rows, cols]."""
    c2w = _as_tensor(camera.c2w)
    dirs = _camera_frame_directions(
        camera, _as_tensor(cols, device=c2w.device), _as_tensor(rows, device=c2w.device)
    )  # [P, 3]
    rays_d = _rotate(dirs, c2w)
    rays_o = c2w[:3, 3].expand(rays_d.shape)
    return _finish_rays(*camera.ndc_frustum, rays_o, rays_d, camera.ndc)
