"""Training loop: rays of every training pixel built once and kept on the device, random batches
across all of them, MSE against the true colours, Adam with exponential learning-rate decay.

No printing: progress goes out through the `on_event` callback. Files written into the run
folder: config.yaml, metrics.jsonl, ckpt.pt (latest, atomic), checkpoints/step_XXXXXXX.pt and
previews/step_XXXXXXX.png. An interrupted run resumes bit-identically on CPU: the step, the
optimizer, the schedule and the random stream are all in the checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nerfcli.config import Config, dump_yaml
from nerfcli.data.formats.llff import Scene, write_image_atomic
from nerfcli.data.rays import Rays, make_rays
from nerfcli.errors import CheckpointError, ConfigError, NerfError
from nerfcli.fsutil import atomic_write
from nerfcli.metrics import downscale_image, psnr_from_mse, to8b
from nerfcli.models import RadianceModel, build_model
from nerfcli.render.composite import RenderResult
from nerfcli.render.image import render_in_chunks
from nerfcli.training.checkpoint import Checkpoint, SceneMeta, load_checkpoint, save_checkpoint


def select_device(name: str = "auto") -> torch.device:
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available here; use --device cpu or auto")
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ConfigError("--device mps: Apple MPS is not available here; use --device cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {name!r}: choose auto, cpu, cuda or mps")
    return torch.device(name)


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


# ----------------------------------------------------------------------------- helpers


def training_rays(scene: Scene, ndc: bool, device: torch.device) -> tuple[Rays, torch.Tensor]:
    """Rays and target colours of every training pixel, flattened: Rays [P], colours [P, 3]."""
    if scene.images is None:
        raise NerfError(f"{scene.root}: the scene was loaded without images")
    rays = [
        make_rays(scene.height, scene.width, scene.focal, scene.c2w[i], ndc).reshape(-1)
        for i in scene.i_train
    ]
    flat = Rays(
        torch.cat([r.origins for r in rays]).to(device),
        torch.cat([r.directions for r in rays]).to(device),
        torch.cat([r.viewdirs for r in rays]).to(device),
    )
    target = torch.from_numpy(scene.images[scene.i_train].reshape(-1, 3)).to(device)  # [P, 3]
    return flat, target


@torch.no_grad()
def render_view(
    model: RadianceModel,
    meta: SceneMeta,
    c2w: np.ndarray,
    chunk: int,
    device: torch.device,
    downscale: int = 1,
) -> RenderResult:
    """Render one full view (optionally at 1/downscale resolution); outputs shaped [H, W, ...]."""
    height, width = meta.height // downscale, meta.width // downscale
    focal = meta.focal / downscale
    rays = make_rays(height, width, focal, c2w, meta.ndc, device=device).reshape(-1)
    out = render_in_chunks(
        lambda batch: model.render_rays(batch, meta.near, meta.far, train=False), rays, chunk
    )
    return RenderResult(
        rgb=out.rgb.reshape(height, width, 3).clamp(0, 1),
        depth=out.depth.reshape(height, width),
        disparity=out.disparity.reshape(height, width),
        opacity=out.opacity.reshape(height, width),
    )


def learning_rate_factor(cfg: Config, step: int) -> float:
    return cfg.train.lr_decay_rate ** (step / cfg.train.lr_decay_steps)


def _build_optimizer(model: RadianceModel, cfg: Config) -> torch.optim.Optimizer:
    groups = model.param_groups(cfg.train.lr)
    for group in groups:
        group["initial_lr"] = group["lr"]
    return torch.optim.Adam(groups, betas=(0.9, 0.999))


def _check_adam_state(optimizer: torch.optim.Optimizer, fresh: list[dict]) -> None:
    """load_state_dict trusts the stored settings and moments; a damaged or edited one would
    fail (or divide by zero) at the first step. `fresh`: the param groups before loading.
    ValueError names the first bad entry."""

    def is_number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    for group, before in zip(optimizer.param_groups, fresh, strict=True):
        for key, expected in before.items():
            value = group.get(key)
            if key == "params" or value is None and expected is None:
                continue
            if is_number(expected):
                fits = is_number(value) and math.isfinite(value)
            elif isinstance(expected, tuple):
                fits = isinstance(value, (tuple, list)) and len(value) == len(expected)
                fits = fits and all(is_number(v) and math.isfinite(v) for v in value)
            else:
                fits = type(value) is type(expected)
            if not fits:
                raise ValueError(f"optimizer setting {key!r} is {str(value)[:40]}")
    for param, moments in optimizer.state.items():
        if not isinstance(moments, dict):
            raise ValueError("optimizer state is not a dict per weight")
        if not moments:
            continue
        for name in ("step", "exp_avg", "exp_avg_sq"):
            if name not in moments:
                raise ValueError(f"optimizer state lacks {name!r}")
        step = moments["step"]
        if not isinstance(step, torch.Tensor) or step.numel() != 1 or not float(step) >= 1:
            raise ValueError("optimizer state 'step' must be a count >= 1")
        for name, value in moments.items():
            if name != "step" and not (
                isinstance(value, torch.Tensor)
                and value.is_floating_point()
                and value.shape == param.shape
            ):
                raise ValueError(f"optimizer state {name!r} does not fit its weights")


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
        self.meta = SceneMeta.from_scene(scene, cfg.data.ndc)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        torch.manual_seed(cfg.train.seed)
        self.model = build_model(cfg).to(self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.train.seed)
        self.step = 0
        self.train_seconds = 0.0
        self.optimizer = None
        if resume:
            self._resume()
        else:
            self.optimizer = _build_optimizer(self.model, cfg)
        self.rays, self.target = training_rays(scene, cfg.data.ndc, self.device)
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
            self.optimizer = _build_optimizer(self.model, self.cfg)
            if ckpt.optimizer_state is not None:
                fresh = [dict(group) for group in self.optimizer.param_groups]
                self.optimizer.load_state_dict(ckpt.optimizer_state)
                _check_adam_state(self.optimizer, fresh)
            state = ckpt.rng_state.get("generator")
            if state is not None:
                self.generator.set_state(state.cpu() if self.device.type == "cpu" else state)
            if "torch" in ckpt.rng_state:
                torch.set_rng_state(ckpt.rng_state["torch"].cpu())
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
        _trim_log(self.out_dir / "metrics.jsonl", self.step)

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(
            config=self.cfg,
            model_state={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            scene=self.meta,
            step=self.step,
            optimizer_state=self.optimizer.state_dict(),
            rng_state={"generator": self.generator.get_state(), "torch": torch.get_rng_state()},
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

    @torch.no_grad()
    def evaluate(self) -> EvalEvent:
        """Held-out PSNR at 1/eval_downscale resolution and a preview of the first test view."""
        views = self.scene.i_test or self.scene.i_train[:1]
        k = max(1, self.cfg.train.eval_downscale)
        self.model.eval()
        errors = []
        preview_image = None
        for view in views:
            out = render_view(
                self.model, self.meta, self.scene.c2w[view], self.cfg.render.chunk, self.device, k
            )
            gt = downscale_image(torch.from_numpy(self.scene.images[view]), k).to(self.device)
            gt = gt[: out.rgb.shape[0], : out.rgb.shape[1]]
            errors.append(float(torch.mean((out.rgb - gt) ** 2)))
            if preview_image is None:
                preview_image = np.concatenate([to8b(out.rgb), to8b(gt)], 1)
        self.model.train()
        preview = None
        if preview_image is not None:
            folder = self.out_dir / "previews"
            preview = folder / f"step_{self.step:07d}.png"
            try:
                folder.mkdir(exist_ok=True)
                write_image_atomic(preview, preview_image)
            except OSError as exc:
                raise NerfError(
                    f"{preview}: cannot write ({exc.strerror or exc}); the last checkpoint is "
                    "intact: free space or fix the folder, then --resume"
                ) from None
        return EvalEvent(self.step, psnr_from_mse(float(np.mean(errors))), preview)

    # -- the loop

    def _log(self, record: dict) -> None:
        path = self.out_dir / "metrics.jsonl"
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise NerfError(
                f"{path}: cannot write ({exc.strerror or exc}); the last checkpoint is intact: "
                "free space or fix the folder, then --resume"
            ) from None

    def _forward_backward(
        self, batch: Rays, target: torch.Tensor, use_amp: bool
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
                    self.meta.near,
                    self.meta.far,
                    train=True,
                    generator=self.generator,
                )
            loss, scalars = self.model.loss(result, target[part], self.step)
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

    def run(self) -> TrainSummary:
        cfg = self.cfg.train
        total = cfg.iters
        start_step = self.step
        wall_start = time.perf_counter()
        max_seconds = cfg.max_minutes * 60.0 if cfg.max_minutes > 0 else math.inf
        last_loss = last_psnr = float("nan")
        last_test: float | None = None
        history: list[dict] = []
        stopped_by_time = False
        recent: list[float] = []
        num_rays = self.rays.origins.shape[0]
        self.model.train()
        use_amp = self.device.type == "cuda" and getattr(cfg, "amp", False)
        if self.step == 0 and cfg.eval_every > 0 and total > 0:
            last_test = self._evaluate_and_log(history)  # the baseline of the curve
        while self.step < total and not self.stop_requested:
            if self.train_seconds >= max_seconds:
                stopped_by_time = True
                break
            t0 = time.perf_counter()
            if self.model.before_step(self.step):
                self.optimizer = _build_optimizer(self.model, self.cfg)
            factor = learning_rate_factor(self.cfg, self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor
            # What the optimizer uses, per parameter group (TensoRF: grids, then networks).
            lrs = [group["lr"] for group in self.optimizer.param_groups]
            index = torch.randint(
                0, num_rays, (cfg.batch_rays,), generator=self.generator, device=self.device
            )  # [B]
            loss, scalars = self._forward_backward(self.rays[index], self.target[index], use_amp)
            self.optimizer.step()
            self.step += 1
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            self.train_seconds += dt
            recent.append(dt)
            recent = recent[-20:]
            last_loss = float(loss.detach())
            last_psnr = psnr_from_mse(scalars.get("mse", last_loss))
            if self.step % cfg.log_every == 0 or self.step == total:
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
            self.on_event(
                StepEvent(
                    self.step,
                    total,
                    last_loss,
                    last_psnr,
                    lrs[0],
                    self.train_seconds,
                    len(recent) / max(sum(recent), 1e-9),
                )
            )
            if cfg.eval_every > 0 and self.step % cfg.eval_every == 0:
                last_test = self._evaluate_and_log(history)
            if cfg.ckpt_every > 0 and self.step % cfg.ckpt_every == 0:
                self.save()
        checkpoint = self.save()
        return TrainSummary(
            steps=self.step,
            start_step=start_step,
            train_seconds=self.train_seconds,
            wall_seconds=time.perf_counter() - wall_start,
            final_loss=last_loss,
            final_psnr=last_psnr,
            test_psnr=last_test,
            checkpoint=checkpoint,
            out_dir=self.out_dir,
            interrupted=self.stop_requested,
            stopped_by_time=stopped_by_time,
            history=history,
        )


def prepare_run_dir(out_dir: Path, cfg: Config, resume: bool) -> None:
    """Create the run folder; an existing non-empty one needs --resume (never overwritten).

    Both paths check that the folder takes a write before any training, and --resume first
    removes the temp files of writes that a killed run left behind.
    """
    if resume:
        if not (out_dir / "ckpt.pt").is_file():
            hint = (
                "the run stopped before its first checkpoint; delete the folder or choose "
                "another --out and train again"
                if (out_dir / "config.yaml").is_file()
                else "start a run without --resume"
            )
            raise CheckpointError(f"{out_dir}: nothing to resume (no ckpt.pt); {hint}")
        _check_writable(out_dir)
        remove_stale_temp_files(out_dir)
        return
    check_new_run_dir(out_dir)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NerfError(
            f"{out_dir}: cannot create the run folder ({exc.strerror or exc})"
        ) from None
    try:
        _check_writable(out_dir)
        with atomic_write(out_dir / "config.yaml") as tmp:
            tmp.write_text(dump_yaml(cfg), encoding="utf-8")
    except (NerfError, OSError) as exc:
        if created:
            try:
                out_dir.rmdir()
            except OSError:
                pass
        if isinstance(exc, NerfError):
            raise
        raise NerfError(f"{out_dir}: cannot write the run folder ({exc.strerror or exc})") from None


_PROBE = ".write-test"


def check_new_run_dir(out_dir: Path) -> None:
    """A new run needs a missing or empty folder: an existing run is never overwritten."""
    if out_dir.exists() and (
        not out_dir.is_dir() or any(p.name != _PROBE for p in out_dir.iterdir())
    ):
        raise NerfError(
            f"{out_dir}: run folder already exists; pass --resume to continue it or choose "
            "another --out"
        )


def _check_writable(out_dir: Path) -> None:
    """Write and remove a small file: a read-only or full disk fails here, before training."""
    probe = out_dir / _PROBE
    try:
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as exc:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
        raise NerfError(f"{out_dir}: cannot write the run folder ({exc.strerror or exc})") from None


def remove_stale_temp_files(out_dir: Path) -> list[Path]:
    """Delete the temp files of atomic writes a killed run left behind (`.ckpt.pt.*.tmp` and the
    like; never a finished file). Returns what was removed."""
    removed = []
    for folder, pattern in (
        (out_dir, ".ckpt.pt.*"),
        (out_dir, ".config.yaml.*"),
        (out_dir, ".metrics.jsonl.*"),
        (out_dir, _PROBE),
        (out_dir / "checkpoints", ".step_*"),
        (out_dir / "previews", ".step_*"),
    ):
        for path in folder.glob(pattern) if folder.is_dir() else []:
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
    return removed


def _trim_log(path: Path, step: int) -> None:
    """On resume, drop metrics.jsonl records past the checkpoint's step (a killed run got further
    than its last checkpoint) and any unreadable line, so the log reads as one run."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            if record["step"] <= step:
                kept.append(line)
    if len(kept) == len(lines):
        return
    try:
        with atomic_write(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    except OSError as exc:
        raise NerfError(f"{path}: cannot write ({exc.strerror or exc})") from None


def train(
    cfg: Config,
    scene: Scene,
    out_dir: str | Path,
    device: str = "cpu",
    resume: bool = False,
    on_event: EventCallback | None = None,
) -> TrainSummary:
    """Train `cfg.model` on `scene`, writing into `out_dir`; see Trainer."""
    out_dir = Path(out_dir)
    if resume:
        prepare_run_dir(out_dir, cfg, resume=True)
    # A new run's folder is created only once the Trainer has checked there is room for it.
    trainer = Trainer(cfg, scene, out_dir, select_device(device), resume, on_event)
    if not resume:
        prepare_run_dir(out_dir, cfg, resume=False)
    return trainer.run()
