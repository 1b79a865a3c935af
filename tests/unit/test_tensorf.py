"""TensoRF-VM: fast paths against their plain references, upsampling, alpha mask, checkpoints,
regularisers and the device profiles."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfcli.config import merge_dicts
from nerfcli.data.rays import Rays, make_rays
from nerfcli.errors import ConfigError, DataError
from nerfcli.models.config import build_config
from nerfcli.models.reference import (
    appearance_reference,
    density_feature_reference,
    density_slices_reference,
    render_rays_reference,
    total_variation_reference,
    trilinear_gather_reference,
)
from nerfcli.models.registry import build_model
from nerfcli.models.tensorf import (
    CUBE_BOX,
    NDC_BOX,
    TensorfModel,
    device_profile,
    grid_schedule,
    total_variation,
    trilinear_gather,
)
from nerfcli.models.tensorf import field as tensorf_field
from nerfcli.models.tensorf.losses import tv_loss

BATCH_SHAPES = [(), (2,), (1, 2)]  # leading batch dimensions, as gsplat's tests


def tiny_config(*overrides: str, ndc: bool = True):
    base = [
        "model.tensorf.grid_init=[11,9,7]",
        "model.tensorf.grid_final=[23,19,13]",
        "model.tensorf.upsample_steps=[10,20]",
        "model.tensorf.alpha_mask_steps=[15]",
        "model.tensorf.density_components=[4,2,2]",
        "model.tensorf.appearance_components=[6,3,3]",
        "model.tensorf.app_dim=5",
        "model.tensorf.decoder_width=16",
        "model.tensorf.view_pe=1",
        "model.tensorf.feature_pe=1",
    ]
    if not ndc:
        base += ["data.ndc=false", "data.llff.spherify=true"]
    return build_config(overrides=base + list(overrides))


def make_model(*overrides: str, ndc: bool = True, seed: int = 0) -> TensorfModel:
    torch.manual_seed(seed)
    return build_model(tiny_config(*overrides, ndc=ndc))


def random_coords(count: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, generator=generator) * 2.0 - 1.0  # [P, 3] inside the box


def ndc_rays(count: int, seed: int = 2) -> Rays:
    """Rays of a small forward-facing camera, in NDC."""
    rays = make_rays(12, 16, 14.0, torch.eye(4)[:3], ndc=True).reshape(-1)
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, len(rays), (count,), generator=generator)
    return rays[index]


def grads(parameters) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in parameters]


def density_reference(model: TensorfModel, coords: torch.Tensor) -> torch.Tensor:
    return density_feature_reference(
        list(model.field.density_planes), list(model.field.density_lines), coords
    )


def app_reference(model: TensorfModel, coords: torch.Tensor) -> torch.Tensor:
    return appearance_reference(
        list(model.field.app_planes), list(model.field.app_lines), model.field.basis, coords
    )


# ----------------------------------------------------------------------------- fast == reference


def batched_coords(batch: tuple[int, ...], count: int, seed: int = 1) -> torch.Tensor:
    """Coordinates [*batch, P, 3] inside the box."""
    return random_coords(math.prod(batch) * count, seed).view(*batch, count, 3)


@pytest.mark.parametrize("batch", BATCH_SHAPES)
@pytest.mark.parametrize("count", [1, 7, 300])
@pytest.mark.parametrize("path", ["volume", "direct"])
def test_density_fast_matches_reference_values_and_gradients(batch, count, path, monkeypatch):
    # under grad: the dense volume's trilinear reads, or the factors read directly (few points)
    monkeypatch.setattr(tensorf_field, "DIRECT_POINTS_RATIO", 10**9 if path == "volume" else 0)
    model = make_model()
    coords = batched_coords(batch, count)
    params = [*model.field.density_planes, *model.field.density_lines]
    reference = density_reference(model, coords)  # [*batch, P]
    weights = torch.randn(reference.shape)
    (reference * weights).sum().backward()
    grads_reference = grads(params)
    model.zero_grad()
    calls = []
    monkeypatch.setattr(model.field, "density_direct", lambda c: calls.append(1) or direct(c))
    direct = type(model.field).density_direct.__get__(model.field)
    fast = model.field.density_feature(coords)
    assert bool(calls) == (path == "direct")
    (fast * weights).sum().backward()
    assert fast.shape == (*batch, count)
    torch.testing.assert_close(fast, reference, atol=1e-6, rtol=1e-5)
    for a, b in zip(grads(params), grads_reference):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    with torch.no_grad():  # the no-grad path: one grid_sample of the (cached) volume
        torch.testing.assert_close(
            model.field.density_feature(coords), reference, atol=1e-6, rtol=1e-5
        )


@pytest.mark.parametrize("batch", BATCH_SHAPES)
@pytest.mark.parametrize("count", [1, 5, 257])
@pytest.mark.parametrize("grid", ["[11,9,7]", "[8,8,8]", "[8,8,5]"])
def test_appearance_fast_matches_reference_values_and_gradients(batch, count, grid):
    # [11, 9, 7]: three plane sizes (three batches); [8, 8, 8]: one batch; [8, 8, 5]: xy alone,
    # xz and yz together.
    model = make_model(f"model.tensorf.grid_init={grid}")
    coords = batched_coords(batch, count, seed=count)
    params = [*model.field.app_planes, *model.field.app_lines, *model.field.basis.parameters()]
    reference = app_reference(model, coords)  # [P, app_dim]
    upstream = torch.randn_like(reference)
    (reference * upstream).sum().backward()
    grads_reference = grads(params)
    model.zero_grad()
    fast = model.field.appearance(coords)
    (fast * upstream).sum().backward()
    assert fast.shape == (*batch, count, 5)
    torch.testing.assert_close(fast, reference, atol=1e-6, rtol=1e-5)
    for a, b in zip(grads(params), grads_reference):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("count", [1, 16, 64])
def test_render_fast_matches_reference_without_threshold(count):
    """With the weight threshold off, the fast render is the reference render: same values
    and the same gradients for every parameter."""
    model = make_model("model.tensorf.colour_samples=0", "model.tensorf.weight_threshold=-1")
    rays = ndc_rays(count)
    reference = render_rays_reference(model, rays, 0.0, 1.0, train=False)
    upstream = torch.randn(count, 3)
    (reference.rgb * upstream).sum().backward()
    grads_reference = grads(model.parameters())
    model.zero_grad()
    fast = model.render_rays(rays, 0.0, 1.0, train=False)
    (fast.rgb * upstream).sum().backward()
    torch.testing.assert_close(fast.rgb, reference.rgb, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fast.depth, reference.depth, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fast.opacity, reference.opacity, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads(model.parameters()), grads_reference):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_render_threshold_error_is_bounded():
    """Skipped samples each weigh at most weight_threshold, so colour moves by at most
    samples * threshold (colours are in [0, 1])."""
    threshold = 1e-3
    model = make_model(
        "model.tensorf.colour_samples=0", f"model.tensorf.weight_threshold={threshold}"
    )
    rays = ndc_rays(64)
    with torch.no_grad():
        reference = render_rays_reference(model, rays, 0.0, 1.0, train=False)
        fast = model.render_rays(rays, 0.0, 1.0, train=False)
    bound = model.num_samples(0.0, 1.0) * threshold
    assert float((fast.rgb - reference.rgb).abs().max()) <= bound
    torch.testing.assert_close(fast.opacity, reference.opacity)


def test_render_fast_matches_reference_in_world_coordinates():
    """Spherified scenes take the general (trilinear) density path."""
    model = make_model(
        "model.tensorf.colour_samples=0", "model.tensorf.weight_threshold=-1", ndc=False
    )
    c2w = torch.eye(4)[:3].clone()
    c2w[:, 3] = torch.tensor([0.2, -0.1, 1.5])
    rays = make_rays(6, 8, 7.0, c2w, ndc=False).reshape(-1)
    reference = render_rays_reference(model, rays, 0.2, 3.0, train=False)
    upstream = torch.randn(48, 3)
    (reference.rgb * upstream).sum().backward()
    grads_reference = grads(model.parameters())
    model.zero_grad()
    fast = model.render_rays(rays, 0.2, 3.0, train=False)
    (fast.rgb * upstream).sum().backward()
    # the camera is outside the box and every ray meets it: all samples lie inside the box
    assert model.last_sample_counts[1] == model.last_sample_counts[0]
    torch.testing.assert_close(fast.rgb, reference.rgb, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads(model.parameters()), grads_reference):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("count", [1, 33])
def test_density_slices_match_reference(count):
    """NDC rays share the z of each sample: the slice path equals trilinear interpolation."""
    model = make_model()
    rays = ndc_rays(count, seed=count)
    t_row = torch.linspace(0.0, 1.0, 9)
    sigma = model.field.density_slices(rays, t_row)  # [R, S]
    upstream = torch.rand_like(sigma)
    (sigma * upstream).sum().backward()
    params = [*model.field.density_planes, *model.field.density_lines]
    grads_fast = grads(params)
    model.zero_grad()
    expected = density_slices_reference(model, rays, t_row)  # [R, S]
    (expected * upstream).sum().backward()
    assert bool((expected == 0).any()) and bool((expected > 0).any())  # some samples outside
    torch.testing.assert_close(sigma, expected, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads_fast, grads(params)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def constant_colour_model(**kwargs) -> TensorfModel:
    """Appearance factors constant in space: colour only depends on the view direction."""
    model = make_model(*[f"model.tensorf.{k}={v}" for k, v in kwargs.items()])
    with torch.no_grad():
        for factor in [*model.field.app_planes, *model.field.app_lines]:
            factor.copy_(
                torch.linspace(0.2, 0.9, factor.shape[1]).view(1, -1, 1, 1).expand_as(factor)
            )
    return model


def test_colour_quantiles_exact_when_colour_is_constant_along_rays():
    model = constant_colour_model(colour_samples=3)
    rays = ndc_rays(40)
    reference = render_rays_reference(model, rays, 0.0, 1.0, train=False)
    upstream = torch.randn(40, 3)
    (reference.rgb * upstream).sum().backward()
    params = [
        *model.field.density_planes,
        *model.field.density_lines,
        *model.field.decoder.parameters(),
    ]
    grads_reference = grads(params)
    model.zero_grad()
    fast = model.render_rays(rays, 0.0, 1.0, train=False)
    (fast.rgb * upstream).sum().backward()
    assert model.last_sample_counts[2] <= 3 * 40  # at most K colour evaluations per ray
    torch.testing.assert_close(fast.rgb, reference.rgb, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fast.depth, reference.depth, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads(params), grads_reference):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_colour_quantile_error_shrinks_with_more_quantiles():
    rays = ndc_rays(64)
    errors = []
    for count in (1, 4, 64):
        model = make_model(f"model.tensorf.colour_samples={count}")
        with torch.no_grad():
            reference = render_rays_reference(model, rays, 0.0, 1.0, train=False)
            fast = model.render_rays(rays, 0.0, 1.0, train=False)
        errors.append(float((fast.rgb - reference.rgb).abs().mean()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02


@pytest.mark.parametrize("batch", BATCH_SHAPES)
@pytest.mark.parametrize("shape", [(5, 4, 6), (2, 2, 2), (1, 3, 4)])
def test_trilinear_gather_matches_reference_values_and_gradients(batch, shape):
    volume = torch.randn(shape, requires_grad=True)  # [Rz, Ry, Rx]
    coords = (batched_coords(batch, 50) * 0.999).requires_grad_()  # inside: coord grads exist
    upstream = torch.randn(*batch, 50)
    reference = trilinear_gather_reference(volume, coords)
    (reference * upstream).sum().backward()
    grad_volume, grad_coords = volume.grad.clone(), coords.grad.clone()
    volume.grad = coords.grad = None
    fast = trilinear_gather(volume, coords)
    (fast * upstream).sum().backward()
    assert fast.shape == (*batch, 50)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(volume.grad, grad_volume, atol=1e-5, rtol=1e-5)
    # along an axis of one vertex there is no slope; grid_sample and the gather agree elsewhere
    axes = [i for i, size in enumerate(reversed(shape)) if size > 1]
    torch.testing.assert_close(coords.grad[..., axes], grad_coords[..., axes], atol=1e-4, rtol=1e-4)


def test_trilinear_gather_clamps_coordinates_outside_the_box():
    volume = torch.randn(4, 5, 6)
    coords = torch.tensor([[1.5, -2.0, 0.3], [-1.0, 1.0, 7.0]])
    expected = trilinear_gather(volume, coords.clamp(-1.0, 1.0))
    torch.testing.assert_close(trilinear_gather(volume, coords), expected)
    torch.testing.assert_close(trilinear_gather_reference(volume, coords), expected)


def test_trilinear_gather_reproduces_a_linear_field_and_vertices():
    rz, ry, rx = 5, 4, 6
    z, y, x = torch.meshgrid(
        torch.linspace(-1, 1, rz),
        torch.linspace(-1, 1, ry),
        torch.linspace(-1, 1, rx),
        indexing="ij",
    )
    volume = 2.0 * x - 3.0 * y + 0.5 * z + 1.0  # [Rz, Ry, Rx]
    coords = random_coords(100)
    expected = 2.0 * coords[:, 0] - 3.0 * coords[:, 1] + 0.5 * coords[:, 2] + 1.0
    torch.testing.assert_close(trilinear_gather(volume, coords), expected, atol=1e-5, rtol=0)
    # The far corner vertex (x = y = z = 1) is read exactly.
    corner = torch.ones(1, 3)
    assert float(trilinear_gather(volume, corner)[0]) == pytest.approx(float(volume[-1, -1, -1]))


def test_density_volume_is_the_field_at_grid_vertices():
    model = make_model()
    rx, ry, rz = model.field.resolution
    volume = model.field.density_volume().detach()  # [Rz, Ry, Rx]
    k, j, i = 3, 2, 5
    coords = torch.tensor([[i / (rx - 1), j / (ry - 1), k / (rz - 1)]]) * 2.0 - 1.0
    with torch.no_grad():
        expected = density_reference(model, coords)[0]
    assert float(volume[k, j, i]) == pytest.approx(float(expected), abs=1e-6)


# ----------------------------------------------------------------------------- upsampling


def smooth_model() -> TensorfModel:
    """Factors that are low-frequency functions of position, so resampling is nearly exact."""
    model = make_model()
    with torch.no_grad():
        for planes, lines in (
            (model.field.density_planes, model.field.density_lines),
            (model.field.app_planes, model.field.app_lines),
        ):
            for plane in planes:
                channels, height, width = plane.shape[1:]
                v = torch.linspace(-1, 1, height)[:, None]
                u = torch.linspace(-1, 1, width)[None, :]
                for c in range(channels):
                    plane[0, c] = torch.cos(0.7 * u + 0.3 * c) * torch.sin(0.5 * v + 1.0 + c)
            for line in lines:
                channels, length = line.shape[1:3]
                w = torch.linspace(-1, 1, length)
                for c in range(channels):
                    line[0, c, :, 0] = 0.5 + 0.3 * torch.sin(0.8 * w + c)
    return model


def test_upsampling_preserves_the_represented_field():
    model = smooth_model()
    coords = random_coords(500)
    with torch.no_grad():
        density_before = density_reference(model, coords)
        app_before = app_reference(model, coords)
        model.field.upsample((23, 19, 13))
        density_after = density_reference(model, coords)
        app_after = app_reference(model, coords)
    assert model.field.resolution == (23, 19, 13)
    assert model.field.density_planes[0].shape[2:] == (19, 23)
    assert model.field.density_lines[0].shape[2] == 13
    scale = float(density_before.abs().max())
    assert float((density_after - density_before).abs().max()) < 0.02 * scale
    torch.testing.assert_close(
        app_after, app_before, atol=0.02 * float(app_before.abs().max()), rtol=0
    )


def test_upsampling_a_trilinear_field_at_its_vertices_is_exact():
    """New grid vertices that coincide with old ones keep their value exactly (11 -> 21 puts
    an old vertex at every other new one)."""
    model = make_model()
    before = model.field.density_volume().detach()  # [7, 9, 11]
    model.field.upsample((21, 17, 13))
    after = model.field.density_volume().detach()  # [13, 17, 21]
    torch.testing.assert_close(after[::2, ::2, ::2], before, atol=1e-6, rtol=1e-5)


def test_before_step_follows_the_schedule():
    model = make_model()
    schedule = grid_schedule((11, 9, 7), (23, 19, 13), 2)
    assert schedule[0] == (11, 9, 7) and schedule[-1] == (23, 19, 13)
    assert model.before_step(0) is False
    assert model.before_step(10) is True
    assert model.field.resolution == schedule[1]
    assert model.before_step(15) is False  # alpha mask only: parameters unchanged
    assert model.field.alpha_mask.numel() == math.prod(r - 1 for r in schedule[1])
    assert model.before_step(20) is True
    assert model.field.resolution == (23, 19, 13)
    # the mask follows the grid after an upsample
    assert tuple(model.field.alpha_mask.shape) == (12, 18, 22)


def test_num_samples_follows_the_grid_in_ndc():
    model = make_model("model.tensorf.step_ratio=0.5")
    assert model.num_samples(0.0, 1.0) == math.ceil((7 - 1) / 0.5) + 1
    capped = make_model("model.tensorf.max_samples=5")
    assert capped.num_samples(0.0, 1.0) == 5


# ----------------------------------------------------------------------------- alpha mask


def blob_model(seed: int) -> TensorfModel:
    """Density in a few random blobs, empty elsewhere (so the mask has something to drop)."""
    model = make_model("model.tensorf.density_activation=relu", seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for plane, line in zip(model.field.density_planes, model.field.density_lines):
            plane.copy_(torch.randn(plane.shape, generator=generator) - 1.0)
            line.copy_(torch.rand(line.shape, generator=generator))
            plane[0, 0, 2, 3] = 4.0  # at least one dense spot
            line[0, 0, 3, 0] = 1.0
    return model


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_alpha_mask_never_drops_significant_density(seed):
    model = blob_model(seed)
    model.update_alpha_mask()
    assert 0.0 < model.field.occupancy() < 1.0
    coords = random_coords(4000, seed=seed)
    with torch.no_grad():
        sigma = model.field.activate_density(density_reference(model, coords))
    alpha = 1.0 - torch.exp(-sigma * model.field.mask_step())
    significant = alpha > model.cfg.alpha_mask_threshold
    assert bool(model.field.alpha_mask_lookup(coords)[significant].all())


def test_alpha_mask_keeps_rendering_unchanged_for_significant_samples():
    model = blob_model(3)
    rays = ndc_rays(64)
    with torch.no_grad():
        before = model.render_rays(rays, 0.0, 1.0, train=False)
        model.update_alpha_mask()
        after = model.render_rays(rays, 0.0, 1.0, train=False)
    # dropped samples had alpha below 1e-4 each
    assert float((after.rgb - before.rgb).abs().max()) < model.num_samples(0.0, 1.0) * 1e-4


# ----------------------------------------------------------------------------- checkpoints


def test_adapt_to_state_dict_round_trip():
    model = make_model()
    model.before_step(10)  # upsample
    model.before_step(15)  # alpha mask
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = make_model(seed=5)
    assert fresh.field.resolution != model.field.resolution
    fresh.adapt_to_state_dict(state)
    fresh.load_state_dict(state)
    assert fresh.field.resolution == model.field.resolution
    rays = ndc_rays(32)
    with torch.no_grad():
        a = model.render_rays(rays, 0.0, 1.0, train=False)
        b = fresh.render_rays(rays, 0.0, 1.0, train=False)
    torch.testing.assert_close(a.rgb, b.rgb)
    torch.testing.assert_close(a.depth, b.depth)
    # a model without a mask (never updated) also round-trips
    plain = make_model()
    other = make_model(seed=7)
    other.adapt_to_state_dict(plain.state_dict())
    other.load_state_dict(plain.state_dict())
    assert other.field.alpha_mask.numel() == 0


def test_build_model_registry_and_box():
    cfg = build_config(overrides=["model.name=tensorf", "model.tensorf.grid_init=[8,8,8]"])
    model = build_model(cfg)
    assert isinstance(model, TensorfModel)
    assert torch.equal(model.field.aabb, torch.tensor(NDC_BOX))
    unknown = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name="nope"))
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        build_model(unknown)


# ----------------------------------------------------------------------------- regularisers


def test_total_variation_zero_on_constant_and_positive_otherwise():
    constant = torch.full((1, 3, 5, 6), 0.7)
    assert float(total_variation(constant)) == 0.0
    ramp = torch.arange(6.0).expand(1, 1, 5, 6).clone()  # steps of 1 along W, 0 along H
    assert float(total_variation(ramp)) == pytest.approx(1.0)
    line = torch.arange(4.0).view(1, 1, 4, 1) * 2.0  # steps of 2 along its length
    assert float(total_variation(line)) == pytest.approx(4.0)


@pytest.mark.parametrize("batch", BATCH_SHAPES)
@pytest.mark.parametrize("shape", [(1, 2, 4, 5), (1, 3, 6, 1), (1, 1, 1, 4)])
def test_total_variation_matches_the_plain_formula(batch, shape):
    plane = torch.randn(*batch, *shape, requires_grad=True)
    value = total_variation(plane)
    value.backward()
    fast = plane.grad.clone()
    plane.grad = None
    plain = total_variation_reference(plane)
    plain.backward()
    torch.testing.assert_close(value, plain)
    torch.testing.assert_close(fast, plane.grad)


def test_model_tv_loss_zero_on_constant_grid():
    model = make_model()
    with torch.no_grad():
        for p in model.field.grid_parameters():
            p.fill_(0.3)
    density, appearance = (t.detach() for t in tv_loss(model.field))
    assert float(density) == 0.0 and float(appearance) == 0.0
    result = model.render_rays(ndc_rays(8), 0.0, 1.0, train=True)
    loss, scalars = model.loss(result, torch.zeros(8, 3), decay=1.0)
    assert scalars["tv_density"] == 0.0
    assert float(loss.detach()) == pytest.approx(scalars["mse"], rel=1e-6)
    with torch.no_grad():
        model.field.app_planes[0][0, 0, 0, 0] += 1.0
    assert float(tv_loss(model.field)[1].detach()) > 0.0


def test_l1_term_only_when_configured():
    model = make_model("model.tensorf.l1_weight=0.5")
    result = model.render_rays(ndc_rays(8), 0.0, 1.0, train=True)
    loss, scalars = model.loss(result, torch.zeros(8, 3), decay=1.0)
    assert scalars["l1"] > 0.0
    expected = scalars["mse"] + 0.02 * (scalars["tv_density"] + scalars["tv_app"])
    assert float(loss.detach()) == pytest.approx(expected + 0.5 * scalars["l1"], rel=1e-5)
    assert "l1" not in make_model().loss(result, torch.zeros(8, 3), 1.0)[1]


@pytest.mark.parametrize("decay", [0.0, 0.25, 1.0])
def test_regularisers_scale_with_the_schedule_decay(decay):
    """The trainer passes lr / initial lr: TV and L1 are multiplied by it, MSE is not."""
    model = make_model("model.tensorf.l1_weight=0.5")
    result = model.render_rays(ndc_rays(8), 0.0, 1.0, train=False)
    target = torch.zeros(8, 3)
    full, scalars = model.loss(result, target, 1.0)
    loss, same_scalars = model.loss(result, target, decay)
    assert same_scalars == scalars  # the logged terms are unscaled
    regularisers = float(full.detach()) - scalars["mse"]
    assert regularisers > 0.0
    assert float(loss.detach()) == pytest.approx(scalars["mse"] + decay * regularisers, rel=1e-5)
    assert not hasattr(model, "lr_decay_rate") and not hasattr(model, "lr_decay_steps")


# ----------------------------------------------------------------------------- sanity


def test_param_groups_cover_every_parameter_once():
    model = make_model("model.tensorf.lr_grid=0.03", "model.tensorf.lr_network=0.002")
    groups = model.param_groups(5e-4)
    assert [g["lr"] for g in groups] == [0.03, 0.002]
    optimizer = torch.optim.Adam(groups)  # the group options (betas, fused) are valid
    model.render_rays(ndc_rays(4), 0.0, 1.0, train=True).rgb.sum().backward()
    optimizer.step()
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())


def test_parameter_count_matches_the_factor_shapes():
    model = make_model()
    rx, ry, rz = model.field.resolution
    planes = (ry * rx, rz * rx, rz * ry)
    lines = (rz, ry, rx)
    expected = sum(c * (p + q) for c, p, q in zip((4, 2, 2), planes, lines))
    expected += sum(c * (p + q) for c, p, q in zip((6, 3, 3), planes, lines))
    expected += 12 * 5  # basis
    decoder_in = 5 + 3 + 2 * 5 + 2 * 3
    expected += decoder_in * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
@pytest.mark.parametrize("kind", ["forward", "object", "unbounded"])
def test_device_profiles_build_and_stay_modest(device_type, kind):
    profile = device_profile(device_type, kind)
    cfg = build_config(base=merge_dicts({}, profile))
    m = cfg.model.tensorf
    rx, ry, rz = m.grid_final
    planes = (ry * rx, rz * rx, rz * ry)  # xy, xz, yz
    components = [a + b for a, b in zip(m.density_components, m.appearance_components)]
    grid_params = sum(c * p for c, p in zip(components, planes))
    limit = 16e6 if device_type == "cpu" else 60e6  # CPU: 14.7 M at 448 x 448 x 128
    assert grid_params < limit
    assert 4 * rx * ry * rz < 1.5e9  # the dense density volume (bytes) stays well under 4 GB
    if device_type == "cpu":
        assert cfg.train.batch_rays <= 8192
        assert cfg.train.iters > 0


def test_training_steps_reduce_the_loss():
    """A few Adam steps fit a constant colour."""
    model = make_model()
    optimizer = torch.optim.Adam(model.param_groups(1e-3))
    rays = ndc_rays(256)
    target = torch.tensor([0.8, 0.3, 0.1]).expand(256, 3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for step in range(60):
        result = model.render_rays(rays, 0.0, 1.0, train=True, generator=generator)
        loss, scalars = model.loss(result, target, 0.1 ** (step / 60))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(scalars["mse"])
    assert losses[-1] < 0.4 * losses[0]


# ----------------------------------------------------------------------------- world boxes


def box_list(box) -> list[list[float]]:
    return [list(box[0]), list(box[1])]


# a Scene's scene_box ([2, 3] float32, as the formats produce it)
SCENE_BOX = np.array([[-2.0, -1.5, -1.0], [2.0, 1.5, 3.0]], dtype=np.float32)


def test_scene_box_precedence():
    """model.tensorf.aabb, else the Scene's box, else the NDC box (data.ndc), else the cube."""
    world = tiny_config(ndc=False)
    assert build_model(world).field.aabb.tolist() == box_list(CUBE_BOX)
    assert torch.equal(build_model(tiny_config()).field.aabb, torch.tensor(NDC_BOX))
    assert build_model(world, scene_box=SCENE_BOX).field.aabb.tolist() == SCENE_BOX.tolist()
    as_tensor = build_model(world, scene_box=torch.from_numpy(SCENE_BOX).double())
    assert as_tensor.field.aabb.dtype == torch.float32
    assert as_tensor.field.aabb.tolist() == SCENE_BOX.tolist()
    explicit = tiny_config("model.tensorf.aabb=[0,0,0,1,2,3]", ndc=False)
    assert build_model(explicit, scene_box=SCENE_BOX).field.aabb.tolist() == [[0, 0, 0], [1, 2, 3]]
    # the classic model samples [near, far] and takes no box
    classic = build_config(overrides=["model.name=nerf", "model.nerf.netwidth=8"])
    assert not hasattr(build_model(classic, scene_box=SCENE_BOX), "aabb")


@pytest.mark.parametrize(
    "box",
    [[[0, 0, 0], [1, -1, 1]], [[0, 0, 0]], [[0, 0, 0], [1, float("nan"), 1]], [[0, 0], [1, 1]]],
)
def test_bad_scene_box_is_a_data_error(box):
    with pytest.raises(DataError, match="scene box"):
        build_model(tiny_config(ndc=False), scene_box=np.array(box, dtype=np.float32))


def test_world_rendering_in_the_scene_box():
    model = build_model(tiny_config(ndc=False), scene_box=SCENE_BOX)
    corners = model.field.normalize(torch.from_numpy(SCENE_BOX))  # [2, 3]
    assert corners.tolist() == [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]
    c2w = torch.eye(4)[:3].clone()
    c2w[:, 3] = torch.tensor([0.0, 0.0, 5.0])  # outside the box, looking down -z through it
    rays = make_rays(6, 8, 7.0, c2w, ndc=False).reshape(-1)
    result = model.render_rays(rays, 0.5, 9.0, train=False)
    assert result.rgb.shape == (48, 3)
    assert bool(torch.isfinite(result.rgb).all())
    # samples cover only the part of each ray inside the box (z from 3 down to -1): all but a
    # few end samples that rounding puts a hair outside it
    total, inside = model.last_sample_counts[:2]
    assert 0.99 * total <= inside <= total
    reference = render_rays_reference(model, rays, 0.5, 9.0, train=False)
    torch.testing.assert_close(result.opacity, reference.opacity, atol=1e-5, rtol=1e-4)


def test_scene_box_is_restored_from_the_state_dict():
    """restore_model builds the model before loading; the box comes back with the weights."""
    model = build_model(tiny_config(ndc=False), scene_box=SCENE_BOX)
    model.before_step(10)  # upsample, so adapt_to_state_dict has shapes to change
    fresh = build_model(tiny_config(ndc=False))  # the cube
    fresh.adapt_to_state_dict(model.state_dict())
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.field.aabb, model.field.aabb)
    a, b = renders_from_above(5.0, 4, 9.0, model, fresh)
    assert torch.equal(a.rgb, b.rgb)


def renders_from_above(z: float, size: int, far: float, *models: TensorfModel) -> list:
    """No-grad renders [size * size] of each model from a size x size camera at (0, 0, z)
    looking down -z (focal = size), rays from depth 0.5 to far."""
    c2w = torch.eye(4)[:3].clone()
    c2w[:, 3] = torch.tensor([0.0, 0.0, z])
    rays = make_rays(size, size, float(size), c2w, ndc=False).reshape(-1)
    with torch.no_grad():
        return [model.render_rays(rays, 0.5, far, train=False) for model in models]


def test_production_code_never_imports_the_references():
    """The plain references are for tests: the fast files must read on their own."""
    root = Path(__file__).resolve().parents[2] / "nerfcli"
    pattern = re.compile(
        r"^\s*(from\s+nerfcli\.models\.reference\s+import|import\s+nerfcli\.models\.reference"
        r"|from\s+nerfcli\.models\s+import\s+[^\n]*\breference\b)",
        re.MULTILINE,
    )
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.name != "reference.py" and pattern.search(path.read_text())
    ]
    assert offenders == []
    assert pattern.search("from nerfcli.models.reference import render_rays_reference")


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="aabb"):
        make_model("model.tensorf.aabb=[0,0,0,1,1]")
    with pytest.raises(ConfigError, match="density_activation"):
        make_model("model.tensorf.density_activation=exp")


def test_trainer_logs_the_rates_the_optimizer_uses(tmp_path):
    """TensoRF trains its grids and its networks at different rates, both decaying: the log
    shows what Adam actually used (first group as `lr`, every group in `lr_groups`)."""
    import json

    from nerfcli.data.formats.llff import load_llff_data
    from nerfcli.training.optim import learning_rate_factor
    from nerfcli.training.session import start_run
    from tests.conftest import write_llff

    scene = load_llff_data(write_llff(tmp_path / "s", n=4, height=8, width=10), factor=1)
    cfg = build_config(
        overrides=[
            "data.factor=1",
            "model.tensorf.grid_init=[8,8,8]",
            "model.tensorf.grid_final=[8,8,8]",
            "model.tensorf.upsample_steps=[]",
            "model.tensorf.alpha_mask_steps=[]",
            "model.tensorf.density_components=[2,2,2]",
            "model.tensorf.appearance_components=[2,2,2]",
            "model.tensorf.app_dim=4",
            "model.tensorf.decoder_width=8",
            "model.tensorf.lr_grid=0.02",
            "model.tensorf.lr_network=0.001",
            "train.iters=3",
            "train.batch_rays=16",
            "train.log_every=1",
            "train.eval_every=0",
            "train.lr_decay_steps=2",
        ]
    )
    start_run(cfg, scene, tmp_path / "run", torch.device("cpu")).trainer.run()
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:
        factor = learning_rate_factor(cfg, record["step"] - 1)  # the rate the step used
        assert record["lr_groups"] == pytest.approx([0.02 * factor, 0.001 * factor])
        assert record["lr"] == record["lr_groups"][0]


def test_train_picks_the_surround_profile_for_spherified_captures(tmp_path):
    """`nerf train SCENE --spherify` trains in world coordinates on an isotropic grid; a
    forward-facing capture keeps the NDC grid, fine in x, y and coarse in z."""
    from nerfcli.cli.common import spherified
    from nerfcli.training.session import ConfigRequest, resolve_config
    from tests.conftest import write_llff

    scene = write_llff(tmp_path / "s", n=4, height=8, width=10, with_images=False)
    config, sphere = spherified(scene, None, None, ())  # what --spherify asks
    for device_type in ("cpu", "cuda"):
        surround = resolve_config(ConfigRequest(scene, config, None, sphere, device_type))
        assert surround.data.llff["spherify"] and not surround.data.ndc
        rx, ry, rz = surround.model.tensorf.grid_final
        assert rx == ry == rz
        facing = resolve_config(ConfigRequest(scene, device=device_type))
        assert facing.data.ndc and not facing.data.llff["spherify"]
        rx, ry, rz = facing.model.tensorf.grid_final
        assert rx == ry > rz
    grid = ("model.tensorf.grid_final=[50,60,70]",)
    override = resolve_config(ConfigRequest(scene, config, None, (*sphere, *grid)))
    assert override.model.tensorf.grid_final == (50, 60, 70)  # --set still wins
