"""The classic model has the paper's architecture."""

from __future__ import annotations

import torch

from nerfcli.config import build_config
from nerfcli.models import build_model
from nerfcli.models.nerf import NerfMLP
from nerfcli.rays import Rays


def test_layer_shapes_match_the_reference():
    mlp = NerfMLP()
    shapes = [tuple(layer.weight.shape) for layer in mlp.pts_linears]
    assert shapes[0] == (256, 63)
    assert shapes[5] == (256, 256 + 63)  # input concatenated again after layer 4
    assert all(s == (256, 256) for i, s in enumerate(shapes[1:], 1) if i != 5)
    assert len(shapes) == 8
    assert tuple(mlp.views_linears[0].weight.shape) == (128, 256 + 27)
    assert tuple(mlp.rgb_linear.weight.shape) == (3, 128)
    assert tuple(mlp.alpha_linear.weight.shape) == (1, 256)
    sigma, rgb = mlp(torch.rand(4, 5, 3), torch.rand(4, 5, 3))
    assert sigma.shape == (4, 5) and rgb.shape == (4, 5, 3)


def test_render_rays_shapes_and_coarse_output():
    cfg = build_config(
        None,
        [
            "model.name=nerf",
            "model.nerf.netwidth=32",
            "model.nerf.netwidth_fine=32",
            "render.n_samples=8",
            "render.n_importance=8",
        ],
    )
    model = build_model(cfg)
    rays = Rays(
        torch.zeros(6, 3),
        torch.tensor([[0.0, 0.0, -1.0]]).repeat(6, 1),
        torch.tensor([[0.0, 0.0, -1.0]]).repeat(6, 1),
    )
    g = torch.Generator().manual_seed(0)
    out = model.render_rays(rays, 0.0, 1.0, train=True, generator=g)
    assert out.rgb.shape == (6, 3) and out.depth.shape == (6,)
    assert out.extras["rgb_coarse"].shape == (6, 3)
    loss, scalars = model.loss(out, torch.rand(6, 3), 0)
    assert set(scalars) == {"mse", "mse_coarse"}
    loss.backward()
    assert model.fine.pts_linears[0].weight.grad is not None
    assert model.coarse.pts_linears[0].weight.grad is not None
