"""`nerf eval --lpips`: a column in the table and in metrics.json for every view, from
random backbone weights placed in torchvision's cache (no download); without the weights a
one-line error before anything is rendered."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from nerfcli.cli.app import app
from tests.conftest import tiny_nerf_args, write_llff
from tests.unit.test_lpips import _random_torchvision_state

runner = CliRunner()


def test_eval_lpips_scores_every_view_and_needs_weights(tmp_path: Path, monkeypatch) -> None:
    scene = write_llff(tmp_path / "scene", n=9, height=64, width=80, focal=70.0)
    run = tmp_path / "run"
    trained = runner.invoke(
        app,
        ["train", str(scene), *tiny_nerf_args(batch_rays=64, eval_every=0), "--iters", "3"]
        + ["--out", str(run), "-q"],
    )
    assert trained.exit_code == 0, trained.output
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    missing = runner.invoke(app, ["eval", str(run), "--lpips", "alex", "-q"])
    assert missing.exit_code == 1
    text = " ".join(missing.output.split())
    assert "alexnet-owt-*.pth" in text and "hub/checkpoints" in text and "Traceback" not in text
    assert not (run / "eval").exists()  # refused before rendering
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(_random_torchvision_state("alex"), folder / "alexnet-owt-7be5be79.pth")
    scored = runner.invoke(
        app, ["eval", str(run), "--lpips", "alex", "--json", "--out", str(tmp_path / "e")]
    )
    assert scored.exit_code == 0, scored.output
    report = json.loads(scored.stdout)
    assert report["lpips_net"] == "alex" and report["lpips"] > 0
    assert all(view["lpips"] is not None and view["lpips"] > 0 for view in report["views"])
    stored = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert stored["lpips"] == report["lpips"]
    table = runner.invoke(app, ["eval", str(run), "--lpips", "alex", "--out", str(tmp_path / "f")])
    assert table.exit_code == 0 and "LPIPS (alex)" in table.output
    small = runner.invoke(app, ["eval", str(run), "--lpips", "alex", "--downscale", "4", "-q"])
    assert small.exit_code == 1 and "too small for its backbone" in " ".join(small.output.split())
