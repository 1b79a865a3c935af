"""Radiance models: fields (x, d) -> (sigma, rgb) and how each model renders rays.

base.py       RadianceModel, the interface the trainer, checkpoints, eval and video use
config.py     the whole Config (shared sections + each model's own), build_config, which
              model reads a --set key (check_keys_read)
registry.py   MODELS, build_model(cfg, scene_box), model_profile(name, device_type, kind)
profiles.py   every model's device/scene-kind config defaults
encoding.py   positional encoding
nerf.py       the classic NeRF (coarse + fine MLPs); nerf_config.py its config section
tensorf/      TensoRF-VM (config, factors, field, render policy, loss, checkpoint shapes)
reference.py  the plain paths the fast code is tested against
"""

from nerfcli.models.base import RadianceModel
from nerfcli.models.registry import MODELS, build_model, model_profile

__all__ = ["MODELS", "RadianceModel", "build_model", "model_profile"]
