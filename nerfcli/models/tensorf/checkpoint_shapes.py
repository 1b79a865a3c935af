"""Give a TensoRF field the shapes a checkpoint stores, so that load_state_dict accepts it: the
grid grows during training (upsampling) and the alpha mask appears, so a freshly built model
has the starting shapes, not the saved ones."""

from __future__ import annotations

import torch

from nerfcli.errors import CheckpointError
from nerfcli.models.tensorf.factors import factor_resolution, make_factors
from nerfcli.models.tensorf.field import TensorfField


def saved_resolution(state: dict) -> tuple[int, int, int]:
    """The (x, y, z) vertex counts of the factors in a state dict."""
    try:
        return factor_resolution([state["density_planes.0"], state["density_planes.1"]])
    except (KeyError, IndexError) as exc:
        raise CheckpointError(
            f"checkpoint has no TensoRF grid ({exc}); was it saved by another model?"
        ) from None


def adapt_to_state_dict(field: TensorfField, state: dict) -> None:
    """Resize every factor and the alpha mask of `field` to the shapes stored in `state` (the
    values are then loaded by load_state_dict). A checkpoint saved before the occupancy
    estimator gets its keys added, empty: the estimator is then not built (renders derive the
    occupancy from the field) until training updates it."""
    resolution = saved_resolution(state)
    if resolution != field.resolution:
        m = field.cfg
        field.density_planes, field.density_lines = make_factors(
            m.density_components, resolution, 0.0
        )
        field.app_planes, field.app_lines = make_factors(m.appearance_components, resolution, 0.0)
        field.to(field.aabb.device)
        field.resolution = resolution
    if "estimator.occupied" not in state:  # a checkpoint from before the estimator
        for name, buffer in field.estimator.state_dict().items():
            empty = torch.zeros(0, dtype=buffer.dtype) if name != "aabb" else buffer
            state.setdefault(f"estimator.{name}", empty.clone())
    mask = state.get("alpha_mask")
    if mask is not None and tuple(mask.shape) != tuple(field.alpha_mask.shape):
        field.alpha_mask = torch.zeros(mask.shape, dtype=torch.bool, device=field.aabb.device)
    field.clear_caches()
