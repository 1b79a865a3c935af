"""`evaluate` scores view i on a thread of its own while view i+1 renders: each score, file
and progress callback must still belong to its own view, in the held-out order, the last view
included. A stand-in render returns each view's photo off by a known, view-specific amount, so
each view's PSNR is known in closed form."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import nerfcli.evaluation.evaluate as evaluate_module
from nerfcli.data.formats import load_scene
from nerfcli.render.composite import RenderResult
from tests.conftest import write_llff


def offset_of(view: int) -> float:
    return 0.01 * (view + 1)


def test_each_view_keeps_its_own_score_files_and_order(tmp_path: Path, monkeypatch):
    scene = load_scene(write_llff(tmp_path / "scene", n=17))
    photos = {view: torch.from_numpy(scene.images[view]) for view in scene.held_out}
    assert len(scene.held_out) >= 3
    rendered, scored = [], []

    def render_view(render_fn, camera, chunk, device, downscale=1):
        # the view is told apart by its camera pose
        view = min(
            scene.held_out,
            key=lambda v: float(np.abs(scene.camera(v).c2w - camera.c2w).sum()),
        )
        rendered.append(view)
        rgb = (photos[view] - offset_of(view)).clamp(min=0.0)
        mse = float(((rgb - photos[view]) ** 2).mean())
        expected[view] = -10.0 * math.log10(mse)
        zeros = torch.zeros(rgb.shape[:2])
        return RenderResult(rgb=rgb, depth=zeros, disparity=zeros, opacity=zeros + 1.0)

    expected: dict[int, float] = {}
    prepared = []  # the pixels the model is told to expect (RadianceModel.prepare_renders)
    model = SimpleNamespace(prepare_renders=prepared.append)
    monkeypatch.setattr(evaluate_module, "restore_model", lambda ckpt, device: model)
    monkeypatch.setattr(evaluate_module, "render_view", render_view)
    main = threading.get_ident()
    scoring_threads = set()
    ssim = evaluate_module.ssim

    def ssim_on_thread(a, b):
        scoring_threads.add(threading.get_ident())
        return ssim(a, b)

    monkeypatch.setattr(evaluate_module, "ssim", ssim_on_thread)
    ckpt = SimpleNamespace(
        path=tmp_path / "ckpt.pt",
        step=1,
        config=SimpleNamespace(render=SimpleNamespace(chunk=1024), model=SimpleNamespace(name="x")),
    )
    report = evaluate_module.evaluate(
        ckpt, scene, tmp_path / "eval", torch.device("cpu"), on_view=scored.append
    )
    assert rendered == list(scene.held_out)
    pixels = sum(scene.camera(v).height * scene.camera(v).width for v in scene.held_out)
    assert prepared == [pixels]  # told once, before the first view, of every view's pixels
    assert [s.view for s in scored] == list(scene.held_out)  # callbacks in order, last included
    assert [s.view for s in report.views] == list(scene.held_out)
    for score in report.views:
        assert score.psnr == pytest.approx(expected[score.view], abs=1e-4)
        render = iio.imread(score.files["render"]).astype(np.float64) / 255.0
        gt = iio.imread(score.files["gt"]).astype(np.float64) / 255.0
        # the files are this view's: their difference is its offset (8-bit rounding aside)
        assert float(np.median(gt - render)) == pytest.approx(offset_of(score.view), abs=0.003)
    assert report.psnr == pytest.approx(np.mean(list(expected.values())), abs=1e-4)
    assert scoring_threads and main not in scoring_threads  # scored beside the renders
