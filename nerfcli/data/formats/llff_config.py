"""The LLFF format's own options (`data.llff.*` in a config, `--set data.llff.KEY=VALUE`),
typed, defaulted and checked here; the shared data keys are nerfcli.config.DataConfig's."""

from __future__ import annotations

import math
from dataclasses import dataclass

from nerfcli.config import DataConfig
from nerfcli.data.formats.options import format_options
from nerfcli.errors import ConfigError


@dataclass(frozen=True)
class LlffConfig:
    # rescale so the smallest near bound becomes 1/bd_factor (<= 0 disables)
    bd_factor: float = 0.75
    recenter: bool = True  # move the average pose to the identity
    spherify: bool = False  # around an object: spherify the poses, circle render path
    llff_camera: bool = False  # poses_bounds.npy's one camera even when sparse/0 has more

    @classmethod
    def of(cls, data: DataConfig) -> LlffConfig:
        return format_options(cls, data, "llff")

    def check(self) -> None:
        """ConfigError for values no LLFF load can use."""
        if not math.isfinite(self.bd_factor):
            raise ConfigError(f"data.llff.bd_factor must be a finite number, got {self.bd_factor}")

    def check_config(self, data: DataConfig) -> None:
        """ConfigError for a run's config that mixes these options badly with the shared keys
        (`nerf rays --spherify --ndc` may still ask for NDC rays in the spherified frame)."""
        if self.spherify and data.ndc:
            raise ConfigError(
                "data.llff.spherify needs data.ndc=false (NDC is for forward-facing "
                "captures); --spherify sets both"
            )


# what --spherify asks: the surround preset (an object around which the cameras stand) and
# the spherified frame without NDC
SPHERIFY_PRESET = "surround"
SPHERIFY_OVERRIDES = ("data.llff.spherify=true", "data.ndc=false")
