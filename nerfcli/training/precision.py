"""Numeric precision of training: the autocast dtype chosen by `train.precision`, TF32 scoped
to the training loop (set on entry, restored on exit, never a process-wide switch), and the
GPU's peak memory for the run summary and metrics.jsonl.

Why scoped: TF32 matmuls keep 10 mantissa bits, so with them on a fast-versus-reference check
holds only to ~1e-3; evaluation, rendering and the tests outside a training loop keep the
process's own settings (PyTorch's default: matmuls in full fp32).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast is offered on CUDA GPUs that support it (Ampere and later)."""
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the model's forward pass, or None for plain fp32.

    auto: bf16 where supported, fp32 elsewhere (always fp32 on the CPU). bf16 asked for where
    it is not supported (the CPU, an older GPU; for example a GPU run resumed on the CPU)
    falls back to fp32 with a warning rather than failing."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    supported = bf16_supported(device)
    if precision == "bf16" and not supported:
        warnings.warn(
            f"train.precision=bf16 is not supported on {device.type} here: training in fp32",
            stacklevel=2,
        )
    if precision == "fp32" or not supported:
        return None
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The forward pass's context: autocast to `dtype`, or nothing for fp32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@contextmanager
def tf32_scope(enabled: bool) -> Iterator[None]:
    """Allow (or forbid) TF32 in CUDA matmuls and cuDNN convolutions inside the block; the
    previous settings come back on exit, also after an exception."""
    matmul = torch.backends.cuda.matmul
    before = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float | None:
    """`torch.cuda.max_memory_allocated` in GB since the last reset; None off CUDA."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
