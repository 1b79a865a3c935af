"""A stop request (SIGINT/SIGTERM: the CLI sets Trainer.stop_requested) during a held-out
evaluation ends it before the next view, periodic or final: a classic model scoring 25 views of
lego at 1/2 resolution on a CPU takes most of an hour, and a signal used to wait for all of
them. Each view reports its progress (HeldOutProgress) so the bar can say what it is doing."""

from __future__ import annotations

import torch

from nerfcli.data.formats.llff import load_llff_data
from nerfcli.models.config import build_config
from nerfcli.training.trainer import EvalEvent, HeldOutProgress, Trainer
from tests.conftest import write_llff

TINY = [
    "model.name=nerf",
    "model.nerf.netwidth=8",
    "model.nerf.netwidth_fine=8",
    "model.nerf.netdepth=2",
    "model.nerf.netdepth_fine=2",
    "model.nerf.skips=[]",
    "render.n_samples=4",
    "render.n_importance=0",
    "data.factor=1",
    "data.llffhold=2",  # 3 of the 6 views held out (as the scene is loaded)
    "train.batch_rays=32",
    "train.eval_downscale=1",
    "train.ckpt_every=0",
    "train.log_every=1",
]


def run_stopping_at_first_view(tmp_path, extra: list[str], at_step: int):
    """Train with `extra`; a stop is requested after the first view of the evaluation at
    step `at_step`."""
    torch.manual_seed(0)
    scene = load_llff_data(
        write_llff(tmp_path / "scene", n=6, height=8, width=10), factor=1, llffhold=2
    )
    cfg = build_config(None, TINY + extra)
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, HeldOutProgress) and (event.step, event.done) == (at_step, 1):
            trainer.stop_requested = True  # what the CLI's signal handler does

    (tmp_path / "run").mkdir()
    trainer = Trainer(cfg, scene, tmp_path / "run", "cpu", on_event=on_event)
    assert len(scene.held_out) == 3
    return trainer.run(), events


def test_a_stop_during_the_final_evaluation_ends_it_after_one_view(tmp_path):
    summary, events = run_stopping_at_first_view(
        tmp_path, ["train.iters=2", "train.eval_every=5"], at_step=2
    )
    progress = [(e.step, e.done) for e in events if isinstance(e, HeldOutProgress)]
    assert progress == [(0, 1), (0, 2), (0, 3), (2, 1)]  # not the final's other two views
    scores = [e.step for e in events if isinstance(e, EvalEvent)]
    assert scores == [0]  # the baseline; no score of part of the final views
    assert summary.steps == 2 and summary.interrupted
    assert summary.checkpoint.exists()


def test_a_stop_during_a_periodic_evaluation_stops_the_run(tmp_path):
    summary, events = run_stopping_at_first_view(
        tmp_path, ["train.iters=50", "train.eval_every=1"], at_step=0
    )
    progress = [e for e in events if isinstance(e, HeldOutProgress)]
    # the baseline at step 0 is the first evaluation: its first view stops the run
    assert [(e.step, e.done) for e in progress] == [(0, 1)]
    assert summary.steps <= 1 and summary.interrupted


def test_every_view_reports_its_progress_without_a_stop(tmp_path):
    torch.manual_seed(0)
    scene = load_llff_data(
        write_llff(tmp_path / "scene", n=6, height=8, width=10), factor=1, llffhold=2
    )
    cfg = build_config(None, TINY + ["train.iters=2", "train.eval_every=2"])
    events = []
    (tmp_path / "run").mkdir()
    summary = Trainer(cfg, scene, tmp_path / "run", "cpu", on_event=events.append).run()
    progress = [(e.step, e.done, e.total) for e in events if isinstance(e, HeldOutProgress)]
    assert progress == [(s, d, 3) for s in (0, 2) for d in (1, 2, 3)]
    assert not summary.interrupted and summary.test_psnr is not None
