"""TensorfModel: TensoRF behind the RadianceModel interface, by composition. It has a field
(TensorfField, built in its scene box from TensoRF's config section), an occupancy estimator
(render/occupancy.py) and a render policy (RenderPolicy), and runs the training schedule
(coarse-to-fine upsampling, alpha-mask and estimator updates, optimizer groups, the decayed
loss)."""

from __future__ import annotations

import math

import numpy as np
import torch

from nerfcli.data.rays import Rays
from nerfcli.errors import ConfigError, DataError
from nerfcli.models.base import RadianceModel
from nerfcli.models.tensorf.checkpoint_shapes import adapt_to_state_dict, upgrade_field_keys
from nerfcli.models.tensorf.config import TensorfModelConfig
from nerfcli.models.tensorf.factors import grid_schedule
from nerfcli.models.tensorf.field import TensorfField
from nerfcli.models.tensorf.frozen import FrozenField
from nerfcli.models.tensorf.losses import tensorf_loss
from nerfcli.models.tensorf.render import RenderPolicy
from nerfcli.render.composite import RenderResult
from nerfcli.render.occupancy import OccupancyGrid
from nerfcli.render.ray_filter import rays_meeting

# The LLFF box in NDC: NDC x, y of the training rays reach a little past [-1, 1].
NDC_BOX = ((-1.5, -1.67, -1.0), (1.5, 1.67, 1.0))
# Without a box from the config or the scene: the cube of half-size 1 (spherified poses put the
# cameras on a sphere of radius about 1 around the object).
CUBE_BOX = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))


def scene_box_for(
    m: TensorfModelConfig, scene_box: np.ndarray | torch.Tensor | None, ndc: bool
) -> torch.Tensor:
    """The box [2, 3] (lo, hi; the rays' units: NDC or the training frame) the grid spans:
    `model.tensorf.aabb` when set, else the Scene's `scene_box`, else the NDC box when `ndc`,
    else the [-1, 1]^3 cube."""
    if m.aabb:
        return torch.tensor([list(m.aabb[:3]), list(m.aabb[3:])], dtype=torch.float32)
    if scene_box is not None:
        if isinstance(scene_box, torch.Tensor):
            box = scene_box.detach().to("cpu", torch.float32).clone()
        else:
            box = torch.as_tensor(np.asarray(scene_box, dtype=np.float32)).clone()
        if box.shape != (2, 3) or not bool(torch.isfinite(box).all()):
            raise DataError(f"scene box must be [2, 3] finite (lo, hi), got {box.tolist()}")
        if not bool((box[1] > box[0]).all()):
            raise DataError(f"scene box needs lo < hi on every axis, got {box.tolist()}")
        return box
    return torch.tensor(NDC_BOX if ndc else CUBE_BOX, dtype=torch.float32)


class TensorfModel(RadianceModel):
    """TensoRF-VM (Chen et al. 2022), by composition: the model *has* a field (`field`: the
    factors, basis and decoder over the box), an occupancy estimator (`estimator`) and a
    render policy (`policy`: samples, density path, colour, compositing), and runs the training
    schedule over them. `scene_box` [2, 3] is the Scene's box (see `scene_box_for` for which
    box wins). Checkpoints name the field's tensors `field.*` (`upgrade_field_keys` reads the
    names of checkpoints saved while the model was the field)."""

    name = "tensorf"

    def __init__(
        self,
        m: TensorfModelConfig,
        scene_box: np.ndarray | torch.Tensor | None = None,
        ndc: bool = True,
        background: str = "auto",
        perturb: bool = True,
    ):
        """`m`: TensoRF's config section; of the scene: its box [2, 3] (None: NDC or the
        cube), whether its rays are in NDC, its background (white composites onto white) and
        whether training jitters the samples."""
        super().__init__()
        m.validate()
        if ndc and m.contraction != "none":
            raise ConfigError(
                "model.tensorf.contraction is for unbounded scenes in world coordinates, not NDC; "
                "set data.ndc=false (a surround capture) or model.tensorf.contraction=none"
            )
        self.cfg = m
        box = scene_box_for(m, scene_box, ndc)
        self.field = TensorfField(m, box.clone())
        # the box before any shrink (upsample_target spreads the grid over the field's box)
        self.full_box = box
        self.policy = RenderPolicy.from_config(m, ndc, background == "white", perturb)
        self.schedule = grid_schedule(m.grid_init, m.grid_final, len(m.upsample_steps))
        # (all samples, samples given density, samples given colour) of the last render
        self.last_sample_counts = (0, 0, 0)
        # the occupancy estimator (render/occupancy.py) over the field's cells; built by the
        # first update in training (box and unbounded scenes), stored in checkpoints
        cells = tuple(r - 1 for r in self.field.resolution)
        self.estimator = OccupancyGrid(
            self.field.aabb, cells, m.contraction, m.alpha_mask_threshold, 0, m.estimator_decay
        )
        # the baked read-only render field (frozen.py): built by the first no-grad render in
        # world coordinates, dropped whenever the parameters may change (train(), a grad
        # render, loading, upsampling). Render threads that find none both build one (the
        # same values): a benign race, so no lock.
        self._frozen: FrozenField | None = None
        # the training-ray filter (ray_filter_key): alpha-mask updates reached, and a count
        # bumped whenever the mask may have changed (an update, a shrink, an upsampling, a load)
        self._masks_done = 0
        self._mask_changes = 0
        self.register_load_state_dict_pre_hook(_field_keys_hook)

    def frozen_field(self) -> FrozenField:
        """The baked render field of the current parameters (built once, then reused)."""
        frozen = self._frozen
        if frozen is None:
            frozen = FrozenField(self.field, self.estimator)
            self._frozen = frozen
        return frozen

    @torch.no_grad()
    def prepare_renders(self, pixels: int) -> None:
        """World scenes: the frozen field now, and its appearance table when about one colour
        a pixel pays for it (FrozenField.expect_colours), on the caller's threads."""
        if not self.policy.ndc and not self.training:
            self.frozen_field().expect_colours(pixels)

    def train(self, mode: bool = True):
        """train() / eval(): the render snapshots (the frozen field, the NDC caches) go."""
        self.clear_caches()
        return super().train(mode)

    def clear_caches(self) -> None:
        self._frozen = None
        self.field.clear_caches()

    def update_alpha_mask(self) -> None:
        self._frozen = None
        self.field.update_alpha_mask()

    @torch.no_grad()
    def update_estimator(self) -> None:
        """Fold the field's exact vertex density into the occupancy estimator (a moving
        maximum; resized to the field's cells after an upsampling)."""
        self._frozen = None
        field = self.field
        cells = tuple(r - 1 for r in field.resolution)
        if self.estimator.cells != cells:
            self.estimator.resize(cells)
        sigma = field.activate_density(field.density_volume())  # [Rz, Ry, Rx]
        if self.estimator.built:
            sigma = torch.maximum(sigma, self.estimator.vertex_density * self.cfg.estimator_decay)
        self.estimator.set_vertex_density(sigma, field.vertex_steps())

    def render_rays(
        self,
        rays: Rays,  # [R]
        near: float,
        far: float,
        train: bool,
        generator: torch.Generator | None = None,
    ) -> RenderResult:
        if torch.is_grad_enabled():
            self._frozen = None  # training: the parameters are about to change
        out, self.last_sample_counts = self.policy.render(
            self.field, rays, near, far, train, generator, self.estimator, self.frozen_field
        )
        return RenderResult(out.rgb, out.depth, out.disparity, out.opacity)

    def num_samples(self, near: float, far: float, rays_d: torch.Tensor | None = None) -> int:
        """Samples per ray at the current grid (RenderPolicy.num_samples)."""
        return self.policy.num_samples(self.field, near, far, rays_d)

    def sample_depths(
        self,
        rays: Rays,  # [R]
        near: float,
        far: float,
        train: bool,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample depths t [R, S] at the current grid (RenderPolicy.sample_depths)."""
        return self.policy.sample_depths(self.field, rays, near, far, train, generator)

    def loss(self, result, target, decay):
        """MSE + decay * (TV + L1): the regularisers decay with the learning rate."""
        return tensorf_loss(self.field, result, target, decay)

    def param_groups(self, lr: float) -> list[dict]:
        """Grids at lr_grid, basis + decoder at lr_network (the train lr is not used: the two
        rates differ by 20x in TensoRF and neither is the classic model's 5e-4)."""
        options: dict = {"betas": (0.9, 0.99)}  # TensoRF's betas
        if self.field.aabb.device.type in ("cpu", "cuda"):
            # one fused kernel per step: 7 ms instead of 28-38 ms for 8 M parameters on 2 cores
            options["fused"] = True
        return [
            {"params": self.field.grid_parameters(), "lr": self.cfg.lr_grid, **options},
            {"params": self.field.network_parameters(), "lr": self.cfg.lr_network, **options},
        ]

    def before_step(self, step: int) -> bool:
        """Alpha-mask updates (each shrinking a box scene's box to the mask) and upsampling
        at their configured steps; True after a shrink or an upsample (the parameters were
        replaced)."""
        changed = False
        if step in self.cfg.alpha_mask_steps:
            self.update_alpha_mask()
            if self.shrinks():
                changed = self.shrink()
        if step in self.cfg.upsample_steps:
            stage = list(self.cfg.upsample_steps).index(step) + 1
            target = self.upsample_target(stage)
            if target != self.field.resolution:
                self._frozen = None
                self.field.upsample(target)
                changed = True
        self._masks_done = sum(1 for s in self.cfg.alpha_mask_steps if s <= step)
        if changed or step in self.cfg.alpha_mask_steps:
            self._mask_changes += 1
        every = self.cfg.estimator_every
        if not self.policy.ndc and every > 0 and (step % every == 0 or changed):
            self.update_estimator()
        return changed

    def box_scene(self) -> bool:
        """A box scene: not NDC (whose box is the frustum), not contracted (whose grid spans
        all of space)."""
        return not self.policy.ndc and not self.policy.contracted

    def shrinks(self) -> bool:
        """Whether the box shrinks at the alpha-mask updates: box scenes only."""
        return self.cfg.shrink and self.box_scene()

    def ray_filter_key(self) -> int | None:
        """From the second alpha-mask update on (TensoRF's filtering_rays), in box scenes with
        `filter_rays`: a count of the mask's possible changes (a new key whenever it may have
        changed), so the trainer draws batches from the rays that may meet its cells
        (`useful_rays`); None before, and for other scenes."""
        if not (self.cfg.filter_rays and self.box_scene()) or self._masks_done < 2:
            return None
        return self._mask_changes if self.field.alpha_mask.numel() else None

    @torch.no_grad()
    def useful_rays(self, rays: Rays, near: float, far: float) -> torch.Tensor:
        """Rays [P] (bool) whose part inside the box may meet a cell of the alpha mask
        (conservative: render/ray_filter.py); the others read density nowhere, as the
        training render reads it only in the mask."""
        lo, hi = self.field.aabb[0], self.field.aabb[1]
        return rays_meeting(self.field.alpha_mask, lo, hi, rays.origins, rays.directions, near, far)

    def shrink(self) -> bool:
        """Crop the field's box to the alpha mask's cells (TensorfField.shrink); the
        estimator restarts over the new box. True when the box changed."""
        if not self.field.shrink():
            return False
        self._frozen = None
        self.estimator.aabb.copy_(self.field.aabb)
        self.estimator.resize(tuple(r - 1 for r in self.field.resolution))
        return True

    def upsample_target(self, stage: int) -> tuple[int, int, int]:
        """The vertices (x, y, z) of upsampling stage `stage`: the schedule's, or, once the
        box has shrunk, as many voxels as the schedule's spread over the field's box in
        proportion to its sides against the full box (TensoRF's N_to_reso), so each voxel
        covers less of the scene."""
        target = self.schedule[stage]
        ratio = ((self.field.aabb[1] - self.field.aabb[0]).cpu().double()) / (
            (self.full_box[1] - self.full_box[0]).double()
        )
        if bool((ratio >= 1.0).all()):
            return target
        cells = torch.tensor(target, dtype=torch.float64) - 1.0
        spread = cells * ratio
        spread = spread * (math.prod(cells.tolist()) / math.prod(spread.tolist())) ** (1 / 3)
        return tuple(max(2, int(round(float(n))) + 1) for n in spread)

    def adapt_to_state_dict(self, state: dict) -> None:
        """Give every factor and the alpha mask the shapes stored in `state` (whose keys of a
        checkpoint saved before the composition are renamed in place)."""
        self._frozen = None
        self._mask_changes += 1
        adapt_to_state_dict(self.field, self.estimator, state)

    def extra_repr(self) -> str:
        return f"ndc={self.policy.ndc}, contraction={self.cfg.contraction}"


def _field_keys_hook(module, state_dict, prefix, *args) -> None:
    """load_state_dict of a checkpoint saved while TensorfModel was its field: the field's
    keys (`density_planes.0`, `aabb`, ...) are read as `field.*`."""
    module._frozen = None
    upgrade_field_keys(state_dict, prefix)
