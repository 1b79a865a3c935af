"""Which device to train and render on. `auto` is CUDA when present, else the CPU: Apple's MPS
is used only when asked for (`--device mps`), since not every command works there yet (SSIM
computes in float64, which MPS lacks)."""

from __future__ import annotations

import torch

from nerfcli.errors import ConfigError


def select_device(name: str = "auto") -> torch.device:
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available here; use --device cpu or auto")
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ConfigError("--device mps: Apple MPS is not available here; use --device cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {name!r}: choose auto, cpu, cuda or mps")
    return torch.device(name)
