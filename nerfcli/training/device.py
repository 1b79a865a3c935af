"""Which device to train and render on. `auto` is CUDA when present, else the CPU: Apple's MPS
is used only when asked for (`--device mps`), since not every command works there yet (SSIM
computes in float64, which MPS lacks). Under torchrun each process takes the GPU of its local
rank (`cuda:LOCAL_RANK`).

On the CPU, glibc is asked to keep freed memory (`keep_freed_memory`): a training step frees and
reallocates hundreds of MB of activations and gradients, and by default each large block is a
fresh mmap whose pages fault in again (measured in bench/README.md)."""

from __future__ import annotations

import ctypes
import os
import sys

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
    if name == "cpu":
        keep_freed_memory()
    if name == "cuda" and local_rank is not None:
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ConfigError(
                f"local rank {local_rank} has no GPU of its own (this machine has {count}); "
                f"start at most {count} processes per node (--nproc-per-node / --nproc)"
            )
        return torch.device("cuda", local_rank)
    return torch.device(name)


# glibc's mallopt parameters (malloc.h) and the values keep_freed_memory sets: blocks up to
# 1 GiB come from the heap rather than their own mmap, and up to 2 GiB of free heap top is kept
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = 2**31 - 1
_kept = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (once a process; True when it took). A no-op
    returning False off Linux, with another C library (musl has no gnu_get_libc_version) or
    when mallopt refuses; MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ in the environment
    are left to win. Peak memory is unchanged: only what was already allocated is kept."""
    global _kept
    if _kept:
        return True
    if not sys.platform.startswith("linux"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (glibc only)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _kept = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    _kept = _kept and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return _kept
