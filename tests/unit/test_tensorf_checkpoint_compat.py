"""A checkpoint saved by the code before TensorfModel became a composition (commit d37641d, when
the model *was* its field: keys `density_planes.0`, `aabb`, ...; and when the classic model's
sampling keys were `render.n_samples`, ...) still loads and renders the same image.

tests/data/tensorf_d37641d/ckpt.pt: `nerf train` at d37641d on the generated LLFF scene
(tests.conftest.write_llff), 12 steps of a tiny TensoRF (grid 8x8x6 -> 12x12x8, upsampled at
step 5, alpha mask at step 8). render.pt: that code's no-grad render of 64 fixed NDC rays
from the restored checkpoint (`restore_model`, `render_rays(rays, 0, 1, train=False)`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from nerfcli.data.rays import Rays
from nerfcli.models.tensorf.checkpoint_shapes import upgrade_field_keys
from nerfcli.training.checkpoint import load_checkpoint, restore_model

DATA = Path(__file__).resolve().parent.parent / "data" / "tensorf_d37641d"


def old_rays() -> tuple[Rays, dict]:
    expected = torch.load(DATA / "render.pt", weights_only=True)
    directions = expected["directions"]  # [64, 3]
    viewdirs = directions / directions.norm(dim=-1, keepdim=True)
    return Rays(expected["origins"], directions, viewdirs), expected


def test_a_checkpoint_of_the_inheriting_model_loads_and_renders_the_same():
    ckpt = load_checkpoint(DATA / "ckpt.pt")
    assert "density_planes.0" in ckpt.model_state  # saved with the old names
    model = restore_model(ckpt)
    assert model.field.resolution == (12, 12, 8) and model.field.alpha_mask.numel() > 0
    rays, expected = old_rays()
    with torch.no_grad():
        out = model.render_rays(rays, 0.0, 1.0, train=False)
    # the same image to float32 roundings: render.pt was made on an AMD Zen 4, and another CPU
    # (an Intel Xeon with AMX: 6e-8 here) sums in another order; a key loaded wrongly or a
    # changed rule moves pixels by orders of magnitude more than 1e-6
    assert torch.allclose(out.rgb, expected["rgb"], rtol=0.0, atol=1e-6)
    assert torch.allclose(out.depth, expected["depth"], rtol=0.0, atol=1e-6)
    # the classic model's sampling keys, stored under render then, are model.nerf's now
    assert ckpt.config.model.nerf.n_samples == 64 and not hasattr(ckpt.config.render, "n_samples")


def test_new_names_and_old_names_load_alike():
    old = load_checkpoint(DATA / "ckpt.pt").model_state
    model = restore_model(load_checkpoint(DATA / "ckpt.pt"))
    state = model.state_dict()
    assert all(k.startswith(("field.", "estimator.")) for k in state)
    renamed = dict(old)
    upgrade_field_keys(renamed)
    assert sorted(renamed) == sorted(state)
    for key, value in old.items():
        name = key if key.startswith("estimator.") else f"field.{key}"
        assert torch.equal(state[name], value)
    # load_state_dict of the old names directly (the pre-hook renames them)
    again = restore_model(load_checkpoint(DATA / "ckpt.pt"))
    with torch.no_grad():
        for parameter in again.parameters():
            parameter.zero_()
    again.load_state_dict(dict(old))
    for key, value in again.state_dict().items():
        assert torch.equal(value, state[key]), key
