"""Every model's device and scene-kind defaults, in one place.

A profile is a nested dict of config overrides, merged after the dataclass defaults and before
the scene preset, `--set` and the first-class flags (design.md's precedence). Profiles hold only
numbers chosen by measurement; the models never read them, so the two can change apart.
"""

from __future__ import annotations

# the scene kinds a profile is chosen for: forward-facing in NDC, a bounded box (objects,
# --spherify) and an unbounded surround capture (a unit box inside, the rest contracted)
SCENE_KINDS = ("ndc", "box", "unbounded")

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


def tensorf_profile(device_type: str, kind: str = "ndc") -> dict:
    """Config overrides for a device type ("cpu", "cuda", "mps") and scene kind (one of
    SCENE_KINDS: forward-facing in NDC, a box in world coordinates, or unbounded).

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
    tensorf = dict(TENSORF_CPU if cpu else TENSORF_GPU)
    if kind in ("box", "unbounded"):  # unbounded: the box grid until its own profile lands
        tensorf.update(TENSORF_CPU_SURROUND if cpu else TENSORF_GPU_SURROUND)
    return {
        "model": {"tensorf": tensorf},
        "train": dict(TENSORF_CPU_TRAIN if cpu else TENSORF_GPU_TRAIN),
        "render": dict(TENSORF_CPU_RENDER if cpu else TENSORF_GPU_RENDER),
    }


TENSORF_CPU: dict = {
    "grid_init": [96, 96, 64],
    "grid_final": [320, 320, 128],
    "upsample_steps": [350, 700, 1050, 1400],
    "alpha_mask_steps": [],  # in NDC every sample's density is one bilinear read: no gain
    "step_ratio": 1.0,
    "max_samples": 112,
    "colour_samples": 8,
    "decoder_width": 64,
}
TENSORF_CPU_SURROUND: dict = {
    "grid_init": [64, 64, 64],
    "grid_final": [192, 192, 192],
    "max_samples": 128,
}
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
TENSORF_GPU_TRAIN: dict = {"iters": 8000, "batch_rays": 4096, "lr_decay_steps": 8000}
TENSORF_GPU_RENDER: dict = {"chunk": 16384}
