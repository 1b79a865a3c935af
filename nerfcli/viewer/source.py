"""What the viewer renders: a checkpoint's model, or the latest weights of a run in training.

A live source never renders the trainer's own model (the optimiser changes it in place while a
render reads it): between two steps, when the viewer asks for fresh weights and at most every
`refresh_seconds`, the training thread copies the state dict (`offer`), and the render thread
loads the newest copy into its own model before its next render (`model_for_render`). The
copy is the training thread's time: copies are spaced so that they take at most
`copy_share` of it (fern's 59 MB of weights took 0.2 s to copy on the loaded 2-core machine:
at most one every 10 s)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import torch

from nerfcli.data.scene import Scene
from nerfcli.models.base import RadianceModel
from nerfcli.models.config import Config
from nerfcli.training.checkpoint import Checkpoint, restore_model


@dataclass
class Status:
    step: int
    test_psnr: float | None  # held-out PSNR of these weights (None: not measured yet)
    training: bool


class ModelSource:
    """A fixed model (a checkpoint's)."""

    def __init__(self, model: RadianceModel, scene: Scene, config: Config, status: Status):
        self.model = model
        self.scene = scene
        self.config = config
        self.status = status
        self.device = next(model.parameters()).device
        self.checkpoint_path = None

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, device: torch.device | str) -> ModelSource:
        psnr = _checkpoint_psnr(ckpt)
        status = Status(ckpt.step, psnr, training=False)
        source = cls(restore_model(ckpt, device), ckpt.scene, ckpt.config, status)
        source.checkpoint_path = ckpt.path
        return source

    def model_for_render(self) -> RadianceModel:
        return self.model

    def wants_weights(self) -> bool:
        return False

    def ready(self) -> bool:
        """True once there are weights to render."""
        return True


class LiveSource(ModelSource):
    """The weights of a run in training, copied between steps (see the module docstring)."""

    def __init__(
        self,
        model: RadianceModel,
        scene: Scene,
        config: Config,
        refresh_seconds: float = 2.0,
        copy_share: float = 0.02,
    ):
        super().__init__(model.eval(), scene, config, Status(0, None, training=True))
        self.refresh_seconds = refresh_seconds
        self.copy_share = copy_share
        self.copy_seconds = 0.0  # how long the last copy took
        self._pending: dict[str, torch.Tensor] | None = None
        self._lock = threading.Lock()
        self._last_copy = -float("inf")
        self.demand = threading.Event()  # set while a page is open and wants pictures

    def wants_weights(self) -> bool:
        """True when the training thread should copy its weights now (cheap to ask)."""
        spacing = max(self.refresh_seconds, self.copy_seconds / self.copy_share)
        return self.demand.is_set() and time.monotonic() - self._last_copy >= spacing

    def offer(self, model: RadianceModel, step: int) -> None:
        """Called by the training thread between steps: copy the weights for the viewer."""
        start = time.perf_counter()
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.copy_seconds = time.perf_counter() - start
        with self._lock:
            self._pending = state
            self._last_copy = time.monotonic()
            self.status = Status(step, self.status.test_psnr, training=True)

    def record_psnr(self, step: int, psnr: float) -> None:
        self.status = Status(step, psnr, training=True)

    def model_for_render(self) -> RadianceModel:
        with self._lock:
            state, self._pending = self._pending, None
        if state is not None:
            self.model.adapt_to_state_dict(state)
            self.model.load_state_dict(state)
            self.model.eval()
        return self.model

    def ready(self) -> bool:
        return self._last_copy > -float("inf")


def _checkpoint_psnr(ckpt: Checkpoint) -> float | None:
    """The held-out PSNR the run logged at the checkpoint's step (metrics.jsonl beside it)."""
    import json

    if ckpt.path is None:
        return None
    log = ckpt.path.parent / "metrics.jsonl"
    best = None
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(record, dict)
            and "test_psnr" in record
            and record.get("step", -1) <= ckpt.step
        ):
            best = float(record["test_psnr"])
    return best
