"""OpenCV radial-tangential distortion: closed forms, the Newton inverse over the whole fox image
with fox's coefficients, its Jacobian against autograd, shapes and dtypes, and a hypothesis
round-trip property."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfcli.data.distortion import (
    _distort,
    _residual_and_jacobian,
    distort,
    fisheye_error,
    undistort,
)
from nerfcli.errors import DataError

# instant-ngp's fox capture (transforms.json): fl_x fl_y cx cy w h and OpenCV k1 k2 p1 p2.
FOX = dict(fx=1375.52, fy=1374.49, cx=554.558, cy=965.268, w=1080, h=1920)
FOX_COEFFS = torch.tensor([0.0578421, -0.0805099, -0.000980296, 0.00015575, 0.0, 0.0])


def fox_pixels(dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised (y down) coordinates of every pixel centre of the fox image, [H, W] each."""
    cols = torch.arange(FOX["w"], dtype=dtype) + 0.5
    rows = torch.arange(FOX["h"], dtype=dtype) + 0.5
    j, i = torch.meshgrid(rows, cols, indexing="ij")
    return (i - FOX["cx"]) / FOX["fx"], (j - FOX["cy"]) / FOX["fy"]


def test_distort_closed_form_at_one_point():
    k1, k2, p1, p2, k3, k4 = 0.1, -0.05, 0.001, -0.002, 0.01, 0.003
    x, y = 0.3, -0.2
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3 + k4 * r2**4
    want_x = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    want_y = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    coeffs = torch.tensor([k1, k2, p1, p2, k3, k4])
    xd, yd = distort(
        torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64), coeffs
    )
    assert xd.item() == pytest.approx(want_x, abs=1e-7)
    assert yd.item() == pytest.approx(want_y, abs=1e-7)


def test_zero_coefficients_are_the_identity():
    x, y = torch.randn(7), torch.randn(7)
    xd, yd = distort(x, y, torch.zeros(6))
    assert torch.equal(xd, x) and torch.equal(yd, y)
    xu, yu = undistort(x, y, torch.zeros(6))
    assert torch.equal(xu, x) and torch.equal(yu, y)


def test_principal_point_is_fixed():
    xu, yu = undistort(torch.zeros(1), torch.zeros(1), FOX_COEFFS)
    assert xu.item() == 0.0 and yu.item() == 0.0


def test_undistort_inverts_distort_over_the_fox_image_float32():
    x, y = fox_pixels(torch.float32)
    xd, yd = distort(x, y, FOX_COEFFS)
    xu, yu = undistort(xd, yd, FOX_COEFFS)
    assert xu.dtype == torch.float32 and xu.shape == (FOX["h"], FOX["w"])
    assert (xu - x).abs().max().item() < 1e-6
    assert (yu - y).abs().max().item() < 1e-6
    assert (xd - x).abs().max().item() > 1e-3  # the lens does distort: the test can fail


def test_newton_converges_below_1e9_for_every_fox_pixel():
    xd, yd = fox_pixels(torch.float64)  # the photo's pixels are the distorted points
    x, y = undistort(xd, yd, FOX_COEFFS)
    rx, ry = distort(x, y, FOX_COEFFS)
    assert max((rx - xd).abs().max().item(), (ry - yd).abs().max().item()) < 1e-9
    # fewer iterations are measurably worse: the fixed count is what converges
    x1, y1 = undistort(xd, yd, FOX_COEFFS, iterations=1)
    rx1, _ = distort(x1, y1, FOX_COEFFS)
    assert (rx1 - xd).abs().max().item() > 1e-9


def test_jacobian_matches_autograd():
    coeffs = torch.tensor([0.2, -0.1, 0.01, -0.02, 0.05, 0.01], dtype=torch.float64)
    c = tuple(coeffs[i] for i in range(6))
    point = torch.tensor([0.35, -0.25], dtype=torch.float64)

    def f(p):
        return torch.stack(_distort(p[0], p[1], c))

    auto = torch.autograd.functional.jacobian(f, point)
    zero = torch.zeros((), dtype=torch.float64)
    _, _, fx_x, fx_y, fy_x, fy_y = _residual_and_jacobian(point[0], point[1], zero, zero, c)
    ours = torch.tensor([[fx_x, fx_y], [fy_x, fy_y]], dtype=torch.float64)
    assert torch.allclose(ours, auto, atol=1e-12)


@pytest.mark.parametrize("shape", [(), (2,), (1, 2), (3, 4, 5)])
def test_any_shape_and_dtype_round_trip(shape):
    torch.manual_seed(0)
    x, y = 0.3 * torch.randn(shape), 0.3 * torch.randn(shape)
    xd, yd = distort(x, y, FOX_COEFFS)
    xu, yu = undistort(xd, yd, FOX_COEFFS)
    assert xu.shape == shape and xu.dtype == torch.float32 and xd.dtype == torch.float32
    assert torch.allclose(xu, x, atol=1e-6) and torch.allclose(yu, y, atol=1e-6)
    x64 = x.double()
    assert distort(x64, y.double(), FOX_COEFFS)[0].dtype == torch.float64


def test_per_point_coefficients_broadcast():
    coeffs = torch.stack([FOX_COEFFS, torch.zeros(6)])  # [2, 6]
    x = torch.tensor([0.4, 0.4])
    y = torch.tensor([0.3, 0.3])
    xd, yd = distort(x, y, coeffs)
    assert xd[1] == x[1] and xd[0] != x[0]
    xu, _ = undistort(xd, yd, coeffs)
    assert torch.allclose(xu, x, atol=1e-6)


def test_results_do_not_depend_on_the_batch():
    xd, yd = fox_pixels(torch.float32)
    full_x, _ = undistort(xd, yd, FOX_COEFFS)
    part_x, _ = undistort(xd[100:103, 7:9], yd[100:103, 7:9], FOX_COEFFS)
    assert torch.equal(full_x[100:103, 7:9], part_x)


def test_bad_coefficient_shape_is_refused():
    with pytest.raises(ValueError, match="shape"):
        distort(torch.zeros(2), torch.zeros(2), torch.zeros(4))


def test_fold_over_keeps_finite_values():
    # strong barrel distortion folds the image beyond r ~ 0.8: no NaN, no inf
    coeffs = torch.tensor([-0.5, 0.0, 0.0, 0.0, 0.0, 0.0])
    xd = torch.linspace(-3, 3, 101)
    x, y = undistort(xd, torch.zeros_like(xd), coeffs)
    assert torch.isfinite(x).all() and torch.isfinite(y).all()


def test_fisheye_is_refused_with_a_one_line_fix():
    error = fisheye_error("/data/x/transforms.json")
    assert isinstance(error, DataError)
    text = str(error)
    assert "\n" not in text and "transforms.json" in text and "image_undistorter" in text


@settings(max_examples=60, deadline=None)
@given(
    k1=st.floats(-0.2, 0.2),
    k2=st.floats(-0.1, 0.1),
    p1=st.floats(-0.01, 0.01),
    p2=st.floats(-0.01, 0.01),
    k3=st.floats(-0.05, 0.05),
    radius=st.floats(0.0, 0.7),
    angle=st.floats(0.0, 2 * math.pi),
)
def test_round_trip_property(k1, k2, p1, p2, k3, radius, angle):
    coeffs = torch.tensor([k1, k2, p1, p2, k3, 0.0], dtype=torch.float64)
    x = torch.tensor([radius * math.cos(angle)], dtype=torch.float64)
    y = torch.tensor([radius * math.sin(angle)], dtype=torch.float64)
    xd, yd = distort(x, y, coeffs)
    xu, yu = undistort(xd, yd, coeffs)
    assert np.allclose([xu.item(), yu.item()], [x.item(), y.item()], atol=1e-9)
