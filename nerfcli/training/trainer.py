"""Training loop: rays of every training pixel built once (batches.py: on the device, or in
pinned host memory past a budget), random batches across all of them, the model's loss against
the true colours, Adam with the one learning-rate schedule.

No printing: progress goes out through the `on_event` callback. Files written into the run
folder: metrics.jsonl, ckpt.pt (latest, atomic), checkpoints/step_XXXXXXX.pt and
previews/step_XXXXXXX.png (config.yaml is written by the session, see session.py). An
interrupted run resumes bit-identically on CPU: the step, the optimizer, the schedule and the
random stream are all in the checkpoint.

Across processes (torchrun) the loop is the same; the `Ranks` hooks (distributed.py) split
each global batch, sum the gradients, agree on step times and stops, and let rank 0 alone
write. Held-out views are split across the ranks.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

from nerfcli.data.rays import Rays
from nerfcli.data.scene import Scene
from nerfcli.errors import CheckpointError, ConfigError
from nerfcli.metrics import psnr_from_mse
from nerfcli.models.config import Config
from nerfcli.models.registry import build_model
from nerfcli.render.composite import apply_background
from nerfcli.training import distributed, precision
from nerfcli.training.batches import RaySource, block_seed, rays_home
from nerfcli.training.checkpoint import Checkpoint, load_checkpoint
from nerfcli.training.events import (
    EvalEvent,
    Event,
    EventCallback,
    HeldOutProgress,
    StepEvent,
    TrainSummary,
)
from nerfcli.training.held_out import evaluate_held_out
from nerfcli.training.optim import Schedule, build_optimizer, check_adam_state, set_learning_rates
from nerfcli.training.run_dir import append_log, check_free_space, save_with_copies, trim_log

__all__ = [
    "Event",
    "EvalEvent",
    "EventCallback",
    "HeldOutProgress",
    "StepEvent",
    "TrainSummary",
    "Trainer",
]


class Trainer:
    """One training run in `out_dir`. `stop_requested` may be set from a signal handler.
    `ranks`: this process's place in a torchrun job (default: the current one, or a single
    process)."""

    def __init__(
        self,
        cfg: Config,
        scene: Scene,
        out_dir: str | Path,
        device: torch.device | str = "cpu",
        resume: bool = False,
        on_event: EventCallback | None = None,
        ranks: distributed.Ranks | None = None,
    ):
        self.cfg = cfg
        self.scene = scene
        self.out_dir = Path(out_dir)
        self.device = torch.device(device)
        self.on_event = on_event or (lambda event: None)
        self.stop_requested = False
        self.eval_stopped = False  # a held-out evaluation was cut short by a stop request
        self.ranks = ranks or distributed.current()
        if cfg.train.batch_rays < self.ranks.world:
            raise ConfigError(
                f"train.batch_rays {cfg.train.batch_rays} is smaller than the "
                f"{self.ranks.world} processes; raise it or start fewer processes"
            )
        self.autocast_dtype = precision.autocast_dtype(cfg.train.precision, self.device)

        torch.manual_seed(cfg.train.seed)
        self.model = build_model(cfg, scene_box=scene.scene_box).to(self.device)
        # batch draws, where the rays live (the same on every rank); the render's jitter is
        # seeded per block of each batch (batches.block_seed), so it needs no saved state
        home = rays_home(scene, self.device, cfg.train.device_rays_gb)
        self.generator = torch.Generator(device=home)
        self.generator.manual_seed(cfg.train.seed)
        self.render_generator = torch.Generator(device=self.device)
        self.step = 0
        self.train_seconds = 0.0
        self.optimizer = None
        if resume:
            self._resume()
        else:
            self.optimizer = build_optimizer(self.model, cfg)
        self.source = RaySource(scene, self.device, home, self.generator)
        self._filter_key: object | None = None  # the model's ray_filter_key last applied
        check_free_space(self.out_dir, self.model.state_dict())

    @property
    def rays(self) -> Rays:
        """Every training ray [P] (on the device, or in host memory past the budget)."""
        return self.source.rays

    @property
    def target(self) -> torch.Tensor:
        return self.source.target  # [P, 3]

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
        if self.ranks.is_main:
            trim_log(self.out_dir / "metrics.jsonl", self.step)

    def _restore_rng(self, rng_state: dict, step: int) -> None:
        """Random streams from a checkpoint. States are byte tensors restored on the CPU; the
        batch generator's state only fits a generator of the device type that saved it (where
        the rays lived), so a run resumed on another device type is reseeded (and says so)."""
        state = rng_state.get("generator")
        saved_on = rng_state.get("generator_device")
        saved_type = bytes(saved_on.tolist()).decode() if saved_on is not None else "cpu"
        here = self.generator.device.type
        if state is not None and saved_type == here:
            self.generator.set_state(state.cpu())
        elif state is not None:
            seed = self.cfg.train.seed + step
            self.generator.manual_seed(seed)
            warnings.warn(
                f"resumed on {here} a run saved on {saved_type}: the batch random "
                f"stream is reseeded ({seed}), so this run no longer replays the original",
                stacklevel=2,
            )
        if "torch" in rng_state:
            torch.set_rng_state(rng_state["torch"].cpu())

    def checkpoint(self) -> Checkpoint:
        here = self.generator.device.type  # the batch generator's device type
        return Checkpoint(
            config=self.cfg,
            model_state={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            scene=self.scene.without_images(),
            step=self.step,
            optimizer_state=self.optimizer.state_dict(),
            rng_state={
                "generator": self.generator.get_state().cpu(),
                "generator_device": torch.tensor(list(here.encode()), dtype=torch.uint8),
                "torch": torch.get_rng_state(),
            },
            train_seconds=self.train_seconds,
        )

    def save(self) -> Path:
        """Write ckpt.pt and a numbered copy (rank 0 only; every rank holds the same state)."""
        if not self.ranks.is_main:
            return self.out_dir / "ckpt.pt"
        keep = self.cfg.train.keep_checkpoints
        return save_with_copies(self.checkpoint, self.out_dir, self.step, keep)

    # -- evaluation during training

    def render_fn(self, rays: Rays, near: float, far: float):
        return self.model.render_rays(rays, near, far, train=False)

    def evaluate(self) -> EvalEvent | None:
        """Held-out PSNR at 1/eval_downscale resolution and a preview of the first held-out
        view (the same views `nerf eval` scores; split across the ranks, the first on rank 0;
        held_out.py); a HeldOutProgress event after each view; None when a stop was requested
        before the last view (a signal does not wait for the views left)."""
        step = self.step
        self.model.eval()
        event = evaluate_held_out(
            self.render_fn,
            self.scene,
            self.cfg.render.chunk,
            self.cfg.train.eval_downscale,
            self.device,
            self.ranks,
            self.step,
            self.out_dir,
            should_stop=lambda: self.stop_requested,
            on_view=lambda done, total: self.on_event(HeldOutProgress(step, done, total)),
        )
        self.model.train()
        return event

    # -- the loop

    def _log(self, record: dict) -> None:
        if self.ranks.is_main:
            append_log(self.out_dir / "metrics.jsonl", record)

    def _forward_backward(
        self,
        batch: Rays,  # [b]
        target: torch.Tensor,  # [b, 3]
        use_amp: bool,
        decay: float,
        colour: torch.Tensor | None = None,  # [b, 3] random background
        start: int = 0,
        total: int | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss and gradients for rows start.. of a global batch of `total` rays (default:
        this batch is all of it). The rays go in chunks of train.grad_chunk_rays (0: all at
        once) whose losses are weighted by their share of the global batch and whose gradients
        accumulate: the same gradient (losses are means over rays plus terms that do not depend
        on the rays), with activations small enough to stay in cache; summed over the ranks,
        the global batch's. Each chunk's jitter is seeded by its first row in the global batch, so
        N processes match one when the per-rank rows are a multiple of the chunk."""
        self.optimizer.zero_grad(set_to_none=True)
        size = len(batch)
        total = total or size
        chunk = self.cfg.train.grad_chunk_rays if self.cfg.train.grad_chunk_rays > 0 else size
        total_loss = 0.0
        totals: dict[str, float] = {}
        for first in range(0, size, chunk):
            part = slice(first, min(first + chunk, size))
            share = (part.stop - part.start) / total
            block = start + first  # the chunk's first row in the global batch
            self.render_generator.manual_seed(block_seed(self.cfg.train.seed, self.step, block))
            with precision.autocast(self.device, self.autocast_dtype if use_amp else None):
                result = self.model.render_rays(
                    batch[part],
                    self.scene.near,
                    self.scene.far,
                    train=True,
                    generator=self.render_generator,
                )
            if colour is not None:
                result = apply_background(result, colour[part])
            loss, scalars = self.model.loss(result, target[part], decay)
            (loss * share if share != 1 else loss).backward()
            total_loss += float(loss.detach()) * share
            for key, value in scalars.items():
                totals[key] = totals.get(key, 0.0) + value * share
        return torch.tensor(total_loss), totals

    def _evaluate_and_log(self, history: list[dict]) -> float | None:
        event = self.evaluate()
        if event is None:  # stopped by a signal (every rank alike): no score, the run stops
            self.eval_stopped = True
            return None
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

    def _filter_rays(self) -> None:
        """Batches from the rays the model can still learn from, where it says which
        (RadianceModel.ray_filter_key: a new key whenever its answer changes); recorded in
        metrics.jsonl as rays_kept of rays."""
        key = self.model.ray_filter_key()
        if key == self._filter_key:
            return
        self._filter_key = key
        keep = None
        if key is not None:
            keep = self.model.useful_rays(self.source.rays, self.scene.near, self.scene.far)
        self.source.keep(keep)
        if keep is not None:
            self._log({"step": self.step, "rays_kept": int(keep.sum()), "rays": len(keep)})

    def _train_step(self, use_amp: bool, schedule: Schedule) -> tuple[float, float, list[float]]:
        """One optimisation step on a random batch: (loss, PSNR of the batch, the rates used);
        across ranks, of the global batch (gradients and loss terms summed)."""
        self._advance_model(schedule)
        self._filter_rays()
        decay = schedule.decay(self.step, self.train_seconds)
        # What the optimizer uses, per parameter group (TensoRF: grids, then networks).
        lrs = set_learning_rates(self.optimizer, decay)
        size = self.cfg.train.batch_rays
        rows = self.ranks.rows(size)
        batch = self.source.draw(size, rows)
        loss, scalars = self._forward_backward(
            batch.rays, batch.target, use_amp, decay, batch.colour, rows.start, size
        )
        keys = sorted(scalars)
        summed = self.ranks.reduce_gradients(
            list(self.model.parameters()), [float(loss), *(scalars[k] for k in keys)]
        )
        self.optimizer.step()
        self.step += 1
        self.model.after_step(self.step)
        scalars = dict(zip(keys, summed[1:]))
        return summed[0], psnr_from_mse(scalars.get("mse", summed[0])), lrs

    def _record(self, lrs: list[float], loss: float, psnr: float, wall: float) -> dict:
        record = {
            "step": self.step,
            "loss": loss,
            "psnr": psnr,
            "lr": lrs[0],
            "elapsed": round(self.train_seconds, 3),
            "wall": round(wall, 3),
        }
        if len(lrs) > 1:
            record["lr_groups"] = lrs
        vram = precision.peak_memory_gb(self.device)
        if vram is not None:
            record["vram_gb"] = vram
        return record

    def run(self) -> TrainSummary:
        """Train until the schedule ends or a stop is asked for (on any rank); TF32 is allowed
        on CUDA inside the loop only (train.tf32)."""
        precision.reset_peak_memory(self.device)
        if self.device.type != "cuda":
            return self._run()
        with precision.tf32_scope(self.cfg.train.tf32):
            return self._run()

    def _run(self) -> TrainSummary:
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
        use_amp = self.autocast_dtype is not None  # None: fp32
        if self.step == 0 and cfg.eval_every > 0 and total > 0:
            last_test = self._evaluate_and_log(history)  # the baseline of the curve
        _, stop = self.ranks.agree(0.0, self.stop_requested)
        while not stop:
            if schedule.done(self.step, self.train_seconds):
                stopped_by_time = self.step < total and not schedule.by_time
                break
            t0 = time.perf_counter()
            last_loss, last_psnr, lrs = self._train_step(use_amp, schedule)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            # every rank takes the same time (the time schedule) and stops at the same step
            dt, stop = self.ranks.agree(time.perf_counter() - t0, self.stop_requested)
            self.train_seconds += dt
            recent = [*recent[-19:], dt]
            if self.step % cfg.log_every == 0 or self.step == total and not schedule.by_time:
                record = self._record(lrs, last_loss, last_psnr, time.perf_counter() - wall_start)
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
                last_test = self._evaluate_and_log(history) or last_test
                stop = stop or self.eval_stopped
            if cfg.ckpt_every > 0 and self.step % cfg.ckpt_every == 0:
                self.save()
        if cfg.eval_every > 0 and not stop and self.step > start_step:
            if self.step % cfg.eval_every != 0:  # the summary scores the final model
                last_test = self._evaluate_and_log(history) or last_test
                stop = self.eval_stopped
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
            interrupted=stop,
            stopped_by_time=stopped_by_time,
            history=history,
            peak_vram_gb=precision.peak_memory_gb(self.device),
            world_size=self.ranks.world,
        )
