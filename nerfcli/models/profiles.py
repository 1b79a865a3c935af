"""Every model's device and scene-kind defaults, in one place.

A profile is a nested dict of config overrides, merged after the dataclass defaults and before
the scene preset, `--set` and the first-class flags (the precedence nerfcli.models.resolve
follows). Profiles hold only numbers chosen by measurement; the models never read them, so the
two can change apart.
"""

from __future__ import annotations

from nerfcli.data.plan import SCENE_KINDS

# the scene kinds a profile is chosen for (nerfcli.data.plan.FramePlan.profile_kind):
# forward-facing in NDC, an object in a box (Blender, LLFF's spherified frame, forward without NDC) and an
# unbounded surround capture (a unit box inside, the rest contracted)
__all__ = ["SCENE_KINDS", "nerf_profile", "tensorf_profile"]

# ----------------------------------------------------------------------------- classic NeRF


def nerf_profile(device_type: str) -> dict:
    """Config overrides per device type for the classic model. Its dataclass defaults are the
    reference nerf-pytorch settings; none of these changes the model or the loss, only how the
    work is cut up.

    CPU: the MLPs are matrix products whose activations (rows x 256 floats per layer) spill out
    of cache at the reference's sizes (a 1024-ray batch is 65,536 coarse and 131,072 fine
    points per product). Training accumulates gradients over chunks of 32 rays (the same
    gradient: chunk losses are weighted by their share of the batch) and rendering works on
    32 rays at a time. Measured on fern at factor 8, 2 cores, all variants interleaved in one
    run (`python -m bench.classic --rounds 4`): 9.06 s per step against 15.87 s for the whole
    batch at once and 14.63 s for the reference's 65,536-point network chunks; a 63 x 47
    render in 8.2 s against 14.5 s with 2048-ray chunks.
    GPU: nothing (one pass per batch, the default render chunk; not measured on hardware).
    """
    if device_type == "cpu":
        return {"train": {"grad_chunk_rays": 32}, "render": {"chunk": 32}}
    return {}


# ----------------------------------------------------------------------------- TensoRF


def tensorf_profile(device_type: str, kind: str = "forward") -> dict:
    """Config overrides for a device type ("cpu", "cuda", "mps") and scene kind (one of
    SCENE_KINDS: forward-facing in NDC, an object in a box in world coordinates, or
    unbounded).

    CPU ("cpu"): built for `nerf train fern/` in 10 minutes on 2 cores. The 320x320x128
    profile this replaced: held-out PSNR (views 0, 8, 16, full size) 24.3 dB when its 2600
    steps ended at ~7 min on the AVX-512 machine, a curve flat at 23.9 dB to 30 min on the
    AVX2 one (bench/README.md), a training PSNR of only ~25.5 dB at the end: the model
    underfits, so the time goes into a larger grid (issue 14). Why each number:
    - coarse to fine, 96x96x64 -> 448x448x128 vertices, upsampled at 350/700/1050/1400 (of
      the schedule: with --max-minutes, of the budget). 448 in x, y: fern, 2600 steps of the
      step schedule, 1 thread each, side by side: 24.75 dB held-out against 24.16 at
      320x320x128 (and 24.47 at 320x320x192 with 168 samples); a final-grid step costs
      1.47x (0.382 against 0.259 s of CPU, 1 thread, glibc keeping freed memory) and the
      curve of the smaller grid is flat past ~2000 steps, so the extra cost pays within 10
      minutes. 448x448x192 (168 samples), same 10 busy minutes side by side: 24.00 dB
      against 24.11 for 448x448x128: z stays at 128. 14.7 M grid parameters; 1.3 GB peak.
    - step_ratio 1.0, at most 112 samples per ray: one sample per z voxel.
    - colour_samples 8: colour at 8 weight quantiles per ray instead of the ~30 samples above
      a 1e-4 weight threshold (1 core, 237^2 grid, 2048 rays: 0.48 s/step with the threshold,
      0.39 s with quantiles, 0.24 s adding the z-slice density); costs 0.08 dB at eval on a
      model trained with the threshold (0.04 dB with 12 quantiles). 12 quantiles cost 14%
      more per step at 320x320 (not trained).
    - decoder_width 64, as the probe (TensoRF's 128 would double the decoder cost; not
      compared). The decoder is ~3% of a step: TensoRF's SH colour (no decoder) would save
      little, and was not tried.
    - batch 4096 rays: a final-grid step at 320x320 costs 0.20 s of CPU with 2048 rays, 0.29
      with 4096, 0.45 with 8192 (~0.125 s fixed: z-slices, TV, Adam); 8192 was not trained.
    - render chunk 8192 rays (4096 renders as fast, 16384 slower: the colour reads leave the
      cache). No-grad NDC renders take the fast path (tensorf/fast.py): the 120-frame spiral
      in bench/render_speed.py's side-by-side figures, see bench/README.md.
    GPU (anything else): TensoRF's LLFF recipe, shortened: 128x128x96 -> 448x448x256, half-
    voxel steps, 16 colour quantiles, the 128-wide decoder, 8000 iterations of 4096 rays
    (aimed at ~25 dB on fern in under 5 minutes on one H100; not measured here).
    Surround captures (LLFF's spherified frame, world coordinates) take an isotropic grid in the cube
    around the cameras instead: CPU 64^3 -> 192^3 (a dense 192^3 density volume per step costs
    about half the 320x320x128 NDC grid's), up to 256 samples along the part of each ray inside
    the box (TENSORF_CPU_SURROUND says why); GPU 128^3 -> 300^3 (TensoRF's size for objects).
    Unbounded surround captures (a room behind the subject): the grid in contracted space,
    the scene box its middle half; see TENSORF_CPU_UNBOUNDED for the numbers and why.
    """
    cpu = device_type == "cpu"
    tensorf = dict(TENSORF_CPU if cpu else TENSORF_GPU)
    if kind == "object":
        tensorf.update(TENSORF_CPU_SURROUND if cpu else TENSORF_GPU_SURROUND)
    elif kind == "unbounded":
        tensorf.update(TENSORF_CPU_UNBOUNDED if cpu else TENSORF_GPU_UNBOUNDED)
    train = dict(TENSORF_CPU_TRAIN if cpu else TENSORF_GPU_TRAIN)
    if kind == "unbounded" and cpu:
        train.update(TENSORF_CPU_UNBOUNDED_TRAIN)
    return {
        "model": {"tensorf": tensorf},
        "train": train,
        "render": dict(TENSORF_CPU_RENDER if cpu else TENSORF_GPU_RENDER),
    }


TENSORF_CPU: dict = {
    "grid_init": [96, 96, 64],
    "grid_final": [448, 448, 128],
    "upsample_steps": [350, 700, 1050, 1400],
    "alpha_mask_steps": [],  # in NDC every sample's density is one bilinear read: no gain
    "step_ratio": 1.0,
    "max_samples": 112,
    "colour_samples": 8,
    "decoder_width": 64,
}
# the same number of factor components in every mode, for scenes with no special axis
ISOTROPIC_COMPONENTS: dict = {
    "density_components": [8, 8, 8],
    "appearance_components": [24, 24, 24],
}
# Objects take the same number of factor components in every mode (8/8/8 density, 24/24/24
# appearance), not NDC's z-favouring 16/4/4 and 48/12/12: lego --half-res, 10 minutes each, one
# after the other alone on a 2-core Xeon (2026-12-06, `python -m bench.lego --minutes 10`): 28.12
# dB on the 25 held-out views at 10 minutes (26.76 at 5, 27.71 at 7.5) against 27.95 (26.62,
# 27.56); 9538 steps against 8357. One seed each.
# Objects reach their final grid at 38% of the budget (upsampling at 250/500/750/1000 of the 2600
# steps, as the unbounded schedule), not at 54% (350/700/1050/1400): lego --half-res, 10 minutes,
# with the shrink and the ray filter, the two one after the other alone on a 2-core AMD EPYC
# (2026-12-06, `python -m bench.lego --minutes 10`, then `nerf eval` on all 200 views): seed 0
# 28.51 dB (7565 steps) against 28.15 (6748); seed 1 28.31 (7450) against 28.22 (6988).
# Objects take up to 256 samples along the part of each ray inside the box (one per 1.3 voxels of
# the final grid's diagonal, ~333 voxels), not 128 (one per 2.6): fewer steps, each worth more.
# lego --half-res, 10 minutes, each run alone on a 2-core AMD EPYC (2026-12-06, `python -m
# bench.lego --minutes 10`, then `nerf eval` on all 200 views): seed 0 29.29 dB (5755 steps)
# against 28.24 (7729) for 128 the run before; seed 1 29.56 (5545) against 28.31 (7450) for 128
# the session before. No cap (one sample a voxel, ~333): 29.64 and 29.24, the same mean, for more
# render time (eval 48 s against 46). TV off, with 128: 28.06 (seed 0), below 128 with TV.
TENSORF_CPU_SURROUND: dict = {
    **ISOTROPIC_COMPONENTS,
    "grid_init": [64, 64, 64],
    "grid_final": [192, 192, 192],
    "upsample_steps": [250, 500, 750, 1000],
    "max_samples": 256,
}
# Unbounded surround captures: the scene box (cameras and subject) is the inner region, the
# rest of space contracted around it (model.tensorf.contraction; the box fills the middle half
# of the grid). Built for `nerf train cup --factor 8` (100 x 75, 67 training views) in under
# 15 minutes on 2 cores. Measured on cup, 500-step runs of this schedule scaled down (upsampling
# at 70/140/210/280, masks at 80/150/270), 1 thread each, one after another on a busy 2-core
# machine (2026-12-01; /work/runs/unbounded/exp.sh), held-out PSNR (mean over views 0, 8, ...,
# 72; close-ups 48 56 64 72), user CPU seconds of train + eval:
#   spherified box model, 64^3 -> 192^3:   19.92 dB (13.4 16.3 15.4 12.0)  163 s
#   unbounded linf, 64^3 -> 192^3:         25.83 dB (20.3 23.6 25.4 14.1)  144 s
#   unbounded l2,   64^3 -> 192^3:         26.20 dB (19.2 22.8 25.1 19.8)  147 s
#   unbounded linf, 64^3 -> 256^3:         25.90 dB (19.9 23.6 25.8 13.7)  184 s
#   unbounded l2,   64^3 -> 256^3:         26.59 dB (19.7 24.0 25.4 19.9)  164 s
# - l2 (mip-NeRF 360's form), not DVGOv2's linf: +0.37 and +0.69 dB mean at the two grids,
#   all of it from view 72 (a view from above, at the capture's edge: 19.8 against 14 dB,
#   twice); linf is 0.1-1 dB better on most other views. One scene, one seed each.
# - grid 64^3 -> 192^3: within 0.4 dB of 256^3 at 500 steps for ~0.85x the CPU per run (a
#   final-grid step ~0.45 s against ~0.8 s of CPU, 1 thread), so the time goes into steps.
# - 2000 steps (upsampling at 250/500/750/1000, alpha masks at 300/700/1200): sized to end in
#   ~10-12 minutes on 2 quiet cores, inside the 15 (estimated from the 1-thread CPU times
#   above; not timed here).
# - alpha masks: the space between the subject and the room is empty; after 500 steps the
#   mask keeps 45% of the cells and 35% of the samples get a density read.
# - max_samples 128 in the box (one per box voxel / step_ratio 1.0 along its diagonal at
#   192^3 is 167); outer samples from the grid: one per shell voxel, 48 at 192^3.
# - components 8/8/8 density, 24/24/24 appearance (as objects; NDC's 16/4/4 and 48/12/12
#   before): `python -m bench.cup --minutes 15 --set data.factor=8` alone on a 2-core Xeon
#   (2026-12-06), 28.45 dB at 10 minutes and 28.69 at 15 (5012 steps), against 27.78 and
#   27.86 (5436 steps) for the old split on the same kind of machine the day before.
# - colour at 4 weight quantiles a ray, not 8: a 10-minute unbounded model is a soft fog whose
#   weight spreads over ~34 samples, so 8 quantiles land on ~6.3 distinct samples and the
#   decoder runs on each. `nerf train ../shared/data/cup --max-minutes 10` (factor 1), the two
#   one after the other alone on a 2-core AMD EPYC (2026-12-07): 4 quantiles 4077 steps, `nerf
#   eval` 25.91 dB, SSIM 0.800 (held-out at half resolution 24.14); 8 quantiles 3555 steps,
#   25.91 dB, SSIM 0.804 (24.18). The 120-frame orbit (`nerf render-video`): 79.8 s against
#   97.1 s. Fox, `python -m bench.fox --minutes 10`, the same way: 25.63 dB, SSIM 0.739 (4589
#   steps) against 25.33, 0.738 (4342).
TENSORF_CPU_UNBOUNDED: dict = {
    **ISOTROPIC_COMPONENTS,
    "contraction": "l2",
    "grid_init": [64, 64, 64],
    "grid_final": [192, 192, 192],
    "upsample_steps": [250, 500, 750, 1000],
    "max_samples": 128,
    "alpha_mask_steps": [300, 700, 1200],
    "colour_samples": 4,
}
TENSORF_CPU_UNBOUNDED_TRAIN: dict = {"iters": 2000, "lr_decay_steps": 2000}
TENSORF_CPU_TRAIN: dict = {"iters": 2600, "batch_rays": 4096, "lr_decay_steps": 2600}
TENSORF_CPU_RENDER: dict = {"chunk": 8192}

TENSORF_GPU: dict = {
    "grid_init": [128, 128, 96],
    "grid_final": [448, 448, 256],
    "upsample_steps": [1000, 2000, 3000, 4000],
    "alpha_mask_steps": [],
    "step_ratio": 0.5,
    "max_samples": 0,
    "colour_samples": 16,
    "decoder_width": 128,
}
TENSORF_GPU_SURROUND: dict = {"grid_init": [128, 128, 128], "grid_final": [300, 300, 300]}
TENSORF_GPU_UNBOUNDED: dict = {  # the CPU profile's choices at GPU sizes (not measured)
    "contraction": "l2",
    "grid_init": [128, 128, 128],
    "grid_final": [384, 384, 384],
    "alpha_mask_steps": [2000, 4000],
}
TENSORF_GPU_TRAIN: dict = {"iters": 8000, "batch_rays": 4096, "lr_decay_steps": 8000}
TENSORF_GPU_RENDER: dict = {"chunk": 16384}
