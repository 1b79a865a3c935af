"""TensoRF-VM (Chen et al. 2022): a radiance field stored as vector-matrix factors.

    config.py             TensorfModelConfig (model.tensorf.*) and its checks
    factors.py            the plane/line layout and the tensor maths that reads and resizes it
    field.py              TensorfField: parameters, scene box, density/appearance, alpha mask
    render.py             RenderPolicy: sampling, density path, colour by weight quantiles,
                          compositing
    fast.py               the no-grad NDC render (eval, videos): the same image in fewer
                          passes, colour from baked appearance slices
    losses.py             MSE + decayed total-variation and L1 regularisers
    checkpoint_shapes.py  resize a fresh model to the grid a checkpoint stores; read the
                          names of checkpoints saved before the composition
    model.py              TensorfModel: has a field, an occupancy estimator and a render
                          policy; the RadianceModel interface, scene box, training schedule

Device profiles are in nerfcli.models.profiles, the plain reference paths the fast code is
tested against in nerfcli.models.reference.
"""

from nerfcli.models.profiles import tensorf_profile as device_profile
from nerfcli.models.tensorf.factors import grid_schedule, trilinear_gather
from nerfcli.models.tensorf.losses import total_variation
from nerfcli.models.tensorf.model import CUBE_BOX, NDC_BOX, TensorfModel, scene_box_for

__all__ = [
    "CUBE_BOX",
    "NDC_BOX",
    "TensorfModel",
    "device_profile",
    "grid_schedule",
    "scene_box_for",
    "total_variation",
    "trilinear_gather",
]
