"""TensoRF in contracted space (unbounded scenes): grid coordinates, samples, the render path
against its plain reference, the alpha mask, config checks and the profile."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfcli.config import merge_dicts
from nerfcli.data.rays import Rays, make_rays
from nerfcli.errors import ConfigError
from nerfcli.models.config import build_config
from nerfcli.models.reference import density_feature_reference, render_rays_reference
from nerfcli.models.registry import build_model, model_profile
from nerfcli.models.tensorf import TensorfModel
from nerfcli.render.composite import sample_deltas
from nerfcli.render.contraction import contract
from nerfcli.render.samplers import sample_points
from tests.unit.test_tensorf import grads, tiny_config

BOX = torch.tensor([[-2.0, -1.0, -1.5], [2.0, 3.0, 1.5]])  # not a cube, not centred


def unbounded_model(*overrides: str, kind: str = "linf", seed: int = 0) -> TensorfModel:
    torch.manual_seed(seed)
    cfg = tiny_config(f"model.tensorf.contraction={kind}", *overrides, ndc=False)
    return build_model(cfg, BOX)


def inside_rays(count: int, seed: int = 3) -> Rays:
    """Rays of a small camera inside the box, looking along -z with a tilt."""
    c2w = torch.eye(4)[:3].clone()
    c2w[:, 3] = torch.tensor([0.3, 1.2, 0.4])
    rays = make_rays(6, 8, 5.0, c2w, ndc=False).reshape(-1)
    generator = torch.Generator().manual_seed(seed)
    return rays[torch.randint(0, len(rays), (count,), generator=generator)]


def test_grid_coordinates_are_the_contracted_box_coordinates_halved():
    model = unbounded_model()
    points = torch.tensor([[0.0, 1.0, 0.0], [2.0, 3.0, 1.5], [4.0, 1.0, 0.0], [0.0, -21.0, 0.0]])
    coords = model.field.normalize(points)
    box = (points - BOX[0]) * 2.0 / (BOX[1] - BOX[0]) - 1.0
    torch.testing.assert_close(coords, 0.5 * contract(box, "linf"))
    # the centre, a corner, 2 and 11 box half-widths out along an axis
    expected = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.75, 0.0, 0.0]])
    torch.testing.assert_close(coords[:3], expected)
    torch.testing.assert_close(coords[3], torch.tensor([0.0, -0.5 * (2.0 - 1.0 / 11.0), 0.0]))
    plain = build_model(tiny_config(ndc=False), BOX)  # no contraction: the box coordinates
    torch.testing.assert_close(plain.field.normalize(points), box)


def test_samples_cover_the_box_then_reach_far_into_the_contracted_shell():
    model = unbounded_model("model.tensorf.max_samples=0")
    rays = inside_rays(32)
    t = model.sample_depths(rays, 0.05, 10.0, train=False)
    n_outer = model.field.outer_samples()
    # grid [11, 9, 7] -> (5, 4, 3) box voxels, 4 on the mean axis -> 2 shell voxels, at
    # step_ratio 0.5 -> 4 samples
    assert n_outer == 4 and model.cfg.outer_samples == 0 and model.cfg.step_ratio == 0.5
    assert t.shape == (32, model.num_samples(0.05, 10.0, rays.directions))
    assert bool((t[:, 1:] >= t[:, :-1]).all())
    coords = model.field.normalize(sample_points(rays.origins, rays.directions, t))  # [R, S, 3]
    assert float(coords.abs().max()) <= 1.0
    inner = coords[:, :-n_outer].abs().amax(-1)
    assert float(inner.max()) <= 0.5 + 1e-5  # the box is the middle half of the grid
    assert float(coords[:, -1].abs().amax(-1).min()) > 0.9  # the last reaches the outer shell
    # far does not limit the samples: unbounded
    torch.testing.assert_close(model.sample_depths(rays, 0.05, 3.0, train=False), t)
    fixed = unbounded_model("model.tensorf.outer_samples=7")
    assert fixed.field.outer_samples() == 7


@pytest.mark.parametrize("kind", ["linf", "l2"])
def test_unbounded_render_matches_the_reference_values_and_gradients(kind):
    """The production path (density at the samples the alpha mask keeps, one trilinear read
    of the density volume) against the plain one (every sample, grid_sample per factor)."""
    model = unbounded_model(
        "model.tensorf.colour_samples=0", "model.tensorf.weight_threshold=-1", kind=kind
    )
    rays = inside_rays(40)
    reference = render_rays_reference(model, rays, 0.05, 10.0, train=False)
    upstream = torch.randn(40, 3)
    (reference.rgb * upstream + reference.depth[:, None]).sum().backward()
    grads_reference = grads(model.parameters())
    model.zero_grad()
    fast = model.render_rays(rays, 0.05, 10.0, train=False)
    (fast.rgb * upstream + fast.depth[:, None]).sum().backward()
    assert model.last_sample_counts[1] == model.last_sample_counts[0]  # every sample inside
    torch.testing.assert_close(fast.rgb, reference.rgb, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fast.depth, reference.depth, atol=1e-4, rtol=1e-4)
    for a, b in zip(grads(model.parameters()), grads_reference):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_depth_is_the_expected_t_in_world_units():
    """One opaque shell far outside the box: every ray stops there, and depth is its t."""
    model = unbounded_model("model.tensorf.density_activation=relu")
    with torch.no_grad():
        for factors in (model.field.density_planes, model.field.density_lines):
            for p in factors:
                p.zero_()
        model.field.density_planes[0][:, 0] = 1.0  # xy plane x z line = a z band of the grid
        line = model.field.density_lines[0]
        z = torch.linspace(-1.0, 1.0, line.shape[2])
        line[0, 0, :, 0] = (z < -0.9).float() * 10.0  # the z = -1 vertex only
    rays = Rays(torch.zeros(4, 3), torch.tensor([[0.0, 0.0, -1.0]] * 4), torch.zeros(4, 3))
    rays = Rays(rays.origins, rays.directions, rays.directions)
    with torch.no_grad():
        out = model.render_rays(rays, 0.05, 10.0, train=False)
        t = model.sample_depths(rays, 0.05, 10.0, train=False)
    coords = model.field.normalize(sample_points(rays.origins, rays.directions, t))
    # density > 0 below grid z = -2/3 (the vertex at z = -1 interpolated to the next one)
    first = int((coords[0, :, 2] < -2.0 / 3.0 - 1e-6).nonzero()[0])
    assert float(out.opacity.min()) > 0.999
    # deltas in world units: huge out there, so the ray stops within a sample or two
    assert float(sample_deltas(t, rays.directions)[0, first]) > 1.0
    assert bool((out.depth >= t[:, first] * (1 - 1e-5)).all())
    assert bool((out.depth <= t[:, first + 1]).all())
    # grid z -2/3 is contracted z -4/3, 1 / (2 - 4/3) = 1.5 box half-heights: world z -2.25
    assert float(out.depth.min()) > 2.25


def blob_model(seed: int) -> TensorfModel:
    model = unbounded_model("model.tensorf.density_activation=relu", seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for plane, line in zip(model.field.density_planes, model.field.density_lines):
            plane.copy_(torch.randn(plane.shape, generator=generator) - 1.0)
            line.copy_(torch.rand(line.shape, generator=generator))
            plane[0, 0, 1, 1] = 8.0  # a dense spot near a corner: the contracted shell
            line[0, 0, 1, 0] = 1.0
    return model


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_alpha_mask_in_contracted_space_keeps_every_significant_cell(seed):
    """The mask's threshold uses the sample spacing at each vertex, which in the shell is
    the box spacing times the radial stretch: a cell is dropped only if no corner reaches it."""
    model = blob_model(seed)
    model.update_alpha_mask()
    assert 0.0 < model.field.occupancy() < 1.0
    coords = torch.rand(4000, 3, generator=torch.Generator().manual_seed(seed)) * 2.0 - 1.0
    with torch.no_grad():
        feature = density_feature_reference(
            list(model.field.density_planes), list(model.field.density_lines), coords
        )
        sigma = model.field.activate_density(feature)
    steps = model.field.vertex_steps()  # [Rz, Ry, Rx]
    assert steps.shape == tuple(reversed(model.field.resolution))
    assert float(steps.min()) == pytest.approx(model.field.mask_step())  # inside the box
    assert float(steps.max()) > 10 * model.field.mask_step()  # the shell's far edge
    # the smallest spacing of the cell's corners, a lower bound of the spacing at the sample
    lower = -torch.nn.functional.max_pool3d(-steps[None, None], 2, 1)[0, 0]  # [cells]
    index = ((coords + 1.0) * 0.5 * (torch.tensor(model.field.resolution) - 1)).long()
    index = torch.minimum(index, torch.tensor(model.field.resolution) - 2)
    step = lower[index[:, 2], index[:, 1], index[:, 0]]
    significant = 1.0 - torch.exp(-sigma * step) > model.cfg.alpha_mask_threshold
    assert bool(significant.any())
    assert bool(model.field.alpha_mask_lookup(coords)[significant].all())


def test_alpha_mask_leaves_the_unbounded_render_almost_unchanged():
    model = blob_model(5)
    rays = inside_rays(64)
    with torch.no_grad():
        before = model.render_rays(rays, 0.05, 10.0, train=False)
        model.update_alpha_mask()
        after = model.render_rays(rays, 0.05, 10.0, train=False)
    assert model.last_sample_counts[1] < model.last_sample_counts[0]  # some were skipped
    bound = model.num_samples(0.05, 10.0, rays.directions) * 1e-4
    assert float((after.rgb - before.rgb).abs().max()) < bound


def test_contraction_config_checks():
    with pytest.raises(ConfigError, match="contraction must be none, linf or l2"):
        unbounded_model(kind="sphere")
    with pytest.raises(ConfigError, match="not NDC"):
        build_model(tiny_config("model.tensorf.contraction=linf"))
    with pytest.raises(ConfigError, match=r"outer_samples must be a finite number at least 0"):
        unbounded_model("model.tensorf.outer_samples=-1")


@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_unbounded_profile_contracts_and_box_profile_does_not(device_type):
    unbounded = model_profile("tensorf", device_type, "unbounded")["model"]["tensorf"]
    box = model_profile("tensorf", device_type, "object")["model"]["tensorf"]
    assert unbounded["contraction"] == "l2" and "contraction" not in box
    assert unbounded["alpha_mask_steps"]  # the empty space between subject and room
    cfg = build_config(
        base=merge_dicts(
            {"data": {"ndc": False}}, model_profile("tensorf", device_type, "unbounded")
        )
    )
    model = build_model(cfg, BOX)
    assert model.cfg.contraction == "l2" and model.policy.contracted
    rx, ry, rz = cfg.model.tensorf.grid_final
    assert rx == ry == rz
