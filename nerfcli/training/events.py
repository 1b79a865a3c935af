"""What a training run reports: events sent to the `on_event` callback while it runs (one
per step, one per held-out evaluation) and the summary it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class StepEvent:
    step: int
    total: int
    loss: float
    psnr: float
    lr: float  # the current rate of the first parameter group (TensoRF: the grids)
    train_seconds: float
    its: float
    fraction: float = 0.0  # of the schedule done: steps / iters, or seconds / budget


@dataclass
class EvalEvent:
    step: int
    test_psnr: float
    preview: Path | None


@dataclass
class HeldOutProgress:
    """A held-out evaluation's progress: `done` of `total` views scored (this rank's)."""

    step: int
    done: int
    total: int


@dataclass
class TrainSummary:
    steps: int
    start_step: int
    train_seconds: float
    wall_seconds: float
    final_loss: float
    final_psnr: float
    test_psnr: float | None
    checkpoint: Path
    out_dir: Path
    interrupted: bool
    stopped_by_time: bool
    history: list[dict] = field(default_factory=list)
    peak_vram_gb: float | None = None  # torch.cuda.max_memory_allocated (rank 0's GPU)
    world_size: int = 1


Event = StepEvent | EvalEvent | HeldOutProgress
EventCallback = Callable[[Event], None]
