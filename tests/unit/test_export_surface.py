"""The median depth of nerf export (nerfcli.export.surface) on densities with closed-form
transmittance: piecewise constant along z, sampled finely, so the render's quadrature is exact
and the median depth has a formula."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfcli.data.rays import Rays
from nerfcli.export import surface

SPEED = 2.0  # |d|: t runs at half the ray's length
T_ROW = torch.linspace(0.0, 10.0, 1001)  # sample depths, 0.01 apart


def _model() -> SimpleNamespace:
    return SimpleNamespace(sample_depths=lambda rays, near, far, train: T_ROW.expand(len(rays), -1))


def _rays(count: int = 1) -> Rays:
    direction = torch.tensor([[0.0, 0.0, SPEED]]).expand(count, 3)
    return Rays(torch.zeros(count, 3), direction, direction / SPEED)


def _layers(layers: list[tuple[float, float, float]]):
    """density_at replacement: `density` on t in [start, end) for each (start, end, density)
    (t = z / SPEED), read at the sample's own t (the quadrature holds it over the interval)."""

    def density_at(model, points):
        t = points[:, 2] / SPEED + 1e-6  # the sample's t, off the boundary
        sigma = torch.zeros(len(points))
        for start, end, density in layers:
            sigma = torch.where((t >= start) & (t < end), torch.full_like(sigma, density), sigma)
        return sigma

    return density_at


@settings(max_examples=25, deadline=None)
@given(
    start=st.integers(50, 700).map(lambda i: i / 100.0),
    density=st.floats(0.5, 200.0),
)
def test_median_of_an_opaque_half_space(start: float, density: float) -> None:
    # T(t) = exp(-density * SPEED * (t - start)) past `start`: 1/2 at start + ln 2 / (density SPEED)
    original = surface.density_at
    surface.density_at = _layers([(start, 99.0, density)])
    try:
        depth, sigma, opacity = surface.crossings(_model(), _rays(), 0.0, 10.0)
    finally:
        surface.density_at = original
    expected = start + math.log(2.0) / (density * SPEED)
    assert abs(float(depth[0]) - expected) < 1e-4
    assert abs(float(sigma[0]) - density) < 1e-5 * density and float(opacity[0]) > 0.99


def test_a_floater_does_not_pull_the_median_off_the_surface(monkeypatch) -> None:
    # a floater of opacity 0.3 over t in [1, 1.1], an opaque surface from t = 3
    floater = -math.log(0.7) / (0.1 * SPEED)
    monkeypatch.setattr(surface, "density_at", _layers([(1.0, 1.1, floater), (3.0, 99.0, 50.0)]))
    depth, _, _ = surface.crossings(_model(), _rays(), 0.0, 10.0)
    # the surface takes T from 0.7 to 0.5
    assert abs(float(depth[0]) - (3.0 + math.log(0.7 / 0.5) / (50.0 * SPEED))) < 1e-4
    # the expected depth, 0.3 * ~1.05 + 0.7 * ~3.01, lies 0.6 in front of the surface
    t = T_ROW
    sigma = surface.density_at(None, torch.stack([0 * t, 0 * t, SPEED * t], -1))
    delta = torch.cat([t[1:] - t[:-1], torch.tensor([1e10])]) * SPEED
    alpha = 1 - torch.exp(-sigma * delta)
    weights = alpha * torch.cumprod(torch.cat([torch.ones(1), 1 - alpha[:-1]]), 0)
    assert float((weights * t).sum()) < float(depth[0]) - 0.5


def test_half_transparent_rays_take_the_median_of_their_own_opacity(monkeypatch) -> None:
    # only the floater (opacity 0.3): the median is where T = 1 - 0.3 / 2 = 0.85
    floater = -math.log(0.7) / (0.1 * SPEED)
    monkeypatch.setattr(surface, "density_at", _layers([(1.0, 1.1, floater)]))
    depth, sigma, opacity = surface.crossings(_model(), _rays(3), 0.0, 10.0)
    assert torch.allclose(opacity, torch.full((3,), 0.3), atol=1e-5)
    expected = 1.0 + math.log(1 / 0.85) / (floater * SPEED)
    assert torch.allclose(depth, torch.full((3,), expected), atol=1e-4)
    # no density at all: no median, no density
    monkeypatch.setattr(surface, "density_at", _layers([]))
    depth, sigma, opacity = surface.crossings(_model(), _rays(2), 0.0, 10.0)
    assert torch.isnan(depth).all() and (sigma == 0).all() and (opacity == 0).all()
