"""The classic model's own config section, `model.nerf.*` (beside nerf.py, as nanoGPT's
GPTConfig beside GPT), and its checks: the networks, and the samples along each ray, which
only this model reads. Before they moved here the sampling keys were `render.n_samples`,
`render.n_importance`, `render.lindisp` and `render.raw_noise_std`; those spellings still work
(nerfcli.models.config.MOVED_KEYS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nerfcli.config import check_at_least
from nerfcli.errors import ConfigError


@dataclass(frozen=True)
class NerfModelConfig:
    netdepth: int = 8
    netwidth: int = 256
    netdepth_fine: int = 8
    netwidth_fine: int = 256
    multires: int = 10  # log2 of the max positional-encoding frequency for xyz
    multires_views: int = 4  # same for view directions
    use_viewdirs: bool = True
    skips: tuple[int, ...] = (4,)  # the input is concatenated again after these layers
    n_samples: int = 64  # coarse (stratified) samples per ray
    n_importance: int = 64  # extra fine (inverse-CDF) samples per ray; 0 disables the fine pass
    lindisp: bool = False  # sample linearly in inverse depth
    raw_noise_std: float = 1.0  # noise added to raw density during training
    # --- occupancy estimator (issue 23, nerfcli/render/occupancy.py): objects on a known
    # background only (Blender: white or random; not NDC, spherified or unbounded captures,
    # where something is seen outside the box). A grid of estimator_cells^3 over the
    # box, every cell occupied from the start (samples outside the box get no density), then
    # every estimator_every training steps both networks' density at a jittered point near
    # each vertex is folded into a moving maximum (decay estimator_decay an update), and a
    # cell stays occupied while its alpha at the coarse spacing (far - near) / n_samples tops
    # min(estimator_threshold, the mean), dilated by one cell. Only samples in occupied cells
    # reach the networks, in training and in renders. 0: never (the reference nerf-pytorch,
    # which samples the whole of [near, far]).
    estimator_every: int = 16
    estimator_cells: int = 32
    estimator_threshold: float = 0.01
    estimator_decay: float = 0.95

    # Keys of the shared sections the classic model does not read, and what it reads instead
    # of other models' keys (a --set on one of them is a usage error that names the advice).
    INSTEAD: ClassVar[dict[str, str]] = {
        "model.tensorf.lr_grid": "set train.lr instead",
        "model.tensorf.lr_network": "set train.lr instead",
    }

    def validate(self) -> None:
        """ConfigError naming the first key the classic model cannot be built with."""
        for name, low, high in (
            ("netdepth", 1, 1024),
            ("netwidth", 1, 65536),
            ("netdepth_fine", 1, 1024),
            ("netwidth_fine", 1, 65536),
            ("multires", 0, 64),
            ("multires_views", 0, 64),
            ("estimator_cells", 1, 512),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(f"model.nerf.{name} must be in {low}..{high}, got {value}")
        for skip in self.skips:  # input concatenated after layer `skip`: a later layer takes it
            if skip < 0 or skip in (self.netdepth - 1, self.netdepth_fine - 1):
                raise ConfigError(
                    f"model.nerf.skips: {skip} is not a layer followed by another (layers 0.."
                    f"{min(self.netdepth, self.netdepth_fine) - 2} of netdepth {self.netdepth})"
                )
        # The fine pass resamples the bins between inner coarse samples: it needs at least one.
        fewest = 3 if self.n_importance > 0 else 1
        if not self.n_samples >= fewest:
            raise ConfigError(
                f"model.nerf.n_samples must be at least {fewest}"
                f"{' with model.nerf.n_importance > 0' if fewest > 1 else ''}, "
                f"got {self.n_samples}"
            )
        if self.n_importance < 0:
            raise ConfigError("model.nerf.n_importance must be >= 0")
        check_at_least(self.raw_noise_std, "model.nerf.raw_noise_std", 0)
        check_at_least(self.estimator_every, "model.nerf.estimator_every", 0)
        if not 0.0 <= self.estimator_threshold < 1.0:
            raise ConfigError(
                "model.nerf.estimator_threshold is an alpha in [0, 1), "
                f"got {self.estimator_threshold}"
            )
        if not 0.0 <= self.estimator_decay <= 1.0:
            raise ConfigError(
                f"model.nerf.estimator_decay must be in [0, 1], got {self.estimator_decay}"
            )
