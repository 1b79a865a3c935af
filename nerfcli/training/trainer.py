"""Training loop: rays of every training pixel built once and kept on the device, random batches
across all of them, MSE against the true colours, Adam with the one learning-rate schedule.

No printing: progress goes out through the `on_event` callback. Files written into the run
folder: metrics.jsonl, ckpt.pt (latest, atomic), checkpoints/step_XXXXXXX.pt and
previews/step_XXXXXXX.png (config.yaml is written by the session, see session.py). An
interrupted run resumes bit-identically on CPU: the step, the optimizer, the schedule and the
random stream are all in the checkpoint.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nerfcli.config import Config
from nerfcli.data.images import write_image_atomic
from nerfcli.data.rays import Rays, camera_rays
from nerfcli.data.scene import Scene
from nerfcli.errors import CheckpointError, NerfError
from nerfcli.metrics import downscale_image, psnr_from_mse, to8b
from nerfcli.models.registry import build_model
from nerfcli.render.image import render_view
from nerfcli.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from nerfcli.training.optim import (
    Schedule,
    build_optimizer,
    check_adam_state,
    set_learning_rates,
)
from nerfcli.training.run_dir import append_log, trim_log

# ----------------------------------------------------------------------------- events


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


Event = StepEvent | EvalEvent
EventCallback = Callable[[Event], None]


# ----------------------------------------------------------------------------- rays


def training_rays(scene: Scene, device: torch.device) -> tuple[Rays, torch.Tensor]:
    """Rays and target colours of every training pixel, flattened: Rays [P], colours [P, 3];
    each view's rays use its own camera (intrinsics, distortion)."""
    if scene.images is None:
        raise NerfError(f"{scene.root}: the scene was loaded without images")
    rays = [camera_rays(scene.camera(i)).reshape(-1) for i in scene.i_train]
    flat = Rays(
        torch.cat([r.origins for r in rays]).to(device),
        torch.cat([r.directions for r in rays]).to(device),
        torch.cat([r.viewdirs for r in rays]).to(device),
    )
    target = torch.from_numpy(scene.images[scene.i_train].reshape(-1, 3)).to(device)  # [P, 3]
    return flat, target


def _device_tag(device: torch.device) -> torch.Tensor:
    return torch.tensor(list(device.type.encode()), dtype=torch.uint8)


# ----------------------------------------------------------------------------- trainer


class Trainer:
    """One training run in `out_dir`. `stop_requested` may be set from a signal handler."""

    def __init__(
        self,
        cfg: Config,
        scene: Scene,
        out_dir: str | Path,
        device: torch.device | str = "cpu",
        resume: bool = False,
        on_event: EventCallback | None = None,
    ):
        self.cfg = cfg
        self.scene = scene
        self.out_dir = Path(out_dir)
        self.device = torch.device(device)
        self.on_event = on_event or (lambda event: None)
        self.stop_requested = False
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        torch.manual_seed(cfg.train.seed)
        self.model = build_model(cfg, scene_box=scene.scene_box).to(self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.train.seed)
        self.step = 0
        self.train_seconds = 0.0
        self.optimizer = None
        if resume:
            self._resume()
        else:
            self.optimizer = build_optimizer(self.model, cfg)
        self.rays, self.target = training_rays(scene, self.device)
        self._check_free_space()

    def _check_free_space(self) -> None:
        """Refuse to start when the disk cannot hold the next checkpoint (it is written beside
        the previous one before replacing it): weights, two Adam moments, 1 MB of the rest."""
        weights = sum(t.numel() * t.element_size() for t in self.model.state_dict().values())
        needed = 3 * weights + (1 << 20)
        folder = self.out_dir.absolute()
        while not folder.is_dir() and folder != folder.parent:  # a new run: not created yet
            folder = folder.parent
        if not os.access(folder, os.W_OK):
            return  # read-only: prepare_run_dir names that, more usefully than free space
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return
        if free < needed:
            raise NerfError(
                f"{self.out_dir}: only {free / 1e6:.1f} MB free but a checkpoint of this model "
                f"needs about {needed / 1e6:.1f} MB; free some space or choose another --out"
            )

    # -- checkpoints

    def _resume(self) -> None:
        ckpt = load_checkpoint(self.out_dir / "ckpt.pt", map_location=self.device)
        if ckpt.config.model.name != self.cfg.model.name:
            raise CheckpointError(
                f"{ckpt.path}: trained with model {ckpt.config.model.name!r}, "
                f"not {self.cfg.model.name!r}"
            )
        try:
            self.model.adapt_to_state_dict(ckpt.model_state)
            self.model.load_state_dict(ckpt.model_state)
            self.model.to(self.device)
            self.optimizer = build_optimizer(self.model, self.cfg)
            if ckpt.optimizer_state is not None:
                fresh = [dict(group) for group in self.optimizer.param_groups]
                self.optimizer.load_state_dict(ckpt.optimizer_state)
                check_adam_state(self.optimizer, fresh)
            self._restore_rng(ckpt.rng_state, ckpt.step)
        except (
            CheckpointError,
            RuntimeError,
            ValueError,
            LookupError,
            TypeError,
            AttributeError,
        ) as exc:
            first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise CheckpointError(
                f"{ckpt.path}: cannot resume from this checkpoint ({first}); use an earlier one "
                "from checkpoints/ (copy it over ckpt.pt)"
            ) from None
        self.step = ckpt.step
        self.train_seconds = ckpt.train_seconds
        trim_log(self.out_dir / "metrics.jsonl", self.step)

    def _restore_rng(self, rng_state: dict, step: int) -> None:
        """Random streams from a checkpoint. States are byte tensors restored on the CPU; the
        batch generator's state only fits a generator of the device type that saved it, so a
        run resumed on another device type is reseeded (and says so)."""
        state = rng_state.get("generator")
        saved_on = rng_state.get("generator_device")
        saved_type = bytes(saved_on.tolist()).decode() if saved_on is not None else "cpu"
        if state is not None and saved_type == self.device.type:
            self.generator.set_state(state.cpu())
        elif state is not None:
            seed = self.cfg.train.seed + step
            self.generator.manual_seed(seed)
            warnings.warn(
                f"resumed on {self.device.type} a run saved on {saved_type}: the batch random "
                f"stream is reseeded ({seed}), so this run no longer replays the original",
                stacklevel=2,
            )
        if "torch" in rng_state:
            torch.set_rng_state(rng_state["torch"].cpu())

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(
            config=self.cfg,
            model_state={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            scene=self.scene.without_images(),
            step=self.step,
            optimizer_state=self.optimizer.state_dict(),
            rng_state={
                "generator": self.generator.get_state().cpu(),
                "generator_device": _device_tag(self.device),
                "torch": torch.get_rng_state(),
            },
            train_seconds=self.train_seconds,
        )

    def save(self) -> Path:
        latest = save_checkpoint(self.checkpoint(), self.out_dir / "ckpt.pt")
        folder = self.out_dir / "checkpoints"
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise CheckpointError(f"{folder}: cannot create ({exc.strerror or exc})") from None
        numbered = folder / f"step_{self.step:07d}.pt"
        tmp = folder / f".{numbered.name}.link"
        try:
            if tmp.exists():
                tmp.unlink()
            os.link(latest, tmp)
            os.replace(tmp, numbered)
        except OSError:
            save_checkpoint(self.checkpoint(), numbered)
        keep = self.cfg.train.keep_checkpoints
        old = sorted(folder.glob("step_*.pt"))
        for stale in old[:-keep] if keep > 0 else []:
            try:
                stale.unlink(missing_ok=True)
            except OSError:
                pass  # an old copy left behind is harmless
        return latest

    # -- evaluation during training

    def render_fn(self, rays: Rays, near: float, far: float):
        return self.model.render_rays(rays, near, far, train=False)

    @torch.no_grad()
    def evaluate(self) -> EvalEvent:
        """Held-out PSNR at 1/eval_downscale resolution and a preview of the first held-out
        view (the same views `nerf eval` scores)."""
        k = max(1, self.cfg.train.eval_downscale)
        self.model.eval()
        errors = []
        preview_image = None
        for view in self.scene.held_out:
            out = render_view(
                self.render_fn, self.scene.camera(view), self.cfg.render.chunk, self.device, k
            )
            gt = downscale_image(torch.from_numpy(self.scene.images[view]), k).to(self.device)
            gt = gt[: out.rgb.shape[0], : out.rgb.shape[1]]
            errors.append(float(torch.mean((out.rgb - gt) ** 2)))
            if preview_image is None:
                preview_image = np.concatenate([to8b(out.rgb), to8b(gt)], 1)
        self.model.train()
        preview = self.out_dir / "previews" / f"step_{self.step:07d}.png"
        try:
            preview.parent.mkdir(exist_ok=True)
            write_image_atomic(preview, preview_image)
        except OSError as exc:
            raise NerfError(
                f"{preview}: cannot write ({exc.strerror or exc}); the last checkpoint is "
                "intact: free space or fix the folder, then --resume"
            ) from None
        return EvalEvent(self.step, psnr_from_mse(float(np.mean(errors))), preview)

    # -- the loop

    def _log(self, record: dict) -> None:
        append_log(self.out_dir / "metrics.jsonl", record)

    def _forward_backward(
        self, batch: Rays, target: torch.Tensor, use_amp: bool, decay: float
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss and gradients for one batch [B]. With train.grad_chunk_rays > 0 the batch is
        processed in ray chunks whose losses are weighted by their share of the batch and whose
        gradients accumulate: the same gradient (losses are means over rays plus terms that do
        not depend on the rays), with activations small enough to stay in cache."""
        self.optimizer.zero_grad(set_to_none=True)
        size = len(batch)
        chunk = self.cfg.train.grad_chunk_rays if self.cfg.train.grad_chunk_rays > 0 else size
        total_loss = 0.0
        totals: dict[str, float] = {}
        for start in range(0, size, chunk):
            part = slice(start, min(start + chunk, size))
            share = (part.stop - part.start) / size
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                result = self.model.render_rays(
                    batch[part],
                    self.scene.near,
                    self.scene.far,
                    train=True,
                    generator=self.generator,
                )
            loss, scalars = self.model.loss(result, target[part], decay)
            (loss * share if share < 1 else loss).backward()
            total_loss += float(loss.detach()) * share
            for key, value in scalars.items():
                totals[key] = totals.get(key, 0.0) + value * share
        return torch.tensor(total_loss), totals

    def _evaluate_and_log(self, history: list[dict]) -> float:
        event = self.evaluate()
        record = {
            "step": self.step,
            "test_psnr": event.test_psnr,
            "elapsed": round(self.train_seconds, 3),
        }
        self._log(record)
        history.append(record)
        self.on_event(event)
        return event.test_psnr

    def _advance_model(self, schedule: Schedule) -> None:
        """The model's step-keyed events (upsampling, alpha masks) for every schedule step
        reached since the last call: one per step on a step schedule; on a time schedule the
        position can jump, and no event is skipped."""
        position = schedule.position(self.step, self.train_seconds)
        changed = False
        while self._position < position:
            self._position += 1
            changed = self.model.before_step(self._position) or changed
        if changed:
            self.optimizer = build_optimizer(self.model, self.cfg)

    def _train_step(self, use_amp: bool, schedule: Schedule) -> tuple[float, float, list[float]]:
        """One optimisation step on a random batch: (loss, PSNR of the batch, the rates used)."""
        self._advance_model(schedule)
        decay = schedule.decay(self.step, self.train_seconds)
        # What the optimizer uses, per parameter group (TensoRF: grids, then networks).
        lrs = set_learning_rates(self.optimizer, decay)
        num_rays = self.rays.origins.shape[0]
        index = torch.randint(
            0, num_rays, (self.cfg.train.batch_rays,), generator=self.generator, device=self.device
        )  # [B]
        loss, scalars = self._forward_backward(self.rays[index], self.target[index], use_amp, decay)
        self.optimizer.step()
        self.step += 1
        last_loss = float(loss.detach())
        return last_loss, psnr_from_mse(scalars.get("mse", last_loss)), lrs

    def run(self) -> TrainSummary:
        cfg = self.cfg.train
        schedule = Schedule(self.cfg)
        total = cfg.iters
        start_step = self.step
        wall_start = time.perf_counter()
        # the last schedule step whose model events ran: the next step runs its own first
        # (a resumed run repeats it, which is harmless: events are idempotent)
        self._position = schedule.position(self.step, self.train_seconds) - 1
        last_loss = last_psnr = float("nan")
        last_test: float | None = None
        history: list[dict] = []
        stopped_by_time = False
        recent: list[float] = []
        self.model.train()
        use_amp = self.device.type == "cuda" and getattr(cfg, "amp", False)
        if self.step == 0 and cfg.eval_every > 0 and total > 0:
            last_test = self._evaluate_and_log(history)  # the baseline of the curve
        while not self.stop_requested:
            if schedule.done(self.step, self.train_seconds):
                stopped_by_time = self.step < total and not schedule.by_time
                break
            t0 = time.perf_counter()
            last_loss, last_psnr, lrs = self._train_step(use_amp, schedule)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            self.train_seconds += dt
            recent = [*recent[-19:], dt]
            if self.step % cfg.log_every == 0 or self.step == total and not schedule.by_time:
                record = {
                    "step": self.step,
                    "loss": last_loss,
                    "psnr": last_psnr,
                    "lr": lrs[0],
                    "elapsed": round(self.train_seconds, 3),
                    "wall": round(time.perf_counter() - wall_start, 3),
                }
                if len(lrs) > 1:
                    record["lr_groups"] = lrs
                self._log(record)
                history.append(record)
            its = len(recent) / max(sum(recent), 1e-9)
            self.on_event(
                StepEvent(
                    self.step,
                    total,
                    last_loss,
                    last_psnr,
                    lrs[0],
                    self.train_seconds,
                    its,
                    schedule.fraction(self.step, self.train_seconds),
                )
            )
            if cfg.eval_every > 0 and self.step % cfg.eval_every == 0:
                last_test = self._evaluate_and_log(history)
            if cfg.ckpt_every > 0 and self.step % cfg.ckpt_every == 0:
                self.save()
        return TrainSummary(
            steps=self.step,
            start_step=start_step,
            train_seconds=self.train_seconds,
            wall_seconds=time.perf_counter() - wall_start,
            final_loss=last_loss,
            final_psnr=last_psnr,
            test_psnr=last_test,
            checkpoint=self.save(),
            out_dir=self.out_dir,
            interrupted=self.stop_requested,
            stopped_by_time=stopped_by_time,
            history=history,
        )
