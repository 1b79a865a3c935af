"""Training and rendering across processes with PyTorch's own torch.distributed, started by
`torchrun` (or `nerf train --nproc N`, which starts the same through torch.distributed.run).

One process is a `Ranks` of world 1 whose collectives do nothing, so the trainer, eval and
render-video call the same hooks whatever the world size:
- `rows(B)`: this rank's contiguous rows of a global batch every rank draws identically;
- `reduce_gradients(params, values)`: one all-reduce (sum) of every parameter's gradient and
  the rank's loss terms, flattened into one buffer built afresh each step from the model's
  current parameters (so TensoRF's upsampling, which replaces them, needs no bookkeeping);
  losses are weighted by each rank's share of the global batch, so the sum is the global
  batch's mean gradient;
- `agree(seconds, stop)`: every rank takes the same step time (the time schedule and its
  upsampling steps stay in step) and stops at the same step when any rank was asked to;
- `shard(items)`, `all_gather_objects`, `all_gather_tensor`: views and frames split r::N.

Backend: NCCL on GPUs (one per rank, `cuda:LOCAL_RANK`), gloo on the CPU. Every collective has
a timeout (NERF_DIST_TIMEOUT seconds, default 60), so a stuck rank fails the job instead of
hanging it; a rank that dies closes its connections, the others fail at their next collective
with a NerfError naming that, and torchrun's agent stops the job.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from nerfcli.errors import ConfigError, NerfError

TIMEOUT_ENV = "NERF_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job; world 1 (the default) is a plain single process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None  # "nccl", "gloo"; None without a process group
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, previews, checkpoints, videos and prints."""
        return self.rank == 0

    def rows(self, total: int) -> slice:
        """This rank's contiguous rows of a global batch of `total` rows."""
        return slice(total * self.rank // self.world, total * (self.rank + 1) // self.world)

    def shard(self, items: Sequence) -> list:
        """Items rank::world (views, frames): item k is done by rank k % world."""
        return list(items[self.rank :: self.world])

    def barrier(self) -> None:
        if self.world > 1:
            with _collective(self, "a barrier"):
                if self.backend == "nccl":
                    dist.barrier(device_ids=[self.device.index])
                else:
                    dist.barrier()

    def reduce_gradients(
        self, params: Sequence[torch.Tensor], values: Sequence[float]
    ) -> list[float]:
        """Sum gradients and `values` over the ranks (one all-reduce); returns the summed values.
        A parameter keeps grad None only when it got no gradient on any rank, as in one
        process (Adam skips those)."""
        if self.world == 1:
            return list(values)
        params = list(params)
        pieces = [
            p.grad.detach().reshape(-1).float() if p.grad is not None else p.new_zeros(p.numel())
            for p in params
        ]
        present = [1.0 if p.grad is not None else 0.0 for p in params]
        extra = torch.tensor([*present, *values], dtype=torch.float32, device=self.device)
        flat = torch.cat([*[x.to(self.device) for x in pieces], extra])  # [sum numel + P + V]
        with _collective(self, "the gradient all-reduce"):
            dist.all_reduce(flat)
        offset = 0
        counts = flat[flat.numel() - extra.numel() :].tolist()
        for param, has_grad in zip(params, counts):
            size = param.numel()
            if has_grad > 0:
                param.grad = flat[offset : offset + size].view_as(param).to(param.dtype)
            offset += size
        return counts[len(params) :]

    def agree(self, seconds: float, stop: bool) -> tuple[float, bool]:
        """The mean step time over the ranks and whether any rank asked to stop."""
        if self.world == 1:
            return seconds, stop
        both = torch.tensor([seconds, float(stop)], dtype=torch.float64, device=self.device)
        with _collective(self, "the end-of-step all-reduce"):
            dist.all_reduce(both)
        return float(both[0]) / self.world, bool(both[1] > 0)

    def all_gather_objects(self, obj: object) -> list:
        """Every rank's `obj` (picklable), in rank order."""
        if self.world == 1:
            return [obj]
        out: list = [None] * self.world
        with _collective(self, "an all-gather"):
            dist.all_gather_object(out, obj)
        return out

    def all_gather_tensor(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's tensor of one shape and dtype, in rank order (on this rank's device)."""
        if self.world == 1:
            return [tensor]
        tensor = tensor.to(self.device).contiguous()
        out = [torch.empty_like(tensor) for _ in range(self.world)]
        with _collective(self, "an all-gather"):
            dist.all_gather(out, tensor)
        return out


SINGLE = Ranks()
_current = SINGLE


@contextmanager
def _collective(ranks: Ranks, what: str) -> Iterator[None]:
    """A failed collective (a rank died, or is stuck past the timeout) as one clear line."""
    try:
        yield
    except RuntimeError as exc:  # gloo and NCCL errors (DistBackendError is a RuntimeError)
        raise NerfError(
            f"rank {ranks.rank} of {ranks.world}: {what} failed ({_reason(exc)}): another rank died "
            "or is stuck, so the job stops; continue from the last checkpoint with --resume"
        ) from None


def _reason(exc: BaseException) -> str:
    """The first sentence of a backend error, without its source-file prefix."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)  # "[.../gloo/transport/tcp/pair.cc:553] "
    return re.split(r"\.\s", text, maxsplit=1)[0][:160]


def env_ranks() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    try:
        return (
            int(os.environ.get("RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)),
        )
    except ValueError:
        raise ConfigError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers; start with torchrun or "
            "nerf train --nproc N"
        ) from None


def under_torchrun() -> bool:
    return env_ranks()[1] > 1


def timeout_seconds() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: expected seconds, e.g. 60") from None
    if not value > 0:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return value


def init(device: torch.device) -> Ranks:
    """Join the job torchrun started (once per process; later calls return the same Ranks).
    A plain process (WORLD_SIZE unset or 1) gets SINGLE and no process group."""
    global _current
    if dist.is_available() and dist.is_initialized():
        return _current
    rank, world, local_rank = env_ranks()
    if world <= 1:
        return SINGLE
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run in one process")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device.type}: training across processes needs cpu or cuda")
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        raise ConfigError(
            f"WORLD_SIZE={world} but MASTER_ADDR/MASTER_PORT are unset: start with torchrun "
            "--nproc-per-node N -m nerfcli ... or nerf train --nproc N"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(
            backend,
            timeout=timedelta(seconds=timeout_seconds()),
            device_id=device if backend == "nccl" else None,  # NCCL: bound to this rank's GPU
        )
    except (RuntimeError, ValueError) as exc:
        raise NerfError(
            f"rank {rank} of {world}: cannot join the job ({_reason(exc)}); check the rendezvous "
            "endpoint and that every node runs the same command"
        ) from None
    _current = Ranks(rank, world, local_rank, backend, device)
    atexit.register(cleanup)
    return _current


def current() -> Ranks:
    return _current


def finish() -> None:
    """Leave the job together, after a command succeeded on every rank: a barrier, then the
    process group destroyed while every rank still runs. Left to interpreter exit (`cleanup`),
    a rank that finished first tore gloo down while rank 0 was still writing its checkpoint,
    and now and then died of SIGABRT ("terminate called without an active exception") after
    its work was done, failing the job. Not called on an error path: a barrier there would wait
    out the timeout for a rank that is gone. Harmless in one process."""
    ranks = _current
    if ranks.world > 1 and dist.is_available() and dist.is_initialized():
        try:
            ranks.barrier()
        except NerfError:
            pass  # a rank is gone; nothing is left to agree on
    cleanup()


def cleanup() -> None:
    """Leave the process group (at exit; harmless when there is none)."""
    global _current
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except (RuntimeError, ValueError):
            pass
    _current = SINGLE


def launch(nproc: int, module_args: Sequence[str]) -> int:
    """`python -m nerfcli MODULE_ARGS` in `nproc` processes on this machine, through
    torch.distributed.run (torchrun --standalone). Returns 0, or 130 when the ranks were
    interrupted (they saved a checkpoint); a rank that failed is one NerfError naming it."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    if "OMP_NUM_THREADS" not in os.environ:  # the machine's cores shared out, not 1 each
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    args = parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "nerfcli", *module_args])
    try:
        run(args)
    except SignalException:
        return 130
    except ChildFailedError as exc:
        codes = {failure.exitcode for failure in exc.failures.values()}
        if codes <= {130, 1} and 130 in codes:
            return 130
        # the root cause: not a rank the agent stopped (SIGTERM) after another failed; the first
        rank, failure = min(
            exc.failures.items(),
            key=lambda item: (item[1].exitcode == -signal.SIGTERM, item[1].timestamp, item[0]),
        )
        how = (
            f"was killed by {failure.signal_name()}"
            if failure.exitcode < 0
            else f"exited with code {failure.exitcode} (its error is above)"
        )
        raise NerfError(
            f"rank {rank} of {nproc} (pid {failure.pid}) {how}, so the whole job stopped; "
            "continue from the last checkpoint with --resume"
        ) from None
    return 0


def join(device_name: str) -> tuple[torch.device, Ranks]:
    """The device of this process and its place in the job (SINGLE without torchrun): the
    one call every command makes before it touches the device."""
    from nerfcli.training.device import select_device

    _, world, local_rank = env_ranks()
    device = select_device(device_name, local_rank if world > 1 else None)
    return device, init(device)
