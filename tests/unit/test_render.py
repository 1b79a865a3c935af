"""Closed-form and property tests of the volume renderer."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from nerfcli.render.composite import (
    LAST_DELTA,
    alpha_from_density,
    composite,
    composite_grouped,
    composite_weights,
    sample_deltas,
    transmittance,
    weights_from_alpha,
)
from nerfcli.render.samplers import box_interval, sample_pdf, sample_points, stratified_samples


def test_transmittance_hand_computed():
    alpha = torch.tensor([[0.0, 0.3, 0.8, 0.8, 0.5]])
    # transmittance: [1.0, 1.0, 0.7, 0.14, 0.028]
    expected = torch.tensor([[1.0, 1.0, 0.7, 0.14, 0.028]])
    assert torch.allclose(transmittance(alpha), expected, atol=1e-6)
    # weights = T * alpha: [0, 0.3, 0.56, 0.112, 0.014]
    expected_w = torch.tensor([[0.0, 0.3, 0.56, 0.112, 0.014]])
    assert torch.allclose(weights_from_alpha(alpha), expected_w, atol=1e-6)


def test_single_opaque_sample_gets_weight_one():
    t_vals = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    sigma = torch.tensor([[0.0, 1e6, 5.0, 5.0]])
    rgb = torch.tensor([[[0.0, 0, 0], [0.2, 0.4, 0.6], [1, 1, 1], [1, 1, 1]]])
    out = composite(rgb, sigma, t_vals, torch.tensor([[0.0, 0.0, -1.0]]))
    assert torch.allclose(out.weights, torch.tensor([[0.0, 1.0, 0.0, 0.0]]), atol=1e-5)
    assert torch.allclose(out.rgb, torch.tensor([[0.2, 0.4, 0.6]]), atol=1e-5)
    assert math.isclose(float(out.depth), 2.0, rel_tol=1e-5)
    assert math.isclose(float(out.opacity), 1.0, rel_tol=1e-5)
    assert math.isclose(float(out.disparity), 0.5, rel_tol=1e-5)


def test_zero_density_gives_background():
    t_vals = torch.linspace(0, 1, 8)[None]
    sigma = torch.zeros(1, 8)
    rgb = torch.rand(1, 8, 3)
    d = torch.tensor([[0.0, 0.0, -1.0]])
    black = composite(rgb, sigma, t_vals, d)
    white = composite(rgb, sigma, t_vals, d, white_bkgd=True)
    assert torch.allclose(black.rgb, torch.zeros(1, 3))
    assert torch.allclose(white.rgb, torch.ones(1, 3))
    assert float(black.opacity) == 0.0


def test_constant_density_opacity_closed_form():
    sigma_value, length = 0.7, 2.5
    n = 64
    # samples over [0, L]; the last sample's interval is infinite, so give it zero density
    t_vals = torch.linspace(0.0, length, n + 1)[None]
    sigma = torch.full((1, n + 1), sigma_value)
    sigma[0, -1] = 0.0
    rgb = torch.ones(1, n + 1, 3)
    out = composite(rgb, sigma, t_vals, torch.tensor([[0.0, 0.0, -1.0]]))
    expected = 1.0 - math.exp(-sigma_value * length)
    assert math.isclose(float(out.opacity), expected, rel_tol=1e-5)


def test_deltas_scale_with_direction_norm():
    t_vals = torch.tensor([[0.0, 1.0, 3.0]])
    d = torch.tensor([[0.0, 3.0, 4.0]])  # |d| = 5
    deltas = sample_deltas(t_vals, d)
    assert torch.allclose(deltas[0, :2], torch.tensor([5.0, 10.0]))
    assert math.isclose(float(deltas[0, 2]), LAST_DELTA * 5.0, rel_tol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(2, 24),
    st.floats(0.0, 50.0),
    st.integers(0, 2**31 - 1),
)
def test_weights_bounded_and_transmittance_non_increasing(rays, samples, scale, seed):
    g = torch.Generator().manual_seed(seed)
    sigma = torch.rand(rays, samples, generator=g) * scale
    t_vals, _ = torch.sort(torch.rand(rays, samples, generator=g) * 4.0, -1)
    d = torch.randn(rays, 3, generator=g)
    out = composite(torch.rand(rays, samples, 3, generator=g), sigma, t_vals, d)
    assert (out.weights >= 0).all() and (out.weights <= 1 + 1e-6).all()
    assert (out.weights.sum(-1) <= 1 + 1e-5).all()
    alpha = 1 - torch.exp(-sigma * sample_deltas(t_vals, d))
    trans = transmittance(alpha)
    assert (trans[:, 1:] <= trans[:, :-1] + 1e-6).all()


def test_stratified_samples_stay_in_their_bins():
    g = torch.Generator().manual_seed(0)
    t = stratified_samples(2.0, 6.0, 100, 8, perturb=True, generator=g)
    edges = torch.linspace(2.0, 6.0, 8)
    mids = 0.5 * (edges[1:] + edges[:-1])
    lower = torch.cat([edges[:1], mids])
    upper = torch.cat([mids, edges[-1:]])
    assert ((t >= lower) & (t <= upper)).all()
    plain = stratified_samples(2.0, 6.0, 3, 8, perturb=False)
    assert torch.allclose(plain[0], edges)
    lindisp = stratified_samples(1.0, 4.0, 1, 3, perturb=False, lindisp=True)
    assert torch.allclose(1.0 / lindisp[0], torch.tensor([1.0, 0.625, 0.25]))


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 16), st.integers(1, 32), st.integers(0, 2**31 - 1), st.booleans())
def test_sample_pdf_sorted_and_inside_bins(bins, n, seed, deterministic):
    g = torch.Generator().manual_seed(seed)
    edges, _ = torch.sort(torch.rand(3, bins + 1, generator=g) * 10.0, -1)
    weights = torch.rand(3, bins, generator=g)
    samples = sample_pdf(edges, weights, n, deterministic, generator=g)
    assert samples.shape == (3, n)
    assert (samples >= edges[:, :1] - 1e-5).all() and (samples <= edges[:, -1:] + 1e-5).all()
    if deterministic:
        assert (samples[:, 1:] >= samples[:, :-1] - 1e-5).all()
    else:
        sorted_samples, _ = torch.sort(samples, -1)
        assert (sorted_samples[:, 1:] >= sorted_samples[:, :-1]).all()


def test_sample_pdf_concentrates_where_the_weights_are():
    edges = torch.linspace(0.0, 1.0, 11)[None]
    weights = torch.zeros(1, 10)
    weights[0, 6] = 1.0  # all mass in [0.6, 0.7]
    g = torch.Generator().manual_seed(1)
    samples = sample_pdf(edges, weights, 1000, deterministic=False, generator=g)
    inside = ((samples >= 0.6) & (samples <= 0.7)).float().mean()
    assert float(inside) > 0.95
    det = sample_pdf(edges, weights, 5, deterministic=True)
    assert (det[0, 1:-1] >= 0.6).all() and (det[0, 1:-1] <= 0.7).all()


def test_sample_pdf_uniform_weights_give_uniform_samples():
    edges = torch.linspace(0.0, 1.0, 5)[None]
    det = sample_pdf(edges, torch.ones(1, 4), 5, deterministic=True)
    assert np.allclose(det.numpy(), [[0.0, 0.25, 0.5, 0.75, 1.0]], atol=1e-4)


@pytest.mark.parametrize("rays, samples, groups", [(1, 1, 1), (7, 12, 3), (33, 40, 8)])
def test_grouped_composite_equals_expanding_the_colours(rays, samples, groups):
    """Piecewise-constant colour composited by group weights [R, K] gives what expanding the
    colours to every sample [R, S, 3] gives: values and gradients, white background too."""
    generator = torch.Generator().manual_seed(rays * 100 + samples)
    sigma = torch.rand(rays, samples, generator=generator) * 3
    t_vals = torch.sort(torch.rand(rays, samples, generator=generator), -1).values
    rays_d = torch.randn(rays, 3, generator=generator)
    group = torch.sort(torch.randint(0, groups, (rays, samples), generator=generator), -1).values
    colours = torch.rand(rays, groups, 3, generator=generator)
    upstream = torch.randn(rays, 3, generator=generator)
    results = []
    for grouped in (False, True):
        c = colours.clone().requires_grad_(True)
        s = sigma.clone().requires_grad_(True)
        weights = weights_from_alpha(alpha_from_density(s, sample_deltas(t_vals, rays_d)))
        if grouped:
            out = composite_grouped(weights, group, c, t_vals, white_bkgd=True)
        else:
            expanded = torch.gather(c, 1, group[..., None].expand(-1, -1, 3))  # [R, S, 3]
            out = composite_weights(weights, expanded, t_vals, white_bkgd=True)
        ((out.rgb * upstream).sum() + out.depth.sum()).backward()
        results.append((out.rgb, out.depth, out.opacity, c.grad, s.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_box_interval_is_the_part_of_the_ray_inside_the_box():
    """Points between t_in and t_out are inside the box and every other point of [near, far]
    is outside; a ray that misses gets the empty interval at near."""
    generator = torch.Generator().manual_seed(3)
    lo, hi = torch.tensor([-1.0, -0.5, -2.0]), torch.tensor([1.0, 0.5, 1.0])
    rays_o = torch.randn(500, 3, generator=generator) * 2.0
    rays_d = torch.randn(500, 3, generator=generator)
    rays_d[:10, 1] = 0.0  # parallel to a pair of faces
    near, far = 0.1, 4.0
    t_in, t_out = box_interval(rays_o, rays_d, lo, hi, near, far)  # [R], [R]
    assert bool((near <= t_in).all() and (t_in <= t_out).all() and (t_out <= far).all())
    t = torch.linspace(near, far, 2001)  # [T]
    points = rays_o[:, None] + t[None, :, None] * rays_d[:, None]  # [R, T, 3]
    eps = 1e-4
    inside = ((points >= lo + eps) & (points <= hi - eps)).all(-1)  # [R, T] strictly inside
    outside = ((points < lo - eps) | (points > hi + eps)).any(-1)  # [R, T] clearly outside
    hits = t_out > t_in  # [R]
    within = hits[:, None] & (t[None] >= t_in[:, None]) & (t[None] <= t_out[:, None])  # [R, T]
    assert not bool((inside & ~within).any())  # nothing inside is left out of the interval
    assert not bool((outside & within).any())  # nothing in the interval is outside
    assert 20 < int(hits.sum()) < 480  # both cases occur
    assert bool((t_in[~hits] == near).all())


def test_tensorf_world_samples_stay_inside_the_box():
    from nerfcli.data.rays import Rays
    from nerfcli.models.config import build_config
    from nerfcli.models.registry import build_model

    model = build_model(
        build_config(
            overrides=[
                "data.ndc=false",
                "data.llff.spherify=true",
                "model.tensorf.grid_init=[8,8,8]",
                "model.tensorf.grid_final=[8,8,8]",
                "model.tensorf.upsample_steps=[]",
            ]
        )
    )
    generator = torch.Generator().manual_seed(0)
    origins = torch.nn.functional.normalize(torch.randn(64, 3, generator=generator), dim=-1) * 3
    directions = -origins + 0.3 * torch.randn(64, 3, generator=generator)  # roughly inward
    rays = Rays(origins, directions, torch.nn.functional.normalize(directions, dim=-1))
    t_vals = model.sample_depths(rays, 0.5, 6.0, train=True, generator=generator)  # [R, S]
    points = sample_points(origins, directions, t_vals)  # [R, S, 3]
    hits = t_vals[:, -1] > t_vals[:, 0]
    assert int(hits.sum()) > 32
    assert bool((points[hits].abs() <= 1.0 + 1e-4).all())


def test_apply_background_composites_every_pass():
    from nerfcli.render.composite import RenderResult, apply_background

    result = RenderResult(
        rgb=torch.tensor([[0.2, 0.2, 0.2]]),
        depth=torch.tensor([1.0]),
        disparity=torch.tensor([1.0]),
        opacity=torch.tensor([0.25]),
        extras={
            "rgb_coarse": torch.tensor([[0.0, 0.1, 0.0]]),
            "opacity_coarse": torch.tensor([0.5]),
        },
    )
    colour = torch.tensor([[1.0, 0.0, 0.5]])
    out = apply_background(result, colour)
    torch.testing.assert_close(out.rgb, torch.tensor([[0.95, 0.2, 0.575]]))
    torch.testing.assert_close(out.extras["rgb_coarse"], torch.tensor([[0.5, 0.1, 0.25]]))


# ----------------------------------------------------------------------------- chunked images


def test_render_in_chunks_with_workers_matches_one_thread():
    """Chunks shared out to worker threads: the same result in the same order, each worker
    on one OpenMP thread (the count is per thread), the caller's grad mode and thread count
    kept."""
    import threading

    from nerfcli.data.rays import Rays
    from nerfcli.render.composite import RenderResult
    from nerfcli.render.image import render_in_chunks

    generator = torch.Generator().manual_seed(0)
    rays = Rays(*(torch.randn(37, 3, generator=generator) for _ in range(3)))
    seen: list[tuple[str, int, bool]] = []
    sizes: list[int] = []  # rays of each chunk

    def render_fn(batch: Rays) -> RenderResult:
        seen.append(
            (threading.current_thread().name, torch.get_num_threads(), torch.is_grad_enabled())
        )
        sizes.append(len(batch))
        value = torch.tanh(batch.origins * 2.0 + batch.directions)  # [R, 3]
        return RenderResult(value, value[:, 0], value[:, 1], value[:, 2], {"x": value[:, :1]})

    threads_before = torch.get_num_threads()
    serial = render_in_chunks(render_fn, rays, 5, workers=1)
    seen.clear()
    with torch.no_grad():
        shared = render_in_chunks(render_fn, rays, 5, workers=2)
    for name in ("rgb", "depth", "disparity", "opacity"):
        torch.testing.assert_close(getattr(shared, name), getattr(serial, name), rtol=0, atol=0)
    torch.testing.assert_close(shared.extras["x"], serial.extras["x"], rtol=0, atol=0)
    assert len(seen) == 8  # ceil(37 / 5)
    assert all(threads == 1 and not grad for _, threads, grad in seen)
    assert threading.current_thread().name not in {name for name, _, _ in seen}
    assert torch.get_num_threads() == threads_before  # the caller's count is restored
    sizes.clear()
    halves = render_in_chunks(render_fn, rays, 30, workers=2)  # one worker each: not 30 + 7
    assert sorted(sizes) == [18, 19]
    torch.testing.assert_close(halves.rgb, serial.rgb, rtol=0, atol=0)
