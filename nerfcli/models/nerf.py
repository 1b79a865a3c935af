"""The classic NeRF (Mildenhall et al. 2020), as the reference nerf-pytorch builds it.

Field: positional encoding (10 frequencies for xyz, 4 for directions, input included: 63 and 27
channels) -> 8 x 256 ReLU MLP with the input concatenated again after layer 4 -> density, and a
256 feature -> (feature, view encoding) -> 128 -> RGB. Coarse pass on stratified samples, fine
pass on the union of those and inverse-CDF samples from the coarse weights.

For an object on a known background (Blender: white or random; registry.py's
`object_on_known_background`) the model also has an occupancy estimator over its box
(nerfcli.render.occupancy, issue 23): only samples in occupied cells reach the networks, in
training and in renders; every other sample has density 0. `estimator_every=0`, or any other
scene (NDC, spherified, unbounded: something is seen outside the box), is the reference, which
evaluates every sample.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nerfcli.data.rays import Rays
from nerfcli.models.base import RadianceModel
from nerfcli.models.encoding import encoded_channels, positional_encoding
from nerfcli.models.nerf_config import NerfModelConfig
from nerfcli.render.composite import RenderResult, composite
from nerfcli.render.occupancy import OccupancyGrid
from nerfcli.render.samplers import sample_pdf, sample_points, stratified_samples


class NerfMLP(nn.Module):
    """(xyz [..., 3], dirs [..., 3]) -> (sigma_raw [...], rgb_raw [..., 3]); no activations on
    the outputs (the renderer applies ReLU/noise to density and sigmoid to colour)."""

    def __init__(
        self,
        depth: int = 8,
        width: int = 256,
        multires: int = 10,
        multires_views: int = 4,
        skips: tuple[int, ...] = (4,),
        use_viewdirs: bool = True,
    ):
        super().__init__()
        self.multires = multires
        self.multires_views = multires_views
        self.skips = tuple(skips)
        self.use_viewdirs = use_viewdirs
        in_pts = encoded_channels(3, multires)
        in_views = encoded_channels(3, multires_views)
        self.pts_linears = nn.ModuleList(
            [nn.Linear(in_pts, width)]
            + [
                nn.Linear(width + in_pts if i in self.skips else width, width)
                for i in range(depth - 1)
            ]
        )
        if use_viewdirs:
            self.feature_linear = nn.Linear(width, width)
            self.alpha_linear = nn.Linear(width, 1)
            self.views_linears = nn.ModuleList([nn.Linear(in_views + width, width // 2)])
            self.rgb_linear = nn.Linear(width // 2, 3)
        else:
            self.output_linear = nn.Linear(width, 4)

    def _trunk(self, xyz: torch.Tensor) -> torch.Tensor:
        x_in = positional_encoding(xyz, self.multires)  # [..., 63]
        h = x_in
        for i, layer in enumerate(self.pts_linears):
            h = F.relu(layer(h))
            if i in self.skips:
                h = torch.cat([x_in, h], -1)
        return h  # [..., W]

    def density(self, xyz: torch.Tensor) -> torch.Tensor:
        """sigma_raw [...] at xyz [..., 3] (the view branch is not run)."""
        h = self._trunk(xyz)
        if not self.use_viewdirs:
            return self.output_linear(h)[..., 3]
        return self.alpha_linear(h)[..., 0]

    def forward(self, xyz: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self._trunk(xyz)
        if not self.use_viewdirs:
            out = self.output_linear(h)  # [..., 4]
            return out[..., 3], out[..., :3]
        sigma_raw = self.alpha_linear(h)[..., 0]  # [...]
        feature = self.feature_linear(h)  # [..., W]
        d_in = positional_encoding(dirs, self.multires_views)  # [..., 27]
        h = torch.cat([feature, d_in], -1)
        for layer in self.views_linears:
            h = F.relu(layer(h))
        return sigma_raw, self.rgb_linear(h)  # [...], [..., 3]


class NerfModel(RadianceModel):
    name = "nerf"

    def __init__(
        self,
        m: NerfModelConfig,
        background: str = "auto",
        perturb: bool = True,
        scene_box: np.ndarray | torch.Tensor | None = None,
    ):
        """`m`: the classic model's config section (networks, samples per ray, estimator); of
        the scene: its background (white composites onto white), whether training jitters the
        samples and the box [2, 3] of its estimator (None: no estimator)."""
        super().__init__()
        self.cfg = m
        self.perturb = perturb
        self.white_bkgd = background == "white"
        self.coarse = NerfMLP(
            m.netdepth, m.netwidth, m.multires, m.multires_views, m.skips, m.use_viewdirs
        )
        self.fine = (
            NerfMLP(
                m.netdepth_fine,
                m.netwidth_fine,
                m.multires,
                m.multires_views,
                m.skips,
                m.use_viewdirs,
            )
            if m.n_importance > 0
            else None
        )
        # the occupancy estimator over the box: every cell occupied until the first update
        self.estimator: OccupancyGrid | None = None
        if scene_box is not None and m.estimator_every > 0:
            box = torch.as_tensor(scene_box, dtype=torch.float32)  # numpy or torch
            cells = (m.estimator_cells,) * 3
            self.estimator = OccupancyGrid(
                box, cells, "none", m.estimator_threshold, 1, m.estimator_decay, mean_guard=True
            )
            self.estimator.fill()
        self.spacing: float | None = None  # the last training render's coarse spacing
        # (all samples, samples given to the networks) of the last render
        self.last_sample_counts = (0, 0)

    def occupied(self, pts: torch.Tensor) -> torch.Tensor | None:
        """[...] (bool): points [..., 3] in an occupied cell of the box, where the model has a
        density at all (elsewhere it renders 0); None: everywhere (no estimator, or one from a
        checkpoint saved before it existed)."""
        grid = self.estimator
        if grid is None or not grid.built:
            return None
        keep = grid.inside(pts)
        keep[keep.clone()] = grid.lookup(grid.normalize(pts[keep]))
        return keep

    def _run(
        self,
        field: NerfMLP,
        rays: Rays,
        t_vals: torch.Tensor,
        noise_std: float,
        generator: torch.Generator | None,
    ):
        pts = sample_points(rays.origins, rays.directions, t_vals)  # [R, S, 3]
        dirs = rays.viewdirs[:, None, :].expand(pts.shape)  # [R, S, 3]
        keep = self.occupied(pts)
        if keep is None:
            sigma_raw, rgb_raw = field(pts, dirs)  # [R, S], [R, S, 3]
            kept = pts.shape[0] * pts.shape[1]
        else:  # only the occupied samples reach the network; the others have density 0
            sigma_kept, rgb_kept = field(pts[keep], dirs[keep])  # [K], [K, 3]
            # in the network's dtype (bfloat16 under autocast)
            sigma_raw = sigma_kept.new_zeros(keep.shape).index_put((keep,), sigma_kept)
            rgb_raw = rgb_kept.new_zeros(pts.shape).index_put((keep,), rgb_kept)
            kept = len(sigma_kept)
        if noise_std > 0:
            noise = noise_std * torch.randn(
                sigma_raw.shape, generator=generator, device=sigma_raw.device
            )
            sigma_raw = sigma_raw + (noise if keep is None else noise * keep)
        return kept, composite(
            torch.sigmoid(rgb_raw), F.relu(sigma_raw), t_vals, rays.directions, self.white_bkgd
        )

    def render_rays(self, rays, near, far, train, generator=None) -> RenderResult:
        r = self.cfg
        perturb = train and self.perturb
        noise = r.raw_noise_std if train else 0.0
        num_rays = len(rays)
        device = rays.origins.device
        t_coarse = stratified_samples(
            near, far, num_rays, r.n_samples, perturb, r.lindisp, generator, device
        )  # [R, S]
        if train:  # the coarse spacing the estimator's alpha is measured at
            span = torch.as_tensor(far, dtype=torch.float32) - torch.as_tensor(near)
            self.spacing = float(span.mean()) / r.n_samples
        kept, coarse = self._run(self.coarse, rays, t_coarse, noise, generator)
        if self.fine is None:
            self.last_sample_counts = (t_coarse.numel(), kept)
            return RenderResult(coarse.rgb, coarse.depth, coarse.disparity, coarse.opacity)
        mids = 0.5 * (t_coarse[..., 1:] + t_coarse[..., :-1])  # [R, S-1]
        t_fine = sample_pdf(
            mids, coarse.weights[..., 1:-1], r.n_importance, not perturb, generator
        ).detach()  # [R, n_importance]
        t_all, _ = torch.sort(torch.cat([t_coarse, t_fine], -1), -1)  # [R, S + n_importance]
        kept_fine, fine = self._run(self.fine, rays, t_all, noise, generator)
        self.last_sample_counts = (t_coarse.numel() + t_all.numel(), kept + kept_fine)
        return RenderResult(
            fine.rgb,
            fine.depth,
            fine.disparity,
            fine.opacity,
            extras={"rgb_coarse": coarse.rgb, "opacity_coarse": coarse.opacity},
        )

    def loss(self, result, target, decay):
        """Fine plus coarse MSE, as the reference (no regulariser: `decay` is not used)."""
        mse_fine = torch.mean((result.rgb - target) ** 2)
        scalars = {"mse": float(mse_fine.detach())}
        loss = mse_fine
        if "rgb_coarse" in result.extras:
            mse_coarse = torch.mean((result.extras["rgb_coarse"] - target) ** 2)
            loss = loss + mse_coarse
            scalars["mse_coarse"] = float(mse_coarse.detach())
        return loss, scalars

    @torch.no_grad()
    def update_estimator(self, generator: torch.Generator | None = None) -> None:
        """Fold both networks' density (ReLU of the raw density, no noise) at a jittered point
        near each vertex into the estimator's moving maximum and rebuild its cells (alpha at
        the coarse spacing of the last training render; nothing before one)."""
        grid = self.estimator
        if grid is None or self.spacing is None:
            return
        networks = [self.coarse] + ([self.fine] if self.fine is not None else [])

        def density(coords: torch.Tensor) -> torch.Tensor:
            pts = grid.world_points(coords)
            sigma = [F.relu(network.density(pts)) for network in networks]
            return torch.stack(sigma).amax(0)

        grid.update(density, self.spacing, 1.0, generator, chunk=8192, jitter=True)

    def after_step(self, step: int) -> None:
        """An estimator update after every `estimator_every` optimizer steps (its jitter seeded
        by the step: every rank, and a resumed run, draws the same points)."""
        every = self.cfg.estimator_every
        if self.estimator is not None and every > 0 and step % every == 0:
            self.update_estimator(torch.Generator().manual_seed(step))

    def adapt_to_state_dict(self, state: dict) -> None:
        """A checkpoint saved before the estimator (no `estimator.*` keys) loads with an empty
        grid, so it renders every sample as it was trained; a model without an estimator drops
        the stored grid's keys."""
        if self.estimator is None:
            for key in [k for k in state if k.startswith("estimator.")]:
                del state[key]
            return
        self.estimator.add_missing_state(state, "estimator.")
