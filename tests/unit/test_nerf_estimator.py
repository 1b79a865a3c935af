"""The classic model's occupancy estimator (nerfcli/models/nerf.py over render/occupancy.py),
on closed-form fields standing in for its networks.

What is asserted, and the tolerances:
- a ball of density (sigma_raw 20 inside, -20 outside: ReLU makes it exactly 0 there): after
  an update, the render through the estimator equals the render of every sample to 1e-6
  (colour and depth), and so do the gradients of the field's parameters: a dropped sample
  has density exactly 0 on both paths, so its weight is 0; the kept samples go through the
  same arithmetic in another batch shape, where float rounding is ~1e-7;
- no sample is dropped whose alpha at the coarse spacing exceeds the threshold, for 20,000
  random points: exactly. A jittered estimate bounds no network in general (nerfacc's
  neither); for a ball 10 cells wide every cell it overlaps has vertices within a cell that
  lie over half a cell deep inside it, whose jittered points are inside, and the grid is
  dilated by one cell;
- outside the box every sample has density 0 from the first step (a new grid is the box with
  every cell occupied): the estimator's render equals the plain render of the field masked
  by the box, to 1e-6;
- checkpoints: the grid round-trips; a checkpoint saved before the estimator loads with an
  empty grid and renders every sample, as it was trained (exactly the reference path);
- estimator_every=0 and scenes without a box have no estimator.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nerfcli.data.rays import Rays
from nerfcli.errors import ConfigError
from nerfcli.models.config import build_config
from nerfcli.models.registry import build_model
from tests.conftest import SMALL_CLASSIC

BOX = torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])
CENTRE = torch.tensor([0.1, -0.2, 0.15])
RADIUS = 0.5


class BallField(nn.Module):
    """A stand-in for NerfMLP: sigma_raw 20 inside the ball, -20 outside; colour from a
    learnable bias and the position (so gradients flow)."""

    def __init__(self, everywhere: bool = False):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.3, -0.2, 0.1]))
        self.everywhere = everywhere

    def density(self, xyz: torch.Tensor) -> torch.Tensor:
        if self.everywhere:  # a fog over all space
            return torch.full(xyz.shape[:-1], 0.4)
        inside = (xyz - CENTRE).norm(dim=-1) <= RADIUS
        return torch.where(inside, 20.0, -20.0)

    def forward(self, xyz, dirs):
        return self.density(xyz), xyz * 0.5 + self.bias + 0.1 * dirs


def classic(extra: tuple[str, ...] = (), box: torch.Tensor | None = BOX, everywhere=False):
    cfg = build_config(
        None,
        [
            "model.name=nerf",
            "model.nerf.n_samples=48",
            "model.nerf.n_importance=32",
            "model.nerf.raw_noise_std=0",
            "render.perturb=false",
            "data.background=white",
            "data.scene_type=object",  # a Blender object: the estimator's scene
            *extra,
        ],
    )
    model = build_model(cfg, box)
    model.coarse = BallField(everywhere)
    model.fine = BallField(everywhere)
    return model


def rays_at_the_ball(count: int = 96, seed: int = 0) -> Rays:
    g = torch.Generator().manual_seed(seed)
    origins = torch.tensor([0.0, 0.0, 4.0]).repeat(count, 1)
    directions = torch.cat([0.35 * torch.randn(count, 2, generator=g), -torch.ones(count, 1)], 1)
    return Rays(origins, directions, directions / directions.norm(dim=-1, keepdim=True))


def render_both(model, rays):
    """(through the estimator, every sample): the same model, the estimator set aside."""
    gated = model.render_rays(rays, 2.0, 6.0, train=False)
    grid, model.estimator = model.estimator, None
    try:
        plain = model.render_rays(rays, 2.0, 6.0, train=False)
    finally:
        model.estimator = grid
    return gated, plain


def trained_grid(model) -> None:
    """One training render (the spacing), then two estimator updates."""
    model.render_rays(rays_at_the_ball(8), 2.0, 6.0, train=True, generator=torch.Generator())
    model.after_step(model.cfg.estimator_every)
    model.after_step(2 * model.cfg.estimator_every)


def test_render_through_the_estimator_equals_every_sample_and_drops_most():
    model = classic()
    trained_grid(model)
    assert 0.0 < model.estimator.occupied_fraction() < 0.1
    rays = rays_at_the_ball()
    gated, plain = render_both(model, rays)
    torch.testing.assert_close(gated.rgb, plain.rgb, atol=1e-6, rtol=0)
    torch.testing.assert_close(gated.depth, plain.depth, atol=1e-5, rtol=0)
    model.render_rays(rays, 2.0, 6.0, train=False)
    total, kept = model.last_sample_counts
    assert kept < 0.25 * total  # the ball fills little of [2, 6] along each ray


def test_gradients_through_the_estimator_equal_every_sample():
    model = classic()
    trained_grid(model)
    rays = rays_at_the_ball(48, seed=3)
    target = torch.rand(48, 3, generator=torch.Generator().manual_seed(1))
    grads = []
    for keep_grid in (True, False):
        grid = model.estimator
        if not keep_grid:
            model.estimator = None
        model.zero_grad()
        out = model.render_rays(rays, 2.0, 6.0, train=True, generator=torch.Generator())
        model.loss(out, target, 1.0)[0].backward()
        grads.append([model.coarse.bias.grad.clone(), model.fine.bias.grad.clone()])
        model.estimator = grid
    for a, b in zip(*grads):
        assert b.abs().max() > 1e-4  # the test measures something
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_no_sample_above_the_threshold_is_dropped():
    model = classic()
    trained_grid(model)
    g = torch.Generator().manual_seed(5)
    points = (torch.rand(20000, 1, 3, generator=g) * 2 - 1) * 1.4  # [P, 1, 3] in the box
    sigma = torch.relu(model.fine.density(points))
    alpha = 1 - torch.exp(-sigma * model.spacing)
    keep = model.occupied(points)
    assert bool((alpha > model.cfg.estimator_threshold).any())
    assert not bool((~keep & (alpha > model.cfg.estimator_threshold)).any())


def test_a_new_grid_reads_nothing_outside_the_box():
    model = classic(everywhere=True)
    assert model.estimator.built and model.estimator.occupied_fraction() == 1.0
    rays = rays_at_the_ball()
    gated, plain = render_both(model, rays)
    assert (gated.rgb - plain.rgb).abs().max() > 0.05  # the fog outside the box counts

    class BoxedFog(BallField):  # the same fog, masked by the box
        def density(self, xyz):
            inside = ((xyz >= BOX[0]) & (xyz <= BOX[1])).all(-1)
            return torch.where(inside, 0.4, -1.0)

    model.estimator, grid = None, model.estimator
    model.coarse, model.fine = BoxedFog(), BoxedFog()
    boxed = model.render_rays(rays, 2.0, 6.0, train=False)
    torch.testing.assert_close(gated.rgb, boxed.rgb, atol=1e-6, rtol=0)
    model.estimator = grid


def test_the_grid_round_trips_and_older_checkpoints_render_every_sample():
    model = classic()
    trained_grid(model)
    state = model.state_dict()
    again = classic()
    again.adapt_to_state_dict(state)
    again.load_state_dict(state)
    assert torch.equal(again.estimator.occupied, model.estimator.occupied)

    old = {k: v for k, v in state.items() if not k.startswith("estimator.")}
    loaded = classic()
    loaded.adapt_to_state_dict(old)
    loaded.load_state_dict(old)
    assert not loaded.estimator.built
    rays = rays_at_the_ball(32)
    out = loaded.render_rays(rays, 2.0, 6.0, train=False)
    total, kept = loaded.last_sample_counts
    assert kept == total  # every sample, as the checkpoint was trained
    loaded.estimator = None
    torch.testing.assert_close(out.rgb, loaded.render_rays(rays, 2.0, 6.0, train=False).rgb)

    # a model built without an estimator loads a checkpoint that has one
    bare = classic(("model.nerf.estimator_every=0",))
    bare.adapt_to_state_dict(dict(state))
    bare.load_state_dict({k: v for k, v in state.items() if not k.startswith("estimator.")})


def test_no_estimator_without_a_box_or_with_every_zero():
    assert classic(box=None).estimator is None
    assert classic(("model.nerf.estimator_every=0",)).estimator is None


@pytest.mark.parametrize(
    "setting",
    [
        "model.nerf.estimator_cells=0",
        "model.nerf.estimator_threshold=1.5",
        "model.nerf.estimator_every=-1",
        "model.nerf.estimator_decay=2",
    ],
)
def test_bad_estimator_settings_are_refused(setting):
    with pytest.raises(ConfigError, match=setting.split("=")[0]):
        classic((setting,))


def test_the_real_network_trains_through_the_estimator():
    """The real NerfMLP: a training render with the grid updated reaches fewer samples and
    still backpropagates into both networks."""
    cfg = build_config(
        None,
        [
            *SMALL_CLASSIC,
            "model.nerf.n_samples=16",
            "model.nerf.n_importance=8",
            "model.nerf.estimator_cells=8",
            "data.scene_type=object",
            "data.background=white",
        ],
    )
    model = build_model(cfg, BOX)
    rays = rays_at_the_ball(16)
    out = model.render_rays(rays, 2.0, 6.0, train=True, generator=torch.Generator())
    total, kept = model.last_sample_counts
    assert 0 < kept < total  # samples outside the box are not evaluated
    model.after_step(cfg.model.nerf.estimator_every)
    assert model.estimator.built
    out = model.render_rays(rays, 2.0, 6.0, train=True, generator=torch.Generator())
    model.loss(out, torch.rand(16, 3), 1.0)[0].backward()
    assert model.coarse.pts_linears[0].weight.grad.abs().sum() > 0
    assert model.fine.pts_linears[0].weight.grad.abs().sum() > 0


def test_a_chunk_with_no_occupied_sample_trains_and_renders():
    """Every ray misses the box (a 32-ray chunk of sky): no sample reaches the networks, the
    render is the background, and the backward pass still runs (zero gradients)."""
    cfg = build_config(
        None,
        ["model.name=nerf", "model.nerf.netwidth=16", "model.nerf.netwidth_fine=16"]
        + ["model.nerf.n_samples=8", "model.nerf.n_importance=8", "data.background=white"]
        + ["data.scene_type=object"],
    )
    model = build_model(cfg, BOX)
    origins = torch.tensor([0.0, 0.0, 4.0]).repeat(4, 1)
    directions = torch.tensor([0.0, 1.0, 0.0]).repeat(4, 1)  # parallel to the box's top
    rays = Rays(origins, directions, directions)
    out = model.render_rays(rays, 2.0, 6.0, train=True, generator=torch.Generator())
    assert model.last_sample_counts[1] == 0
    torch.testing.assert_close(out.rgb, torch.ones(4, 3))
    model.loss(out, torch.rand(4, 3), 1.0)[0].backward()
    assert float(model.fine.pts_linears[0].weight.grad.abs().sum()) == 0.0


@pytest.mark.parametrize(
    "scene_type, background, has_estimator",
    [
        ("object", "white", True),  # Blender
        ("object", "random", True),  # Blender trained on random backgrounds
        ("object", "black", False),  # a spherified capture: its background is real
        ("unbounded", "black", False),  # the box holds the cameras, not the world
        ("unbounded", "white", False),
    ],
)
def test_only_objects_on_a_known_background_get_the_estimator(
    scene_type, background, has_estimator
):
    cfg = build_config(
        None,
        ["model.name=nerf", f"data.scene_type={scene_type}", f"data.background={background}"]
        + ["data.ndc=false"],
    )
    model = build_model(cfg, BOX)
    assert (model.estimator is not None) == has_estimator


def test_the_estimator_path_trains_under_bfloat16_autocast():
    """train.precision=bf16 (autocast, the GPU default): the networks' outputs are bfloat16, and the scatter of
    the kept samples takes their dtype (it crashed on a float32 destination). The render is
    the float32 one to bfloat16's precision."""
    cfg = build_config(None, [*SMALL_CLASSIC, "data.scene_type=object", "data.background=white"])
    torch.manual_seed(0)
    model = build_model(cfg, BOX)
    rays = rays_at_the_ball(16)
    plain = model.render_rays(rays, 2.0, 6.0, train=False).rgb
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.render_rays(rays, 2.0, 6.0, train=False)
    assert 0 < model.last_sample_counts[1] < model.last_sample_counts[0]
    torch.testing.assert_close(out.rgb.float(), plain, atol=0.05, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.render_rays(rays, 2.0, 6.0, train=True, generator=torch.Generator())
    model.loss(out, torch.rand(16, 3), 1.0)[0].backward()
    assert model.fine.pts_linears[0].weight.grad.abs().sum() > 0


def test_export_reads_the_density_the_model_renders():
    """nerf export's density of a classic model is 0 where its estimator renders none: outside
    the box and in emptied cells, where the networks were never trained."""
    from nerfcli.export.field_query import density_at

    model = classic(everywhere=True)  # a fog everywhere, the networks say
    trained_grid(model)  # the grid is full: the fog is everywhere in the box
    points = torch.tensor([[0.0, 0.0, 0.0], [1.2, -1.0, 0.5], [2.0, 0.0, 0.0], [0.0, 0.0, -3.0]])
    sigma = density_at(model, points)
    assert sigma[:2].tolist() == pytest.approx([0.4, 0.4])  # inside the box
    assert sigma[2:].tolist() == [0.0, 0.0]  # outside it
    model.estimator.occupied[:] = False  # every cell emptied
    assert density_at(model, points).tolist() == [0.0, 0.0, 0.0, 0.0]
