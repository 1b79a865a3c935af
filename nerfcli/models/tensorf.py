"""TensoRF-VM (Chen et al. 2022): a radiance field stored as vector-matrix factors.

Density and appearance features at a point p = (x, y, z) inside the scene box are sums of
products of a 2D plane and a 1D line factor over three modes (xy|z, xz|y, yz|x):

    density_feature(p) = sum_m sum_c P_m[c](p_plane) * L_m[c](p_line)            (a scalar)
    appearance(p)      = basis @ concat_m( P'_m[c](p_plane) * L'_m[c](p_line) )  (app_dim)
    sigma = distance_scale * activation(density_feature)      (relu, or softplus(x + shift))
    rgb   = sigmoid(MLP([appearance, view direction, their positional encodings]))

Planes are [1, C, H, W] and lines [1, C, L, 1], sampled bilinearly with align_corners=True over
the scene box, so grid vertices sit at integer pixel positions. Forward-facing scenes are
rendered in NDC with the LLFF box [[-1.5, -1.67, -1], [1.5, 1.67, 1]]; other scenes (`--spherify`)
in world coordinates inside `model.tensorf.aabb`, or by default a cube of half-size 1 (spherified
poses put the cameras on a sphere of radius about 1 around the object), or the box a caller sets
with `set_scene_box` (see `scene_box_from_cameras`). There each ray is sampled only over the
part of its [near, far] inside the box (`render.box_interval`), as TensoRF does.

Every fast path has a plain reference beside it, and tests check that they agree (values and
gradients, several batch shapes):
- density, NDC (`density_slices`): NDC rays all start at z = -1 with direction z = 2, and the
  sample depths are jittered once per batch, so the rays share the z of every sample. The
  factors are multiplied out into S z-slices [S, Ry, Rx] (one [S, C] x [C, Ry*Rx] product for
  the xy mode, one batched rank-C product for the other two), and each sample is a bilinear
  read of its slice, in ONE grid_sample call threaded over the slices. Exact, because a plane
  (bilinear in its two axes) times a line (linear in the third) is trilinear inside a voxel.
- density, world coordinates (`density_feature_fast`): the same product into a dense
  [Rz, Ry, Rx] volume, read trilinearly (8 scalar reads instead of 4 x 24 + 2 x 24).
  The reference for both samples the three planes and lines with grid_sample.
- appearance: the reference makes three grid_sample calls (one per plane); the fast path splits
  the planes into equal channel groups (a free view) and batches planes of one size together,
  so the xz and yz planes (and the 48-channel xy plane's 4 groups) go through single
  grid_sample calls, which PyTorch's CPU kernel threads over the batch dimension.
- colour: the reference evaluates colour at every sample. The fast path evaluates it at
  `colour_samples` weight quantiles per ray and holds it piecewise constant between them
  (`_colour_by_quantiles`; exact when colour is constant along a ray), or with
  colour_samples = 0 only where the ray weight exceeds `weight_threshold` (TensoRF's rule; the
  skipped samples contribute at most that weight each).
- total variation: a hand-written backward beside the plain autograd form.
No-grad renders reuse the slices and stacked planes across chunks (`_cached`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nerfcli.config import Config, TensorfModelConfig
from nerfcli.data.rays import Rays
from nerfcli.errors import CheckpointError, ConfigError
from nerfcli.models import RadianceModel
from nerfcli.models.encoding import positional_encoding
from nerfcli.render.composite import (
    RenderResult,
    alpha_from_density,
    composite_grouped,
    composite_weights,
    sample_deltas,
    weights_from_alpha,
)
from nerfcli.render.samplers import box_interval, sample_points, stratified_samples

# The LLFF box in NDC: NDC x, y of the training rays reach a little past [-1, 1].
NDC_BOX = ((-1.5, -1.67, -1.0), (1.5, 1.67, 1.0))
# Spherified scenes: the cameras sit on a sphere of radius ~1 around the object.
SPHERIFY_BOX = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))

# (plane axes, line axis) per mode; axes index (x, y, z). Plane tensors are [1, C, H, W] with W
# along the first axis listed and H along the second, as grid_sample reads (x, y) = (W, H).
PLANE_AXES = ((0, 1), (0, 2), (1, 2))
LINE_AXES = (2, 1, 0)


# ----------------------------------------------------------------------------- device profiles


def device_profile(device_type: str, ndc: bool = True) -> dict:
    """Config overrides for a device type ("cpu", "cuda", "mps") and scene kind (forward-facing
    in NDC, or a surround capture in world coordinates), merged by the train command after the
    dataclass defaults and before the scene preset and --set.

    CPU ("cpu"): built for `nerf train fern/` in 10 minutes on 2 cores. Measured on fern at
    factor 8 (bench/profile_tensorf.py, this profile, fairly quiet machine): held-out PSNR
    (views 0, 8, 16, full size) 22.4 dB at 1 min, 23.1 at 2 min, 24.1 at 5 min and 24.3 at the
    end (2600 iterations, 8.3 min of training); 1.1 GB peak memory. On the slower AVX2
    machine of bench/README.md (2026-11-30): 21.2 dB at 1 min, 23.6 at 5, 24.1 at 10 min
    (step 2068 of 2600), 1.0 GB. Why each number:
    - coarse to fine, 96x96x64 -> 320x320x128 vertices, upsampled at 350/700/1050/1400: early
      steps cost ~95 ms and already reach 22 dB by step 600; the xy plane (the image plane in
      NDC) ends near one vertex per 1.5 pixels of the 504-pixel-wide view, z stays coarse.
    - step_ratio 1.0, at most 112 samples per ray: one sample per z voxel.
    - colour_samples 8: colour at 8 weight quantiles per ray instead of the ~30 samples above
      a 1e-4 weight threshold (1 core, 237^2 grid, 2048 rays: 0.48 s/step with the threshold,
      0.39 s with quantiles, 0.24 s adding the z-slice density); costs 0.08 dB at eval on a
      model trained with the threshold (0.04 dB with 12 quantiles).
    - decoder_width 64, as the probe (TensoRF's 128 would double the decoder cost; not
      compared).
    - batch 4096 rays: the per-step costs that scale with the grid (z-slices, TV, Adam)
      are paid once for twice the rays; 2600 iterations take ~8.3 minutes (~230 ms per step
      at the final grid, ~90 ms at the first), leaving room for a slower or busier machine.
    - render chunk 8192 rays: 1.2-1.7 s per 504x378 frame (2.4-3.3 min for the 120-frame
      spiral).
    GPU (anything else): TensoRF's LLFF recipe, shortened: 128x128x96 -> 448x448x256, half-
    voxel steps, 16 colour quantiles, the 128-wide decoder, 8000 iterations of 4096 rays
    (aimed at ~25 dB on fern in under 5 minutes on one H100; not measured here).
    Surround captures (`--spherify`, world coordinates) take an isotropic grid in the cube
    around the cameras instead: CPU 64^3 -> 192^3 (a dense 192^3 density volume per step costs
    about half the 320x320x128 NDC grid's), up to 128 samples along the part of each ray inside
    the box; GPU 128^3 -> 300^3 (TensoRF's size for objects).
    """
    cpu = device_type == "cpu"
    tensorf = dict(CPU_TENSORF if cpu else GPU_TENSORF)
    if not ndc:
        tensorf.update(CPU_SURROUND if cpu else GPU_SURROUND)
    return {
        "model": {"tensorf": tensorf},
        "train": dict(CPU_TRAIN if cpu else GPU_TRAIN),
        "render": dict(CPU_RENDER if cpu else GPU_RENDER),
    }


CPU_TENSORF: dict = {
    "grid_init": [96, 96, 64],
    "grid_final": [320, 320, 128],
    "upsample_steps": [350, 700, 1050, 1400],
    "alpha_mask_steps": [],  # in NDC every sample's density is one bilinear read: no gain
    "step_ratio": 1.0,
    "max_samples": 112,
    "colour_samples": 8,
    "decoder_width": 64,
}
CPU_TRAIN: dict = {"iters": 2600, "batch_rays": 4096, "lr_decay_steps": 2600}
CPU_RENDER: dict = {"chunk": 8192}
GPU_TENSORF: dict = {
    "grid_init": [128, 128, 96],
    "grid_final": [448, 448, 256],
    "upsample_steps": [1000, 2000, 3000, 4000],
    "alpha_mask_steps": [],
    "step_ratio": 0.5,
    "max_samples": 0,
    "colour_samples": 16,
    "decoder_width": 128,
}
CPU_SURROUND: dict = {
    "grid_init": [64, 64, 64],
    "grid_final": [192, 192, 192],
    "max_samples": 128,
}
GPU_SURROUND: dict = {"grid_init": [128, 128, 128], "grid_final": [300, 300, 300]}
GPU_TRAIN: dict = {"iters": 8000, "batch_rays": 4096, "lr_decay_steps": 8000}
GPU_RENDER: dict = {"chunk": 16384}


# ----------------------------------------------------------------------------- helpers


def grid_schedule(
    grid_init: tuple[int, int, int], grid_final: tuple[int, int, int], stages: int
) -> list[tuple[int, int, int]]:
    """Resolutions [stages + 1] from grid_init to grid_final, geometric per axis."""
    out = []
    for k in range(stages + 1):
        frac = k / stages if stages else 0.0
        out.append(
            tuple(
                int(round(a * (b / a) ** frac)) if k < stages else int(b)
                for a, b in zip(grid_init, grid_final)
            )
        )
    return out


def scene_box_from_cameras(c2w: torch.Tensor, margin: float = 1.0) -> tuple[list, list]:
    """A cube centred on the origin holding every camera centre (times margin): the box for
    captures that surround an object. c2w: [N, 3, 4]."""
    centres = torch.as_tensor(c2w, dtype=torch.float32)[:, :3, 3]  # [N, 3]
    half = float(torch.linalg.norm(centres, dim=-1).max()) * margin
    return [-half, -half, -half], [half, half, half]


class _TotalVariation(torch.autograd.Function):
    """mean(dh^2) + mean(dw^2) over the last two axes, with a hand-written backward: autograd
    of the sliced form allocates a zero tensor of the full plane per slice, 3x slower here."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        diff_h = tensor[..., 1:, :] - tensor[..., :-1, :]  # [..., H-1, W]
        diff_w = tensor[..., :, 1:] - tensor[..., :, :-1]  # [..., H, W-1]
        ctx.save_for_backward(diff_h, diff_w)
        ctx.shape = tensor.shape
        total = tensor.new_zeros(())
        if diff_h.numel():
            total = total + diff_h.pow(2).mean()
        if diff_w.numel():
            total = total + diff_w.pow(2).mean()
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor) -> torch.Tensor:
        diff_h, diff_w = ctx.saved_tensors
        grad = grad_total.new_zeros(ctx.shape)
        if diff_h.numel():
            step_h = diff_h * (2.0 * grad_total / diff_h.numel())
            grad[..., 1:, :] += step_h
            grad[..., :-1, :] -= step_h
        if diff_w.numel():
            step_w = diff_w * (2.0 * grad_total / diff_w.numel())
            grad[..., :, 1:] += step_w
            grad[..., :, :-1] -= step_w
        return grad


def total_variation(tensor: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbours along the last two axes (a line [1, C, L, 1]
    only has the first of those). Zero exactly when the tensor is constant along them."""
    return _TotalVariation.apply(tensor)


def total_variation_reference(tensor: torch.Tensor) -> torch.Tensor:
    """Plain autograd form of total_variation, kept for tests."""
    total = tensor.new_zeros(())
    if tensor.shape[-2] > 1:
        total = total + torch.mean((tensor[..., 1:, :] - tensor[..., :-1, :]) ** 2)
    if tensor.shape[-1] > 1:
        total = total + torch.mean((tensor[..., :, 1:] - tensor[..., :, :-1]) ** 2)
    return total


def _sample_plane(plane: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear plane [1, C, H, W] at coords [P, 2] in [-1, 1] (x -> W, y -> H) -> [P, C]."""
    out = F.grid_sample(plane, coords.view(1, -1, 1, 2), mode="bilinear", align_corners=True)
    return out.view(plane.shape[1], -1).t()  # [P, C]


def _sample_line(line: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Linear line [1, C, L, 1] at coords [P] in [-1, 1] -> [P, C]."""
    grid = torch.stack([torch.zeros_like(coords), coords], -1)  # [P, 2]
    return _sample_plane(line, grid)


FactorBatches = list[tuple[torch.Tensor, list[tuple[int, int]]]]


def stack_factors(tensors: list[torch.Tensor]) -> FactorBatches:
    """Arrange [1, C_m, H_m, W_m] tensors as grid_sample batches [N, g, H, W]: each tensor is
    split into channel groups of g = gcd(C_m) (a free view), and tensors of equal (H, W) share
    a batch (one copy of the smaller planes; the 48-channel xy plane is never copied).
    Returns [(batch, [(tensor index, groups), ...]), ...]."""
    group = math.gcd(*[t.shape[1] for t in tensors])
    by_shape: dict[tuple[int, int], list[int]] = {}
    for index, tensor in enumerate(tensors):
        by_shape.setdefault(tuple(tensor.shape[2:]), []).append(index)
    batches = []
    for (height, width), members in by_shape.items():
        parts = [tensors[i].view(-1, group, height, width) for i in members]
        batch = parts[0] if len(parts) == 1 else torch.cat(parts, 0)  # [N, g, H, W]
        batches.append((batch, [(i, tensors[i].shape[1] // group) for i in members]))
    return batches


def sample_stacked(batches: FactorBatches, coords: list[torch.Tensor]) -> torch.Tensor:
    """Sample stack_factors batches, tensor m at coords[m] [P, 2] in [-1, 1] (x -> W, y -> H),
    with one grid_sample call per batch -> [P, sum C_m] in the original tensor order. The CPU
    kernel threads over the channel groups of a batch."""
    outputs: dict[int, torch.Tensor] = {}
    for batch, members in batches:
        grid = torch.cat([coords[i][None].expand(groups, -1, -1) for i, groups in members], 0)
        out = F.grid_sample(batch, grid[:, :, None, :], mode="bilinear", align_corners=True)
        out = out.view(out.shape[0] * out.shape[1], -1)  # [N * g, P]
        start = 0
        for i, groups in members:
            size = groups * batch.shape[1]
            outputs[i] = out[start : start + size]  # [C_i, P]
            start += size
    return torch.cat([outputs[i] for i in range(len(outputs))], 0).t()  # [P, sum C]


def _stacked_sample(tensors: list[torch.Tensor], coords: list[torch.Tensor]) -> torch.Tensor:
    """stack_factors + sample_stacked: [P, sum C_m]."""
    return sample_stacked(stack_factors(tensors), coords)


def trilinear_gather(volume: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation of a volume [Rz, Ry, Rx] at coords [P, 3] = (x, y, z) in
    [-1, 1] (align_corners=True: vertices at the box corners) -> [P]. Coordinates are clamped
    into the box."""
    sizes = volume.shape[::-1]  # (Rx, Ry, Rz)
    size_t = coords.new_tensor([s - 1 for s in sizes])  # [3]
    pixel = (coords.clamp(-1.0, 1.0) + 1.0) * (0.5 * size_t)  # [P, 3]
    lower = torch.minimum(pixel.floor(), (size_t - 1).clamp(min=0))  # [P, 3]
    frac = pixel - lower  # [P, 3] in [0, 1]
    lower = lower.long()
    rx, ry = sizes[0], sizes[1]
    base = (lower[:, 2] * ry + lower[:, 1]) * rx + lower[:, 0]  # [P]
    step_x = 1 if sizes[0] > 1 else 0
    step_y = rx if sizes[1] > 1 else 0
    step_z = rx * ry if sizes[2] > 1 else 0
    offsets = torch.tensor(
        [
            dz * step_z + dy * step_y + dx * step_x
            for dz in (0, 1)
            for dy in (0, 1)
            for dx in (0, 1)
        ],
        device=coords.device,
    )  # [8]
    values = volume.reshape(-1)[base[:, None] + offsets]  # [P, 8]
    fx, fy, fz = frac.unbind(-1)  # [P] each
    wx = torch.stack([1.0 - fx, fx], -1)  # [P, 2]
    wy = torch.stack([1.0 - fy, fy], -1)
    wz = torch.stack([1.0 - fz, fz], -1)
    weights = (wz[:, :, None, None] * wy[:, None, :, None] * wx[:, None, None, :]).reshape(-1, 8)
    return torch.sum(values * weights, -1)  # [P]


class ColourDecoder(nn.Module):
    """[features, viewdirs, PE(features), PE(viewdirs)] -> width -> width -> rgb (sigmoid)."""

    def __init__(self, in_features: int, width: int, feature_pe: int, view_pe: int):
        super().__init__()
        self.feature_pe = feature_pe
        self.view_pe = view_pe
        in_channels = in_features + 3 + 2 * feature_pe * in_features + 2 * view_pe * 3
        self.layers = nn.Sequential(
            nn.Linear(in_channels, width),
            nn.ReLU(inplace=True),
            nn.Linear(width, width),
            nn.ReLU(inplace=True),
            nn.Linear(width, 3),
        )
        nn.init.constant_(self.layers[-1].bias, 0.0)

    def forward(self, features: torch.Tensor, viewdirs: torch.Tensor) -> torch.Tensor:
        inputs = [features, viewdirs]  # [P, F], [P, 3]
        if self.feature_pe > 0:
            inputs.append(positional_encoding(features, self.feature_pe, include_input=False))
        if self.view_pe > 0:
            inputs.append(positional_encoding(viewdirs, self.view_pe, include_input=False))
        return torch.sigmoid(self.layers(torch.cat(inputs, -1)))  # [P, 3]


# ----------------------------------------------------------------------------- the model


class TensorfModel(RadianceModel):
    name = "tensorf"

    def __init__(self, cfg: Config):
        super().__init__()
        m = cfg.model.tensorf
        validate_tensorf_config(m)
        self.cfg = m
        self.ndc = cfg.data.ndc
        self.white_bkgd = cfg.data.background == "white"
        self.perturb = cfg.render.perturb
        self.lr_decay_rate = cfg.train.lr_decay_rate
        self.lr_decay_steps = cfg.train.lr_decay_steps
        self.schedule = grid_schedule(m.grid_init, m.grid_final, len(m.upsample_steps))
        if m.aabb:
            lo, hi = m.aabb[:3], m.aabb[3:]
        else:
            lo, hi = NDC_BOX if self.ndc else SPHERIFY_BOX
        self.register_buffer("aabb", torch.tensor([lo, hi], dtype=torch.float32))  # [2, 3]
        # occupancy of grid cells [Rz-1, Ry-1, Rx-1]; empty (numel 0) until the first update
        self.register_buffer("alpha_mask", torch.zeros(0, dtype=torch.bool))
        self.resolution = tuple(m.grid_init)
        self.density_planes, self.density_lines = self._make_factors(
            m.density_components, self.resolution, m.init_scale
        )
        self.app_planes, self.app_lines = self._make_factors(
            m.appearance_components, self.resolution, m.init_scale
        )
        self.basis = nn.Linear(sum(m.appearance_components), m.app_dim, bias=False)
        self.decoder = ColourDecoder(m.app_dim, m.decoder_width, m.feature_pe, m.view_pe)
        # no-grad renders reuse derived tensors (density volume, stacked planes) across chunks
        self._caches: dict[str, tuple[tuple, object]] = {}
        self.last_sample_counts = (0, 0, 0)

    # ------------------------------------------------------------------ factors

    @staticmethod
    def _make_factors(
        components: tuple[int, int, int], resolution: tuple[int, int, int], scale: float
    ) -> tuple[nn.ParameterList, nn.ParameterList]:
        planes, lines = [], []
        for mode in range(3):
            (a, b), c = PLANE_AXES[mode], LINE_AXES[mode]
            planes.append(
                nn.Parameter(scale * torch.randn(1, components[mode], resolution[b], resolution[a]))
            )
            lines.append(nn.Parameter(scale * torch.randn(1, components[mode], resolution[c], 1)))
        return nn.ParameterList(planes), nn.ParameterList(lines)

    def grid_parameters(self) -> list[nn.Parameter]:
        return [*self.density_planes, *self.density_lines, *self.app_planes, *self.app_lines]

    def network_parameters(self) -> list[nn.Parameter]:
        return [*self.basis.parameters(), *self.decoder.parameters()]

    def param_groups(self, lr: float) -> list[dict]:
        """Grids at lr_grid, basis + decoder at lr_network (the train lr is not used: the two
        rates differ by 20x in TensoRF and neither is the classic model's 5e-4)."""
        options: dict = {"betas": (0.9, 0.99)}  # TensoRF's betas
        if self.aabb.device.type in ("cpu", "cuda"):
            # one fused kernel per step: 7 ms instead of 28-38 ms for 8 M parameters on 2 cores
            options["fused"] = True
        return [
            {"params": self.grid_parameters(), "lr": self.cfg.lr_grid, **options},
            {"params": self.network_parameters(), "lr": self.cfg.lr_network, **options},
        ]

    def scene_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.aabb[0], self.aabb[1]

    def set_scene_box(self, lo, hi) -> None:
        """Use the box lo..hi (3 floats each, world or NDC units as the rays) for the grids."""
        box = torch.tensor([list(lo), list(hi)], dtype=torch.float32)
        if not bool((box[1] > box[0]).all()):
            raise ConfigError(f"scene box needs lo < hi on every axis, got {box.tolist()}")
        self.aabb.copy_(box.to(self.aabb.device))
        self._caches = {}

    def normalize(self, points: torch.Tensor) -> torch.Tensor:
        """World/NDC points [..., 3] -> box coordinates in [-1, 1] inside the box."""
        lo, hi = self.aabb[0], self.aabb[1]
        return (points - lo) * (2.0 / (hi - lo)) - 1.0

    # ------------------------------------------------------------------ density

    def density_feature_reference(self, coords: torch.Tensor) -> torch.Tensor:
        """Plain VM evaluation: three plane and three line grid_sample calls -> [P]."""
        feature = coords.new_zeros(coords.shape[0])
        for mode in range(3):
            plane = _sample_plane(self.density_planes[mode], coords[:, PLANE_AXES[mode]])
            line = _sample_line(self.density_lines[mode], coords[:, LINE_AXES[mode]])
            feature = feature + torch.sum(plane * line, -1)  # [P]
        return feature

    def density_volume(self) -> torch.Tensor:
        """The density feature at every grid vertex [Rz, Ry, Rx]: three matrix products."""
        p_xy, p_xz, p_yz = (p[0] for p in self.density_planes)  # [C, Ry, Rx], [C, Rz, Rx], ..
        l_z, l_y, l_x = (line[0, :, :, 0] for line in self.density_lines)  # [C, Rz], ..
        rx, ry, rz = p_xy.shape[2], p_xy.shape[1], p_xz.shape[1]
        volume = (l_z.t() @ p_xy.reshape(p_xy.shape[0], -1)).view(rz, ry, rx)
        volume = volume + torch.matmul(l_y.t()[None], p_xz.transpose(0, 1))  # [Rz, Ry, Rx]
        volume = volume + (p_yz.reshape(p_yz.shape[0], -1).t() @ l_x).view(rz, ry, rx)
        return volume

    def _cached(self, name: str, params: list[torch.Tensor], build, extra: tuple = ()):
        """build() under grad; without grad, reused while `params` are unchanged in place
        (and `extra` is equal)."""
        if torch.is_grad_enabled():
            return build()
        key = tuple((p.data_ptr(), p._version, tuple(p.shape)) for p in params) + extra
        hit = self._caches.get(name)
        if hit is None or hit[0] != key:
            hit = (key, build())
            self._caches[name] = hit
        return hit[1]

    def _cached_density_volume(self) -> torch.Tensor:
        params = [*self.density_planes, *self.density_lines]
        return self._cached("density_volume", params, self.density_volume)

    def density_feature_fast(self, coords: torch.Tensor) -> torch.Tensor:
        """Same values as density_feature_reference for coords inside the box -> [P]."""
        volume = self._cached_density_volume()  # [Rz, Ry, Rx]
        if not torch.is_grad_enabled():  # one fused kernel; its backward is the slow part
            grid = coords.clamp(-1.0, 1.0).view(1, 1, 1, -1, 3)
            out = F.grid_sample(volume[None, None], grid, align_corners=True)  # [1,1,1,1,P]
            return out.view(-1)
        return trilinear_gather(volume, coords)

    def density_at_depths(self, z: torch.Tensor) -> torch.Tensor:
        """Density feature on z-slices [S, Ry, Rx] at box z coordinates z [S], straight from the
        factors (no [Rz, Ry, Rx] volume): the xy mode is one [S, C] x [C, Ry*Rx] product and
        the xz and yz modes, rank-C outer products per slice, one batched product."""
        p_xy, p_xz, p_yz = (p[0] for p in self.density_planes)  # [C0,Ry,Rx] [C1,Rz,Rx] [C2,Rz,Ry]
        l_z, l_y, l_x = (line[0, :, :, 0] for line in self.density_lines)  # [C0,Rz] [C1,Ry] [C2,Rx]
        depth = l_z.shape[1]
        pixel = (z.clamp(-1.0, 1.0) + 1.0) * (0.5 * (depth - 1))  # [S]
        lower = torch.clamp(pixel.floor(), max=depth - 2).long()  # [S]
        frac = pixel - lower  # [S]
        upper = lower + 1

        def at_depth(factor: torch.Tensor) -> torch.Tensor:  # [C, Rz, ...] -> [S, C, ...]
            shape = (1, -1) + (1,) * (factor.dim() - 2)  # frac along the depth axis
            mixed = factor[:, lower] * (1.0 - frac).view(shape) + factor[:, upper] * frac.view(
                shape
            )
            return mixed.transpose(0, 1)

        num = z.shape[0]
        ry, rx = p_xy.shape[1], p_xy.shape[2]
        lz_at = at_depth(l_z[..., None])[..., 0]  # [S, C0]
        slices = (lz_at @ p_xy.reshape(p_xy.shape[0], -1)).view(num, ry, rx)  # [S, Ry, Rx]
        left = torch.cat(
            [l_y.t()[None].expand(num, -1, -1), at_depth(p_yz).transpose(1, 2)], -1
        )  # [S, Ry, C1 + C2]
        right = torch.cat([at_depth(p_xz), l_x[None].expand(num, -1, -1)], 1)  # [S, C1 + C2, Rx]
        return torch.baddbmm(slices, left, right)  # [S, Ry, Rx]

    def density_slices(self, rays: Rays, t_row: torch.Tensor) -> torch.Tensor:
        """Density [R, S] for rays that share the z of every sample (NDC rays all start at
        z = -1 with direction z = 2, and t_row [S] is shared): the volume is cut into S
        z-slices [S, Ry, Rx] once, then each sample is a bilinear read of its slice, in ONE
        grid_sample call threaded over the slices. Samples outside the box (or dropped by the
        alpha mask) get zero density, as in the reference."""
        lo, hi = self.aabb[0], self.aabb[1]
        scale = 2.0 / (hi - lo)  # [3]
        o, d = rays.origins, rays.directions  # [R, 3]
        # box x, y of every sample, built directly in grid_sample's [S, R, 2] layout
        start = (o[:, :2] - lo[:2]) * scale[:2] - 1.0  # [R, 2]
        grid = torch.addcmul(start[None], t_row[:, None, None], (d[:, :2] * scale[:2])[None])
        z = (o[:, 2].mean() + t_row * d[:, 2].mean() - lo[2]) * scale[2] - 1.0  # [S]

        def build_slices() -> torch.Tensor:
            return self.density_at_depths(z)  # [S, Ry, Rx]

        params = [*self.density_planes, *self.density_lines]
        slices = self._cached("density_slices", params, build_slices, (tuple(z.tolist()),))
        feature = F.grid_sample(slices[:, None], grid[:, :, None, :], align_corners=True)
        feature = feature.view(t_row.shape[0], -1).t()  # [R, S]
        inside = (grid.abs() <= 1.0).all(-1) & (z.abs() <= 1.0)[:, None]  # [S, R]
        valid = inside.t()  # [R, S]
        x, y = grid[..., 0].t(), grid[..., 1].t()  # [R, S]
        if self.alpha_mask.numel():
            coords = torch.stack([x, y, z[None].expand_as(x)], -1).reshape(-1, 3)
            valid = valid & self.alpha_mask_lookup(coords).view_as(valid)
        return self.activate_density(feature) * valid

    def activate_density(self, feature: torch.Tensor) -> torch.Tensor:
        if self.cfg.density_activation == "relu":
            return self.cfg.distance_scale * F.relu(feature)
        return self.cfg.distance_scale * F.softplus(feature + self.cfg.density_shift)

    # ------------------------------------------------------------------ appearance

    def appearance_reference(self, coords: torch.Tensor) -> torch.Tensor:
        """Appearance features [P, app_dim]: three plane and three line grid_sample calls."""
        products = []
        for mode in range(3):
            plane = _sample_plane(self.app_planes[mode], coords[:, PLANE_AXES[mode]])
            line = _sample_line(self.app_lines[mode], coords[:, LINE_AXES[mode]])
            products.append(plane * line)  # [P, C_m]
        return self.basis(torch.cat(products, -1))  # [P, app_dim]

    def appearance_fast(self, coords: torch.Tensor) -> torch.Tensor:
        """Same as appearance_reference: planes and lines each in ONE grid_sample call."""
        planes = self._cached(
            "app_planes", list(self.app_planes), lambda: stack_factors(list(self.app_planes))
        )
        lines = self._cached(
            "app_lines", list(self.app_lines), lambda: stack_factors(list(self.app_lines))
        )
        plane_coords = [coords[:, PLANE_AXES[mode]] for mode in range(3)]
        zeros = torch.zeros_like(coords[:, 0])
        line_coords = [torch.stack([zeros, coords[:, LINE_AXES[mode]]], -1) for mode in range(3)]
        plane_features = sample_stacked(planes, plane_coords)  # [P, sum C]
        line_features = sample_stacked(lines, line_coords)  # [P, sum C]
        return self.basis(plane_features * line_features)  # [P, app_dim]

    # ------------------------------------------------------------------ sampling

    def num_samples(self, near: float, far: float, rays_d: torch.Tensor | None = None) -> int:
        """Samples per ray: the ray's span in voxels / step_ratio, capped at max_samples.

        NDC rays cross the box in z (t in [0, 1] maps z from -1 to 1), i.e. Rz - 1 voxels;
        world rays span (far - near) |d| / voxel size.
        """
        res = torch.tensor(self.resolution, dtype=torch.float32)
        if self.ndc:
            span_voxels = float(res[2] - 1)
        else:
            size = (self.aabb[1] - self.aabb[0]).cpu()  # [3]
            voxel = float(torch.mean(size / (res - 1)))
            length = 1.0
            if rays_d is not None and rays_d.numel():
                length = float(torch.linalg.norm(rays_d, dim=-1).mean())
            # samples cover only the part of each ray inside the box (sample_depths)
            span = min((far - near) * length, float(torch.linalg.norm(size)))
            span_voxels = span / voxel
        count = int(math.ceil(span_voxels / self.cfg.step_ratio)) + 1
        if self.cfg.max_samples > 0:
            count = min(count, self.cfg.max_samples)
        return max(count, 2)

    def alpha_mask_lookup(self, coords: torch.Tensor) -> torch.Tensor:
        """Occupancy [P] (bool) of the grid cell holding each coord; all True without a mask."""
        if self.alpha_mask.numel() == 0:
            return torch.ones(coords.shape[0], dtype=torch.bool, device=coords.device)
        cz, cy, cx = self.alpha_mask.shape
        cells = coords.new_tensor([cx, cy, cz])  # [3]
        index = ((coords.clamp(-1.0, 1.0) + 1.0) * (0.5 * cells)).long()  # [P, 3]
        index = torch.minimum(index, (cells - 1).long())
        flat = (index[:, 2] * cy + index[:, 1]) * cx + index[:, 0]  # [P]
        return self.alpha_mask.reshape(-1)[flat]

    # ------------------------------------------------------------------ rendering

    def render_rays(
        self,
        rays: Rays,
        near: float,
        far: float,
        train: bool,
        generator: torch.Generator | None = None,
    ) -> RenderResult:
        return self._render(rays, near, far, train, generator, reference=False)

    def render_rays_reference(
        self,
        rays: Rays,
        near: float,
        far: float,
        train: bool,
        generator: torch.Generator | None = None,
    ) -> RenderResult:
        """The plain path: grid_sample per plane, colour at every sample."""
        return self._render(rays, near, far, train, generator, reference=True)

    def sample_depths(self, rays: Rays, near: float, far: float, train: bool, generator):
        """Sample depths t [R, S], stratified in [near, far] (jittered when training). In NDC
        the jitter is drawn once per sample index and shared by the rays of the batch, so all
        NDC rays keep a common z per sample (density_slices relies on it). In world
        coordinates each ray is sampled only where it is inside the scene box (as TensoRF
        does): samples outside would have zero density anyway."""
        num_rays = len(rays)
        num_samples = self.num_samples(near, far, rays.directions)
        device = rays.origins.device
        perturb = train and self.perturb
        if self.ndc:
            row = stratified_samples(near, far, 1, num_samples, perturb, False, generator, device)
            return row.expand(num_rays, num_samples)  # [R, S]
        t_in, t_out = box_interval(
            rays.origins, rays.directions, self.aabb[0], self.aabb[1], near, far
        )  # [R], [R]
        return stratified_samples(
            t_in, t_out, num_rays, num_samples, perturb, False, generator, device
        )  # [R, S]

    def _shares_depth(self, rays: Rays) -> bool:
        """True when every ray has the same z origin and z direction (NDC rays: -1 and 2)."""
        if not self.ndc or len(rays) == 0:
            return False
        oz, dz = rays.origins[:, 2], rays.directions[:, 2]  # [R]
        spread = torch.stack([oz.max() - oz.min(), dz.max() - dz.min()])
        return bool((spread <= 1e-5).all())

    def _coords_at(self, rays: Rays, t_vals: torch.Tensor, flat_index: torch.Tensor):
        """Box coordinates [P, 3] and ray index [P] of the samples at flat indices into [R, S]."""
        ray_index = torch.div(flat_index, t_vals.shape[1], rounding_mode="floor")  # [P]
        t = t_vals.reshape(-1)[flat_index]  # [P]
        points = rays.origins[ray_index] + t[:, None] * rays.directions[ray_index]  # [P, 3]
        return self.normalize(points), ray_index

    def _colour_at(self, rays, t_vals, flat_index, reference: bool) -> torch.Tensor:
        """Colour [R, S, 3] evaluated at the samples flat_index [A] into [R, S], 0 elsewhere."""
        num_rays, num_samples = t_vals.shape
        coords, ray_index = self._coords_at(rays, t_vals, flat_index)  # [A, 3], [A]
        if reference:
            features = self.appearance_reference(coords)  # [A, app_dim]
        else:
            features = self.appearance_fast(coords)
        colour = self.decoder(features, rays.viewdirs[ray_index])  # [A, 3]
        rgb = torch.zeros(num_rays * num_samples, 3, device=colour.device, dtype=colour.dtype)
        return rgb.index_put((flat_index,), colour).view(num_rays, num_samples, 3)

    def _colour_by_quantiles(
        self, rays, t_vals, weights
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Colour from K = colour_samples evaluations per ray: (colours [R, K, 3], the group
        [R, S] whose colour each sample takes, evaluated flat indices [U]).

        Each ray's weight mass is cut into K equal quantiles; the colour of quantile k is
        evaluated once, at the sample holding its middle ((k + 0.5) / K of the mass), and
        every sample whose mass lies in quantile k takes that colour. Compositing then uses
        the exact weights, so depth, opacity and the density gradients keep every sample; only
        the colour along the ray is held piecewise constant over K stretches of equal mass.
        Exact when colour does not change along a ray. Sample s of ray r has colour
        colours[r, group[r, s]]; `composite_grouped` composites that without expanding it.
        """
        num_rays, num_samples = t_vals.shape
        count = self.cfg.colour_samples
        w = weights.detach()  # [R, S]
        cdf = torch.cumsum(w, -1)  # [R, S]
        total = cdf[:, -1:].clamp(min=1e-10)  # [R, 1]
        middle = (cdf - 0.5 * w) / total  # [R, S] mass position of each sample, in [0, 1]
        group = torch.clamp((middle * count).long(), 0, count - 1)  # [R, S], non-decreasing
        quantiles = (torch.arange(count, device=w.device, dtype=w.dtype) + 0.5) / count  # [K]
        targets = quantiles[None] * total  # [R, K]
        chosen = torch.searchsorted(cdf, targets.contiguous())  # [R, K] first cdf >= target
        chosen = chosen.clamp(max=num_samples - 1)
        offsets = torch.arange(num_rays, device=w.device)[:, None] * num_samples  # [R, 1]
        unique, inverse = torch.unique(chosen + offsets, return_inverse=True)  # [U], [R, K]
        coords, ray_index = self._coords_at(rays, t_vals, unique)  # [U, 3], [U]
        features = self.appearance_fast(coords)  # [U, app_dim]
        colour = self.decoder(features, rays.viewdirs[ray_index])  # [U, 3]
        per_quantile = colour[inverse]  # [R, K, 3]
        return per_quantile, group, unique

    def _render(self, rays, near, far, train, generator, reference: bool) -> RenderResult:
        num_rays = len(rays)
        device = rays.origins.device
        t_vals = self.sample_depths(rays, near, far, train, generator)  # [R, S]
        num_samples = t_vals.shape[1]
        if not reference and self._shares_depth(rays):
            sigma = self.density_slices(rays, t_vals[0])  # [R, S]
            valid_index = None  # every sample may be valid; zero density marks the rest
        else:
            points = sample_points(rays.origins, rays.directions, t_vals)  # [R, S, 3]
            coords = self.normalize(points).reshape(-1, 3)  # [R*S, 3]
            valid = torch.all(coords.abs() <= 1.0, -1)  # [R*S]
            valid_index = torch.nonzero(valid).squeeze(-1)  # [V]
            if self.alpha_mask.numel():
                valid_index = valid_index[self.alpha_mask_lookup(coords[valid_index])]
            coords_valid = coords[valid_index]  # [V, 3]
            if reference:
                feature = self.density_feature_reference(coords_valid)  # [V]
            else:
                feature = self.density_feature_fast(coords_valid)  # [V]
            sigma_valid = self.activate_density(feature)  # [V]
            sigma = torch.zeros(num_rays * num_samples, device=device, dtype=sigma_valid.dtype)
            sigma = sigma.index_put((valid_index,), sigma_valid).view(num_rays, num_samples)

        deltas = sample_deltas(t_vals, rays.directions)  # [R, S]
        alpha = alpha_from_density(sigma, deltas)  # [R, S]
        weights = weights_from_alpha(alpha)  # [R, S]

        if reference:
            app_index = valid_index  # colour at every sample inside the box
            rgb = self._colour_at(rays, t_vals, app_index, reference=True)  # [R, S, 3]
            out = composite_weights(weights, rgb, t_vals, self.white_bkgd)
        elif self.cfg.colour_samples > 0:
            # colours [R, K, 3] by group [R, S]: composited without expanding them per sample
            colours, group, app_index = self._colour_by_quantiles(rays, t_vals, weights)
            out = composite_grouped(weights, group, colours, t_vals, self.white_bkgd)
        else:
            threshold = self.cfg.weight_threshold
            app_index = torch.nonzero(weights.detach().reshape(-1) > threshold).squeeze(-1)
            rgb = self._colour_at(rays, t_vals, app_index, reference=False)  # [R, S, 3]
            out = composite_weights(weights, rgb, t_vals, self.white_bkgd)

        # (all samples, samples given density, samples given colour), for profiling
        given_density = num_rays * num_samples if valid_index is None else len(valid_index)
        self.last_sample_counts = (num_rays * num_samples, given_density, len(app_index))
        return RenderResult(out.rgb, out.depth, out.disparity, out.opacity)

    # ------------------------------------------------------------------ loss

    def regularizer_scale(self, step: int) -> float:
        """TV/L1 weights decay with the learning rate, as in TensoRF."""
        return self.lr_decay_rate ** (step / self.lr_decay_steps)

    def tv_loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(density, appearance) total variation summed over the three planes."""
        density = sum(total_variation(p) for p in self.density_planes)
        appearance = sum(total_variation(p) for p in self.app_planes)
        return density, appearance

    def l1_loss(self) -> torch.Tensor:
        """Mean absolute density factor value (sparsity)."""
        total = sum(torch.mean(p.abs()) for p in self.density_planes)
        return total + sum(torch.mean(line.abs()) for line in self.density_lines)

    def loss(self, result, target, step):
        mse = torch.mean((result.rgb - target) ** 2)
        loss = mse
        scalars = {"mse": float(mse.detach())}
        scale = self.regularizer_scale(step)
        m = self.cfg
        if m.tv_weight_density > 0 or m.tv_weight_app > 0:
            tv_density, tv_app = self.tv_loss()
            loss = loss + scale * (m.tv_weight_density * tv_density + m.tv_weight_app * tv_app)
            scalars["tv_density"] = float(tv_density.detach())
            scalars["tv_app"] = float(tv_app.detach())
        if m.l1_weight > 0:
            l1 = self.l1_loss()
            loss = loss + scale * m.l1_weight * l1
            scalars["l1"] = float(l1.detach())
        return loss, scalars

    # ------------------------------------------------------------------ schedule

    def before_step(self, step: int) -> bool:
        changed = False
        if step in self.cfg.alpha_mask_steps:
            self.update_alpha_mask()
        if step in self.cfg.upsample_steps:
            stage = list(self.cfg.upsample_steps).index(step) + 1
            target = self.schedule[stage]
            if target != self.resolution:
                self.upsample(target)
                changed = True
        return changed

    @torch.no_grad()
    def upsample(self, resolution: tuple[int, int, int]) -> None:
        """Resample every factor to `resolution` (x, y, z) voxels (bilinear/linear with
        align_corners=True, so the represented field is kept up to interpolation)."""
        resolution = tuple(int(r) for r in resolution)
        for planes, lines in (
            (self.density_planes, self.density_lines),
            (self.app_planes, self.app_lines),
        ):
            for mode in range(3):
                (a, b), c = PLANE_AXES[mode], LINE_AXES[mode]
                plane = F.interpolate(
                    planes[mode].data,
                    size=(resolution[b], resolution[a]),
                    mode="bilinear",
                    align_corners=True,
                )
                line = F.interpolate(
                    lines[mode].data, size=(resolution[c], 1), mode="bilinear", align_corners=True
                )
                planes[mode] = nn.Parameter(plane.contiguous())
                lines[mode] = nn.Parameter(line.contiguous())
        self.resolution = resolution
        self._caches = {}
        if self.alpha_mask.numel():
            self.update_alpha_mask()

    def mask_step(self) -> float:
        """Sample spacing (in ray units, |d| = 1) the alpha-mask threshold refers to."""
        size = (self.aabb[1] - self.aabb[0]).cpu()
        res = torch.tensor(self.resolution, dtype=torch.float32)
        return float(torch.mean(size / (res - 1))) * self.cfg.step_ratio

    @torch.no_grad()
    def update_alpha_mask(self) -> None:
        """Mark grid cells that may hold alpha > alpha_mask_threshold.

        The density feature is trilinear inside a cell and the activation is monotone, so the
        largest density in a cell is at one of its 8 corners: a cell is kept when any corner is
        above the threshold, which never drops a significant sample (tested).
        """
        sigma = self.activate_density(self.density_volume())  # [Rz, Ry, Rx]
        alpha = 1.0 - torch.exp(-sigma * self.mask_step())
        active = (alpha > self.cfg.alpha_mask_threshold).float()[None, None]
        cells = F.max_pool3d(active, kernel_size=2, stride=1)[0, 0] > 0  # [Rz-1, Ry-1, Rx-1]
        self.alpha_mask = cells

    def occupancy(self) -> float:
        """Fraction of grid cells kept by the alpha mask (1.0 without one)."""
        if self.alpha_mask.numel() == 0:
            return 1.0
        return float(self.alpha_mask.float().mean())

    # ------------------------------------------------------------------ checkpoints

    def adapt_to_state_dict(self, state: dict) -> None:
        """Give every factor and the alpha mask the shapes stored in `state`."""
        try:
            resolution = (
                int(state["density_planes.0"].shape[3]),
                int(state["density_planes.0"].shape[2]),
                int(state["density_planes.1"].shape[2]),
            )
        except (KeyError, IndexError) as exc:
            raise CheckpointError(
                f"checkpoint has no TensoRF grid ({exc}); was it saved by another model?"
            ) from None
        if resolution != self.resolution:
            self.density_planes, self.density_lines = self._make_factors(
                self.cfg.density_components, resolution, 0.0
            )
            self.app_planes, self.app_lines = self._make_factors(
                self.cfg.appearance_components, resolution, 0.0
            )
            self.to(self.aabb.device)
            self.resolution = resolution
        mask = state.get("alpha_mask")
        if mask is not None and tuple(mask.shape) != tuple(self.alpha_mask.shape):
            self.alpha_mask = torch.zeros(mask.shape, dtype=torch.bool, device=self.aabb.device)
        self._caches = {}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._caches = {}
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, ndc={self.ndc}"


def validate_tensorf_config(m: TensorfModelConfig) -> None:
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
    for name in ("grid_init", "grid_final"):
        if min(getattr(m, name)) < 2:
            raise ConfigError(f"model.tensorf.{name} needs at least 2 voxels per axis")
    for name in ("density_components", "appearance_components"):
        if min(getattr(m, name)) < 1:
            raise ConfigError(f"model.tensorf.{name} needs at least 1 component per mode")
    if not m.step_ratio > 0:
        raise ConfigError(f"model.tensorf.step_ratio must be positive, got {m.step_ratio}")
    if list(m.upsample_steps) != sorted(set(m.upsample_steps)):
        raise ConfigError("model.tensorf.upsample_steps must be increasing")


__all__ = [
    "TensorfModel",
    "device_profile",
    "grid_schedule",
    "scene_box_from_cameras",
    "total_variation",
    "total_variation_reference",
    "trilinear_gather",
]
