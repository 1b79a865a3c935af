"""Give a TensoRF field the shapes a checkpoint stores, so that load_state_dict accepts it: the
grid grows during training (upsampling) and the alpha mask appears, so a freshly built model
has the starting shapes, not the saved ones."""

from __future__ import annotations

import torch

from nerfcli.errors import CheckpointError
from nerfcli.models.tensorf.factors import factor_resolution, make_factors
from nerfcli.models.tensorf.field import TensorfField
from nerfcli.render.occupancy import OccupancyGrid

FIELD_PREFIX = "field."  # the TensoRF model's field, by composition
OTHER_PREFIXES = ("estimator.",)  # the model's other parts


def upgrade_field_keys(state: dict, prefix: str = "") -> None:
    """Rename in place the keys of a checkpoint saved while TensorfModel was its field
    (`density_planes.0`, `aabb`, `alpha_mask`, `basis.weight`, `decoder.*`) to the composed
    model's (`field.density_planes.0`, ...); the estimator's keep theirs. No-op for a state
    dict already in the new form."""
    ours = (FIELD_PREFIX, *OTHER_PREFIXES)
    old = [
        key for key in state if key.startswith(prefix) and not key[len(prefix) :].startswith(ours)
    ]
    for key in old:
        state[prefix + FIELD_PREFIX + key[len(prefix) :]] = state.pop(key)


def saved_resolution(state: dict) -> tuple[int, int, int]:
    """The (x, y, z) vertex counts of the factors in a state dict."""
    try:
        planes = [state[f"{FIELD_PREFIX}density_planes.{i}"] for i in (0, 1)]
        return factor_resolution(planes)
    except (KeyError, IndexError) as exc:
        raise CheckpointError(
            f"checkpoint has no TensoRF grid ({exc}); was it saved by another model?"
        ) from None


def adapt_to_state_dict(field: TensorfField, estimator: OccupancyGrid, state: dict) -> None:
    """Resize every factor and the alpha mask of `field` to the shapes stored in `state` (the
    values are then loaded by load_state_dict). A checkpoint saved before the composition has
    its field's keys renamed (upgrade_field_keys); one saved before the occupancy estimator
    gets its keys added, empty: the estimator is then not built (renders derive the
    occupancy from the field) until training updates it."""
    upgrade_field_keys(state)
    resolution = saved_resolution(state)
    if resolution != field.resolution:
        m = field.cfg
        field.density_planes, field.density_lines = make_factors(
            m.density_components, resolution, 0.0
        )
        field.app_planes, field.app_lines = make_factors(m.appearance_components, resolution, 0.0)
        field.to(field.aabb.device)
        field.resolution = resolution
    estimator.add_missing_state(state, "estimator.")  # a checkpoint from before it
    mask = state.get(f"{FIELD_PREFIX}alpha_mask")
    if mask is not None and tuple(mask.shape) != tuple(field.alpha_mask.shape):
        field.alpha_mask = torch.zeros(mask.shape, dtype=torch.bool, device=field.aabb.device)
    field.clear_caches()
