"""Optimisation: Adam over the model's parameter groups, the one learning-rate schedule, and
the checks that a restored optimizer state fits its weights."""

from __future__ import annotations

import math

import torch

from nerfcli.models.base import RadianceModel
from nerfcli.models.config import Config


def learning_rate_factor(cfg: Config, step: int) -> float:
    """The one schedule: lr = initial lr * lr_decay_rate ** (step / lr_decay_steps), for every
    parameter group; models scale their regularisers by the same factor."""
    return cfg.train.lr_decay_rate ** (step / cfg.train.lr_decay_steps)


class Schedule:
    """Where a run is in its schedule. `steps`: the step count itself. `time`: the fraction of
    the budget (train.max_minutes, training time only) used so far, mapped onto the same
    step-shaped schedule, so the learning-rate decay, the models' step-keyed events
    (upsampling, alpha masks) and the end of training all follow the clock: a run uses its
    whole budget and ends fully decayed on any machine."""

    def __init__(self, cfg: Config):
        train = cfg.train
        self.cfg = cfg
        self.by_time = train.schedule == "time" or (
            train.schedule == "auto" and train.max_minutes > 0
        )
        self.budget = train.max_minutes * 60.0 if train.max_minutes > 0 else math.inf
        self.iters = train.iters

    def position(self, step: int, train_seconds: float) -> int:
        """The schedule step: the step itself, or budget fraction x iters."""
        if not self.by_time:
            return step
        return min(int(self.iters * train_seconds / self.budget), self.iters)

    def decay(self, step: int, train_seconds: float) -> float:
        if not self.by_time:
            return learning_rate_factor(self.cfg, step)
        progress = min(train_seconds / self.budget, 1.0) * self.iters
        return self.cfg.train.lr_decay_rate ** (progress / self.cfg.train.lr_decay_steps)

    def fraction(self, step: int, train_seconds: float) -> float:
        if self.by_time:
            return min(train_seconds / self.budget, 1.0)
        return min(step / self.iters, 1.0) if self.iters else 1.0

    def done(self, step: int, train_seconds: float) -> bool:
        if self.by_time:
            return train_seconds >= self.budget
        return step >= self.iters or train_seconds >= self.budget


def set_learning_rates(optimizer: torch.optim.Optimizer, factor: float) -> list[float]:
    """Apply the schedule's factor to every group; returns the rates Adam will use."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
    return [group["lr"] for group in optimizer.param_groups]


def build_optimizer(model: RadianceModel, cfg: Config) -> torch.optim.Optimizer:
    groups = model.param_groups(cfg.train.lr)
    for group in groups:
        group["initial_lr"] = group["lr"]
    return torch.optim.Adam(groups, betas=(0.9, 0.999))


def check_adam_state(optimizer: torch.optim.Optimizer, fresh: list[dict]) -> None:
    """load_state_dict trusts the stored settings and moments; a damaged or edited one would
    fail (or divide by zero) at the first step. `fresh`: the param groups before loading
    (numbers must stay finite numbers, Adam's switches keep their values).
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
            elif isinstance(expected, bool):  # a switch of Adam's code path (amsgrad,
                # capturable, maximize, ...): the one nerfcli trains with, or the first step
                # fails (capturable=True on the CPU, amsgrad=True without its moments)
                fits = value is expected
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
