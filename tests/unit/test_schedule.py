"""The training schedule: steps (exact reproduction) or the fraction of a time budget, which
drives the learning-rate decay, the models' step-keyed events and the end of the run."""

from __future__ import annotations

import json

import pytest
import torch

from nerfcli.data.formats.llff import load_llff_data
from nerfcli.errors import ConfigError
from nerfcli.models.config import build_config
from nerfcli.training.optim import Schedule, learning_rate_factor
from nerfcli.training.session import start_run
from tests.conftest import write_llff

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_TENSORF = [
    "data.factor=1",
    "model.tensorf.grid_init=[6,6,6]",
    "model.tensorf.grid_final=[12,12,12]",
    "model.tensorf.upsample_steps=[10,30,50]",
    "model.tensorf.alpha_mask_steps=[]",
    "model.tensorf.density_components=[2,2,2]",
    "model.tensorf.appearance_components=[2,2,2]",
    "model.tensorf.app_dim=4",
    "model.tensorf.decoder_width=8",
    "train.batch_rays=16",
    "train.log_every=1",
    "train.eval_every=0",
    "train.ckpt_every=0",
    "train.iters=100",
    "train.lr_decay_steps=100",
]


def test_step_schedule_is_the_step_count():
    cfg = build_config(overrides=["train.iters=100", "train.lr_decay_steps=50"])
    schedule = Schedule(cfg)
    assert not schedule.by_time
    assert schedule.position(37, 1e9) == 37
    assert schedule.decay(25, 0.0) == pytest.approx(0.1**0.5) == learning_rate_factor(cfg, 25)
    assert not schedule.done(99, 1e9) and schedule.done(100, 0.0)


def test_time_schedule_follows_the_budget_fraction():
    cfg = build_config(
        overrides=["train.iters=200", "train.lr_decay_steps=200", "train.max_minutes=1"]
    )
    schedule = Schedule(cfg)  # auto: a budget makes it a time schedule
    assert schedule.by_time
    assert schedule.position(5, 30.0) == 100  # half the budget: half the schedule
    assert schedule.position(5, 600.0) == 200  # never past the end
    assert schedule.decay(5, 30.0) == pytest.approx(0.1**0.5)
    assert schedule.decay(5, 60.0) == pytest.approx(0.1)  # fully decayed at the end
    assert schedule.fraction(3, 45.0) == pytest.approx(0.75)
    assert not schedule.done(10**6, 59.9) and schedule.done(1, 60.0)  # steps do not end it
    steps = build_config(overrides=["train.max_minutes=1", "train.schedule=steps"])
    assert not Schedule(steps).by_time


def test_time_schedule_needs_a_budget():
    with pytest.raises(ConfigError, match="max-minutes"):
        build_config(overrides=["train.schedule=time"])


def test_time_schedule_runs_every_event_and_ends_decayed(tmp_path, monkeypatch):
    """A fake clock makes each step take 0.5 s of a 7.5 s budget: the schedule position jumps
    by 100 / 15 steps at a time (0, 6, 13, 20, 26, 33, ...: never 10, 30 or 50), yet every
    upsampling happens, and the last step's rate is the fully decayed one."""
    import nerfcli.training.trainer as trainer_module

    clock = iter(range(0, 10**6))
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: float(next(clock)) / 2)
    scene = load_llff_data(write_llff(tmp_path / "s", n=4, height=8, width=10), factor=1)
    cfg = build_config(overrides=[*TINY_TENSORF, "train.max_minutes=0.125"])
    trainer = start_run(cfg, scene, tmp_path / "run", torch.device("cpu")).trainer
    summary = trainer.run()
    assert trainer.model.field.resolution == (12, 12, 12)  # all three upsamples ran
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary.steps == 15 and not summary.stopped_by_time  # 0.5 s per step
    assert summary.train_seconds == pytest.approx(7.5)
    last = [r for r in records if "lr" in r][-1]
    # the last step started at 7.0 s of 7.5: decay 0.1 ** (7 / 7.5)
    assert last["lr_groups"][0] == pytest.approx(cfg.model.tensorf.lr_grid * 0.1 ** (7 / 7.5))
