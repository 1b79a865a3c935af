"""PSNR and SSIM against closed forms and an independent straightforward implementation."""

from __future__ import annotations

import math

import numpy as np
import torch

from nerfcli.metrics import downscale_image, psnr, psnr_from_mse, ssim, to8b


def test_psnr_closed_form():
    a = torch.zeros(4, 4, 3)
    b = torch.full((4, 4, 3), 0.1)
    assert math.isclose(psnr(a, b), 20.0, rel_tol=1e-6)  # mse 0.01 -> 20 dB
    assert psnr_from_mse(0.0) == float("inf")


def test_ssim_identical_is_one():
    img = torch.rand(32, 40, 3, generator=torch.Generator().manual_seed(0))
    assert math.isclose(ssim(img, img), 1.0, rel_tol=1e-9)


def test_ssim_constant_images_closed_form():
    a = torch.full((20, 20, 3), 0.2)
    b = torch.full((20, 20, 3), 0.6)
    c1 = 0.01**2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)  # variances are zero
    assert math.isclose(ssim(a, b), expected, rel_tol=1e-6)


def _naive_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Independent implementation: explicit loops over every 11x11 window, one channel."""
    size, sigma = 11, 1.5
    coords = np.arange(size) - 5
    g1 = np.exp(-(coords**2) / (2 * sigma**2))
    w = np.outer(g1, g1)
    w /= w.sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(x.shape[0] - size + 1):
        for j in range(x.shape[1] - size + 1):
            px, py = x[i : i + size, j : j + size], y[i : i + size, j : j + size]
            mx, my = (w * px).sum(), (w * py).sum()
            vx = (w * (px - mx) ** 2).sum()
            vy = (w * (py - my) ** 2).sum()
            cov = (w * (px - mx) * (py - my)).sum()
            values.append(
                ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
            )
    return float(np.mean(values))


def test_ssim_matches_independent_implementation():
    rng = np.random.default_rng(3)
    x = rng.random((24, 20))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    expected = _naive_ssim(x, y)
    got = ssim(torch.from_numpy(x)[..., None], torch.from_numpy(y)[..., None])
    assert math.isclose(got, expected, rel_tol=1e-6)
    assert 0.0 < got < 1.0


def test_to8b_and_downscale():
    assert to8b(np.array([-1.0, 0.0, 0.5, 1.0, 2.0])).tolist() == [0, 0, 127, 255, 255]
    img = torch.arange(16, dtype=torch.float32).reshape(4, 4, 1)
    small = downscale_image(img, 2)
    assert small[..., 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]


def test_written_pngs_are_lossless_and_fast_compressed(tmp_path):
    """write_image_atomic's PNG: the pixels back exactly, nothing but the file left in the
    folder, and the zlib level it promises (a level-9 file of the same noise-free gradient is
    smaller, so the level is the one passed)."""
    import imageio.v3 as iio

    from nerfcli.data import images

    ramp = np.linspace(0, 255, 96 * 128 * 3).reshape(96, 128, 3).astype(np.uint8)
    path = tmp_path / "view.png"
    images.write_image_atomic(path, ramp)
    assert np.array_equal(iio.imread(path), ramp)
    assert [p.name for p in tmp_path.iterdir()] == ["view.png"]
    best = tmp_path / "best.png"
    iio.imwrite(best, ramp, extension=".png", compress_level=9)
    assert images.PNG_COMPRESS_LEVEL == 1
    assert path.stat().st_size > best.stat().st_size


def test_ssim_filters_large_and_small_images_alike(monkeypatch):
    """The banded products (images up to BANDED_LIMIT a side) and the convolutions (larger
    ones) give the same SSIM to 1e-12."""
    import nerfcli.metrics as metrics

    g = torch.Generator().manual_seed(4)
    a = torch.rand(37, 53, 3, generator=g)
    b = (a + 0.1 * torch.randn(37, 53, 3, generator=g)).clamp(0, 1)
    banded = ssim(a, b)
    monkeypatch.setattr(metrics, "BANDED_LIMIT", 16)
    convolved = ssim(a, b)
    assert math.isclose(banded, convolved, rel_tol=1e-12)
    assert 0.3 < banded < 0.99
