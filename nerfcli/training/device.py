"""Which device to train and render on. `auto` is CUDA when present, else the CPU: Apple's MPS
is used only when asked for (`--device mps`), since not every command works there yet (SSIM
computes in float64, which MPS lacks). Under torchrun each process takes the GPU of its local
rank (`cuda:LOCAL_RANK`)."""

from __future__ import annotations

import torch

from nerfcli.errors import ConfigError


def select_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """The device `name` names; `local_rank` (one process of several on this machine): that
    process's own GPU."""
    name = (name or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available here; use --device cpu or auto")
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ConfigError("--device mps: Apple MPS is not available here; use --device cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {name!r}: choose auto, cpu, cuda or mps")
    if name == "cuda" and local_rank is not None:
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ConfigError(
                f"local rank {local_rank} has no GPU of its own (this machine has {count}); "
                f"start at most {count} processes per node (--nproc-per-node / --nproc)"
            )
        return torch.device("cuda", local_rank)
    return torch.device(name)
