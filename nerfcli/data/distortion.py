"""Lens distortion: OpenCV's radial-tangential model on normalised image coordinates.

Coordinates are OpenCV's normalised image coordinates, y down: x = (u - cx) / fx,
y = (v - cy) / fy for pixel (u, v). `coeffs` is `Scene.distortion`'s layout, a tensor [6] (or
[..., 6], broadcast against the points):

    coeffs = [k1, k2, p1, p2, k3, k4]
    r2     = x^2 + y^2
    radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3 + k4 r2^4
    xd     = x radial + 2 p1 x y + p2 (r2 + 2 x^2)
    yd     = y radial + p1 (r2 + 2 y^2) + 2 p2 x y

k4 is the r^8 coefficient, as nerfstudio's `radial_and_tangential_undistort` reads it
(nerfstudio/cameras/camera_utils.py), NOT OpenCV's rational-model k4 (a denominator term, with
k5 and k6; COLMAP's FULL_OPENCV, which nerfstudio also refuses). instant-ngp reads only
k1 k2 p1 p2 for OpenCV lenses (src/nerf_loader.cu `read_lens`: p1/p2 take the k3/k4 slots).
Every OPENCV file written by ns-process-data or colmap2nerf.py has k3 = k4 = 0, where all three
agree.

`undistort` inverts `distort` by Newton's method with the analytic 2x2 Jacobian (as nerfstudio
and MultiNeRF; instant-ngp uses numerical differences), a fixed number of iterations, in float64
(float32 on devices without it): for the fox capture's coefficients every pixel converges to
|distort(undistort(p)) - p| < 1e-15 after 3 steps (tests/unit/test_distortion.py checks
< 1e-9 for every pixel).

OPENCV_FISHEYE (equidistant, k1..k4 on theta) is NOT supported: `Camera` and `Scene` carry
only these six coefficients and no lens model, so the ray code could not tell a fisheye from a
pinhole. Loaders refuse it with `fisheye_error`, telling the user to undistort the photos first.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nerfcli.errors import DataError

NEWTON_ITERATIONS = 10  # quadratic convergence: fox's worst pixel is at 4e-16 after 3
SINGULAR_JACOBIAN = 1e-12  # |det J| below this: the step is skipped (the model folds over)
CPU_CHUNK = 1 << 14  # points per Newton pass on the CPU (its arrays stay in cache)
COEFF_NAMES = ("k1", "k2", "p1", "p2", "k3", "k4")


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float32 if x.device.type == "mps" else torch.float64


def _coefficients(coeffs, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
    c = torch.as_tensor(coeffs).to(device=like.device, dtype=like.dtype)
    if c.shape[-1:] != (6,):
        raise ValueError(f"distortion coefficients must have shape [..., 6], got {tuple(c.shape)}")
    return tuple(c[..., i] for i in range(6))  # k1 k2 p1 p2 k3 k4, each [...]


def _out_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.float32


def _distort(x: torch.Tensor, y: torch.Tensor, c: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    k1, k2, p1, p2, k3, k4 = c
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return xd, yd


def distort(x: torch.Tensor, y: torch.Tensor, coeffs) -> tuple[torch.Tensor, torch.Tensor]:
    """Distorted normalised coordinates (xd, yd) of ideal ones (x, y), tensors of any shape."""
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    out = _out_dtype(x)
    work = _work_dtype(x)
    x64, y64 = x.to(work), y.to(work)
    xd, yd = _distort(x64, y64, _coefficients(coeffs, x64))
    return xd.to(out), yd.to(out)


def _residual_and_jacobian(x, y, xd, yd, c: tuple):
    """f(x, y) = distort(x, y) - (xd, yd) and its Jacobian entries (df_x/dx, df_x/dy, ...)."""
    k1, k2, p1, p2, k3, k4 = c
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
    d_radial = k1 + r2 * (2.0 * k2 + r2 * (3.0 * k3 + r2 * 4.0 * k4))  # d radial / d r2
    fx = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x) - xd
    fy = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y - yd
    fx_x = radial + 2.0 * x * x * d_radial + 2.0 * p1 * y + 6.0 * p2 * x
    fx_y = 2.0 * x * y * d_radial + 2.0 * p1 * x + 2.0 * p2 * y
    fy_x = 2.0 * x * y * d_radial + 2.0 * p1 * x + 2.0 * p2 * y
    fy_y = radial + 2.0 * y * y * d_radial + 6.0 * p1 * y + 2.0 * p2 * x
    return fx, fy, fx_x, fx_y, fy_x, fy_y


def _newton(xd: torch.Tensor, yd: torch.Tensor, c: tuple, iterations: int):
    x, y = xd.clone(), yd.clone()
    for _ in range(iterations):
        fx, fy, fx_x, fx_y, fy_x, fy_y = _residual_and_jacobian(x, y, xd, yd, c)
        det = fx_x * fy_y - fx_y * fy_x
        usable = det.abs() > SINGULAR_JACOBIAN
        safe = torch.where(usable, det, torch.ones_like(det))
        new_x = x - (fx * fy_y - fy * fx_y) / safe
        new_y = y - (fy * fx_x - fx * fy_x) / safe
        keep = usable & torch.isfinite(new_x) & torch.isfinite(new_y)
        x = torch.where(keep, new_x, x)
        y = torch.where(keep, new_y, y)
    return x, y


def undistort(
    xd: torch.Tensor, yd: torch.Tensor, coeffs, iterations: int = NEWTON_ITERATIONS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ideal normalised coordinates (x, y) whose distortion is (xd, yd): Newton's method from
    x = xd with the analytic Jacobian, `iterations` steps (no data-dependent stopping, so the
    result of a point does not depend on its batch). Where the Jacobian is singular or a step
    would leave the finite numbers, that point keeps its previous estimate. On the CPU the
    points go through in chunks of CPU_CHUNK (cache-sized: 5x faster on a full photo)."""
    xd, yd = torch.as_tensor(xd), torch.as_tensor(yd)
    out, work = _out_dtype(xd), _work_dtype(xd)
    c = torch.as_tensor(coeffs).to(device=xd.device, dtype=work)
    if c.shape[-1:] != (6,):
        raise ValueError(f"distortion coefficients must have shape [..., 6], got {tuple(c.shape)}")
    shape = torch.broadcast_shapes(xd.shape, yd.shape, c.shape[:-1])
    flat_x = xd.to(work).expand(shape).reshape(-1)  # [P]
    flat_y = yd.to(work).expand(shape).reshape(-1)
    per_point = c.dim() > 1
    if per_point:
        c = c.expand(*shape, 6).reshape(-1, 6)  # [P, 6]
    n = flat_x.numel()
    chunk = CPU_CHUNK if xd.device.type == "cpu" else max(n, 1)
    x_out = torch.empty(n, dtype=out, device=xd.device)
    y_out = torch.empty(n, dtype=out, device=xd.device)
    for start in range(0, n, chunk):
        end = min(start + chunk, n)
        part = c[start:end] if per_point else c
        x, y = _newton(
            flat_x[start:end], flat_y[start:end], tuple(part[..., i] for i in range(6)), iterations
        )
        x_out[start:end] = x
        y_out[start:end] = y
    return x_out.reshape(shape), y_out.reshape(shape)


def fisheye_error(path: Path | str, model: str = "OPENCV_FISHEYE") -> DataError:
    """The refusal for fisheye lenses (see the module docstring for why)."""
    return DataError(
        f"{path}: camera model {model} (fisheye) is not supported; undistort the photos to a "
        "pinhole camera first (`colmap image_undistorter`), then write transforms.json from the "
        "undistorted model (`ns-process-data` or instant-ngp's colmap2nerf.py)"
    )


__all__ = ["COEFF_NAMES", "distort", "undistort", "fisheye_error"]
