"""Issue 19, torchrun on the default path: what holds and what does not.

Each rank renders its rows in chunks of train.grad_chunk_rays (0, the default: all its rows at
once), each chunk's jitter seeded by its first row in the global batch. When every rank's
chunks start where one process's do, N ranks draw one process's jitter and the runs agree to
float precision (fern, 20 steps, default profile with --set train.grad_chunk_rays=512, 1 thread
per rank: losses 9.1e-8, weights 1.2e-4 relative L2). With the default 0 they do not (losses
3e-3 to 1.6e-2, factor tensors 0.11 to 0.35), and making 512-ray chunks the default would slow
one process down 2.5x, so a run on N ranks says so (batches.rank_invariance_note)."""

from __future__ import annotations

import pytest
import torch

from nerfcli.models.resolve import ConfigRequest, resolve_config
from nerfcli.training.batches import rank_invariance_note
from nerfcli.training.session import load_training_scene, start_run
from tests.conftest import write_llff

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_note_says_when_ranks_do_not_match_one_process():
    assert rank_invariance_note(4096, 512, 2) is None
    assert rank_invariance_note(4096, 64, 8) is None
    note = rank_invariance_note(4096, 0, 2)
    assert "2048 rows" in note and "--set train.grad_chunk_rays=512" in note
    assert rank_invariance_note(4096, 1000, 2) is not None  # chunks across the rank boundary
    assert "divides" in rank_invariance_note(1001, 0, 2)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """A default-profile TensoRF trainer (jitter on) on a 64 x 48 capture, batch 512."""
    base = tmp_path_factory.mktemp("ranks")
    root = write_llff(base / "scene", n=9, height=48, width=64)
    cfg = resolve_config(ConfigRequest(root, overrides=("train.batch_rays=512",)))
    assert cfg.render.perturb and cfg.train.grad_chunk_rays == 0  # the default path
    scene = load_training_scene(root, cfg)
    return start_run(cfg, scene, base / "run", torch.device("cpu")).trainer


def split_gap(trainer, grad_chunk_rays: int) -> float:
    """Relative L2 between the gradient of the global batch in one part (one process) and the
    sum of its two halves (two ranks), each weighted by its share."""
    import dataclasses

    cfg = trainer.cfg
    trainer.cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, grad_chunk_rays=grad_chunk_rays)
    )
    total = cfg.train.batch_rays
    batch = trainer.source.draw(total, slice(0, total))

    def gradient(parts):
        summed = None
        for start, stop in parts:
            rays, target = batch.rays[start:stop], batch.target[start:stop]
            trainer._forward_backward(rays, target, False, 1.0, None, start, total)
            grads = [
                p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                for p in trainer.model.parameters()
            ]
            summed = grads if summed is None else [a + b for a, b in zip(summed, grads)]
        return summed

    try:
        one = gradient([(0, total)])
        two = gradient([(0, total // 2), (total // 2, total)])
    finally:
        trainer.cfg = cfg
    gap = sum(float((a - b).norm() ** 2) for a, b in zip(one, two)) ** 0.5
    return gap / sum(float(a.norm() ** 2) for a in one) ** 0.5


def test_aligned_chunks_make_two_ranks_one_process(trainer):
    assert split_gap(trainer, 64) < 1e-5


def test_the_default_path_is_not_rank_invariant(trainer):
    """What the note warns of: one chunk per rank draws other jitter (measured 0.21)."""
    assert split_gap(trainer, 0) > 1e-2
