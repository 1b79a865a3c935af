"""The classic model has the paper's architecture."""

from __future__ import annotations

import pytest
import torch

from nerfcli.data.rays import Rays
from nerfcli.models.config import build_config
from nerfcli.models.nerf import NerfMLP
from nerfcli.models.registry import build_model, model_profile


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
    target = torch.rand(6, 3)
    loss, scalars = model.loss(out, target, 1.0)
    assert set(scalars) == {"mse", "mse_coarse"}
    assert float(loss) == pytest.approx(scalars["mse"] + scalars["mse_coarse"], rel=1e-6)
    # no regulariser: the schedule's decay leaves the classic loss alone
    assert torch.equal(model.loss(out, target, 0.1)[0], loss)
    loss.backward()
    assert model.fine.pts_linears[0].weight.grad is not None
    assert model.coarse.pts_linears[0].weight.grad is not None


def test_cpu_profile_only_changes_how_work_is_chunked():
    from nerfcli.config import to_dict

    for device_type in ("cpu", "cuda"):
        profile = model_profile("nerf", device_type)
        assert set(profile) <= {"train", "render"}
        assert set(profile.get("train", {})) <= {"grad_chunk_rays"}
        assert set(profile.get("render", {})) <= {"chunk"}
        cfg = build_config(None, ["model.name=nerf"], base=profile)
        defaults = build_config(None, ["model.name=nerf"])
        assert to_dict(cfg)["model"] == to_dict(defaults)["model"]
    assert model_profile("nerf", "cpu")["train"]["grad_chunk_rays"] > 0
    for kind in ("object", "unbounded"):
        assert model_profile("nerf", "cpu", kind) == model_profile("nerf", "cpu")


def test_model_profile_names_the_models_it_knows():
    from nerfcli.errors import ConfigError

    with pytest.raises(ConfigError, match="available: nerf, tensorf"):
        model_profile("nope", "cpu")
    with pytest.raises(ConfigError, match="available: forward, object, unbounded"):
        model_profile("tensorf", "cpu", "surround")
    surround = model_profile("tensorf", "cpu", "object")["model"]["tensorf"]
    facing = model_profile("tensorf", "cpu", "forward")["model"]["tensorf"]
    assert surround["grid_final"] != facing["grid_final"]


def test_chunked_gradients_equal_the_whole_batch(tmp_path):
    """train.grad_chunk_rays accumulates share-weighted chunk losses: the same loss and the
    same gradient as one pass over the batch (deterministic sampling, no density noise)."""
    from nerfcli.data.formats.llff import load_llff_data
    from nerfcli.training.trainer import Trainer
    from tests.conftest import SMALL_CLASSIC, write_llff

    scene = load_llff_data(write_llff(tmp_path / "s", n=4, height=8, width=10), factor=1)
    grads = {}
    losses = {}
    for chunk in (0, 5, 16):
        cfg = build_config(
            None,
            [
                *SMALL_CLASSIC,
                "render.n_samples=8",
                "render.n_importance=8",
                "render.perturb=false",
                "render.raw_noise_std=0",
                "data.factor=1",
                f"train.grad_chunk_rays={chunk}",
            ],
        )
        trainer = Trainer(cfg, scene, tmp_path / f"run{chunk}", "cpu")
        batch = trainer.rays[torch.arange(37)]
        loss, _ = trainer._forward_backward(batch, trainer.target[:37], use_amp=False, decay=1.0)
        losses[chunk] = float(loss)
        grads[chunk] = [p.grad.clone() for p in trainer.model.parameters()]
    for chunk in (5, 16):
        assert abs(losses[chunk] - losses[0]) < 1e-6 * max(1.0, losses[0])
        for a, b in zip(grads[chunk], grads[0]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
