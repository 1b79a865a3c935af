"""Image metrics: MSE, PSNR, SSIM (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03) and to8b."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.mean((a - b) ** 2)


def psnr_from_mse(value: float | torch.Tensor) -> float:
    value = float(value)
    if value <= 0:
        return float("inf")
    return float(-10.0 * np.log10(value))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return psnr_from_mse(mse(a, b))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()  # [size]


# SSIM filters images up to this many pixels a side by banded matrix products, larger ones by
# convolutions.
BANDED_LIMIT = 1024


def ssim(
    a: torch.Tensor,
    b: torch.Tensor,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float = 1.0,
) -> float:
    """Mean SSIM of two images [H, W, C] in [0, data_range], per channel, 'valid' filtering
    (the window never leaves the image), as the usual NeRF evaluation code computes it."""
    x = a.detach().to(torch.float64).permute(2, 0, 1)  # [C, H, W]
    y = b.detach().to(torch.float64).permute(2, 0, 1)
    fits = min(window, x.shape[-2], x.shape[-1])
    if fits < window:  # a tiny image (say a heavily downscaled quick eval): the largest odd fit
        fits -= 1 - fits % 2
        sigma, window = sigma * fits / window, fits
    g = gaussian_window(window, sigma).to(x.device)
    if max(x.shape[-2:]) <= BANDED_LIMIT:
        # separable, 'valid': rows^T z cols, two float64 matrix products (4x faster than
        # float64 conv2d on a 400 x 400 view, 55 against 218 ms; 0.46 against 0.85 s at
        # 800 x 800; the same value to 1e-16); their cost grows as W^2 H, so larger images
        # take the convolutions
        rows, cols = _valid_filter(g, x.shape[-2]), _valid_filter(g, x.shape[-1])

        def blur(z: torch.Tensor) -> torch.Tensor:
            return rows.t() @ z @ cols

    else:
        gx, gy = g.reshape(1, 1, 1, -1), g.reshape(1, 1, -1, 1)

        def blur(z: torch.Tensor) -> torch.Tensor:
            return F.conv2d(F.conv2d(z[:, None], gx), gy)[:, 0]  # separable, 'valid'

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    sxx = torch.clamp(sxx, min=0.0)
    syy = torch.clamp(syy, min=0.0)
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return float(torch.mean(num / den))


def _valid_filter(g: torch.Tensor, size: int) -> torch.Tensor:
    """The banded matrix [size, size - len(g) + 1] whose product with a signal of `size`
    samples is its 'valid' correlation with the window g."""
    taps, out = len(g), size - len(g) + 1
    matrix = g.new_zeros(size, out)
    index = torch.arange(out, device=g.device)
    for k in range(taps):
        matrix[index + k, index] = g[k]
    return matrix


def to8b(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return (255 * np.clip(x, 0, 1)).astype(np.uint8)


def downscale_image(img: torch.Tensor, factor: int) -> torch.Tensor:
    """Area-average [H, W, C] by an integer factor (crops to a multiple of it)."""
    if factor <= 1:
        return img
    h, w = (img.shape[0] // factor) * factor, (img.shape[1] // factor) * factor
    x = img[:h, :w].permute(2, 0, 1)[None]
    return F.avg_pool2d(x, factor)[0].permute(1, 2, 0)


def error_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel absolute error averaged over channels, colour-mapped (uint8 [H, W, 3])."""
    err = np.abs(a - b).mean(-1)
    scale = max(float(np.percentile(err, 99)), 1e-6)
    return colormap(np.clip(err / scale, 0, 1))


def colormap(x: np.ndarray) -> np.ndarray:
    """Map [0,1] values [H, W] through matplotlib's turbo colour map -> uint8 [H, W, 3]."""
    from matplotlib import colormaps

    return (colormaps["turbo"](np.clip(x, 0, 1))[..., :3] * 255).astype(np.uint8)
