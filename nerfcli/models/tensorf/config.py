"""TensoRF's own config section, `model.tensorf.*` (beside the model, as nanoGPT's GPTConfig
beside GPT), and its checks. Only the TensoRF model reads these keys: `--set model.tensorf.X`
with another model is a usage error (nerfcli.models.config.check_keys_read)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from nerfcli.config import check_at_least
from nerfcli.errors import ConfigError
from nerfcli.render.contraction import CONTRACTIONS


@dataclass(frozen=True)
class TensorfModelConfig:
    """TensoRF-VM. Defaults are TensoRF's LLFF recipe; nerfcli.models.profiles.tensorf_profile
    overrides some of them per device (CPU: smaller, faster; GPU: larger)."""

    density_components: tuple[int, int, int] = (16, 4, 4)  # per mode: xy|z, xz|y, yz|x
    appearance_components: tuple[int, int, int] = (48, 12, 12)
    app_dim: int = 27  # features fed to the colour decoder
    decoder_width: int = 128
    view_pe: int = 0  # positional-encoding frequencies of view directions in the decoder
    feature_pe: int = 0  # positional-encoding frequencies of appearance features in the decoder
    grid_init: tuple[int, int, int] = (128, 128, 128)  # starting vertices per axis (x, y, z)
    grid_final: tuple[int, int, int] = (320, 320, 320)  # after the last upsampling
    upsample_steps: tuple[int, ...] = (2000, 3000, 4000, 5500)
    alpha_mask_steps: tuple[int, ...] = (2500, 4000)
    density_activation: str = "relu"  # relu, or softplus(feature + density_shift)
    density_shift: float = -10.0
    distance_scale: float = 25.0  # sigma = distance_scale * activation(feature)
    init_scale: float = 0.1  # factors start as init_scale * N(0, 1)
    step_ratio: float = 0.5  # sample spacing in voxels
    max_samples: int = 0  # cap on samples per ray (0: none)
    colour_samples: int = 8  # colour evaluations per ray, at weight quantiles (0: threshold)
    weight_threshold: float = 1e-4  # colour_samples=0: colour only where the weight exceeds this
    alpha_mask_threshold: float = 1e-4
    # box scenes (not NDC, not contracted): at every alpha-mask update the box shrinks to the
    # cells the mask keeps (when they leave room), and every later upsampling spreads its
    # vertex count over that box (TensoRF's shrink, which it does once, at its first update:
    # there a softplus density starts empty, here a ReLU one starts as fog in the whole box);
    # see TensorfModel.before_step
    shrink: bool = True
    # box scenes: from the second alpha-mask update on (TensoRF's filtering_rays), training
    # batches are drawn only from the rays that may meet a cell the mask keeps; the others get
    # density 0 at every sample, so no gradient (nerfcli/render/ray_filter.py). Drawn again
    # whenever the mask changes; see TensorfModel.ray_filter_key
    filter_rays: bool = True
    tv_weight_density: float = 0.02  # times the mean squared neighbour difference of planes
    tv_weight_app: float = 0.02
    l1_weight: float = 0.0
    lr_grid: float = 0.02
    lr_network: float = 1e-3
    aabb: tuple[float, ...] = ()  # x0 y0 z0 x1 y1 z1; empty: NDC box, or [-1, 1]^3 (spherified)
    # unbounded scenes: none (the grid spans the box), linf or l2 (the box is the inner
    # region, the rest of space contracted around it; nerfcli.render.contraction)
    contraction: str = "none"
    outer_samples: int = 0  # contraction: samples per ray past the box (0: from the grid)
    # --- occupancy estimator (issue 23, nerfcli/render/occupancy.py): box and unbounded
    # scenes only (NDC keeps its path). A grid of the field's cells, updated from the exact
    # vertex density every estimator_every training steps (0: never), a moving maximum that
    # decays by estimator_decay an update; training and renders read density only in its
    # occupied cells (alpha > alpha_mask_threshold at the sample spacing there). Off (0) by
    # default: lego half-res, 5 minutes side by side at 1 thread, 16 gave 991 steps and 25.60 dB
    # held-out against 1325 steps and 25.74 dB without (bench/README.md).
    estimator_every: int = 0
    estimator_decay: float = 0.95

    # Keys of the shared sections TensoRF does not read, and what it reads instead of other
    # models' keys (a --set on one of them is a usage error that names the advice).
    INSTEAD: ClassVar[dict[str, str]] = {
        "train.lr": "set model.tensorf.lr_grid (the grids) and model.tensorf.lr_network "
        "(basis and decoder) instead",
        "model.nerf.n_samples": "set model.tensorf.step_ratio (sample spacing in voxels) or "
        "model.tensorf.max_samples instead",
        "model.nerf.n_importance": "set model.tensorf.colour_samples (colour evaluations per "
        "ray) instead",
        "model.nerf.lindisp": "TensoRF samples evenly in its grid; model.tensorf.step_ratio sets "
        "the spacing",
        "model.nerf.raw_noise_std": "TensoRF adds no noise to its densities",
    }

    def validate(self) -> None:
        """ConfigError naming the first key no TensoRF model can be built or trained with."""
        _check_choices(self)
        _check_ranges(self)


def _check_choices(m: TensorfModelConfig) -> None:
    if m.density_activation not in ("relu", "softplus"):
        raise ConfigError(
            f"model.tensorf.density_activation must be relu or softplus, got "
            f"{m.density_activation!r}"
        )
    if m.aabb and len(m.aabb) != 6:
        raise ConfigError(
            f"model.tensorf.aabb needs 6 numbers (x0, y0, z0, x1, y1, z1) or [], got {m.aabb}"
        )
    if m.aabb and not all(m.aabb[i] < m.aabb[i + 3] for i in range(3)):
        raise ConfigError(f"model.tensorf.aabb needs lo < hi on every axis, got {m.aabb}")
    if list(m.upsample_steps) != sorted(set(m.upsample_steps)):
        raise ConfigError("model.tensorf.upsample_steps must be increasing")
    if m.contraction not in ("none", *CONTRACTIONS):
        raise ConfigError(
            f"model.tensorf.contraction must be none, {' or '.join(CONTRACTIONS)}, got "
            f"{m.contraction!r}"
        )


def _check_ranges(m: TensorfModelConfig) -> None:
    """Values no model can run with (a negative width, an infinite learning rate, a negative
    density scale): refused here, not found as NaN weights after training."""

    def check(name: str, low: float, strict: bool = False) -> None:
        values = getattr(m, name)
        for value in values if isinstance(values, tuple) else (values,):
            check_at_least(value, f"model.tensorf.{name}", low, strict)

    for name in ("density_components", "appearance_components", "app_dim", "decoder_width"):
        check(name, 1)
    for name in ("grid_init", "grid_final"):
        check(name, 2)
    for name in ("view_pe", "feature_pe", "max_samples", "colour_samples", "outer_samples"):
        check(name, 0)
    for name in ("distance_scale", "init_scale", "step_ratio", "lr_grid", "lr_network"):
        check(name, 0, strict=True)
    for name in ("tv_weight_density", "tv_weight_app", "l1_weight", "alpha_mask_threshold"):
        check(name, 0)
    for name in ("estimator_every", "estimator_decay"):
        check(name, 0)
    # any finite threshold: a negative one colours every sample (the reference tests' setting)
    check("weight_threshold", -math.inf, strict=True)
    check("density_shift", -math.inf, strict=True)
