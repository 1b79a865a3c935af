"""`--set` on a key the chosen model does not read is a usage error (exit 2) naming the key
and what to set instead, before anything is loaded or written (models/registry.NOT_READ)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.config import build_config
from nerfcli.models.registry import NOT_READ
from nerfcli.models.resolve import ConfigRequest, resolve_config

runner = CliRunner()


@pytest.mark.parametrize(
    "args, named",
    [
        (["--set", "train.lr=1e-3"], "model.tensorf.lr_grid"),
        (["--set", "render.n_samples=8"], "model.tensorf.step_ratio"),
        (["--set", "render.raw_noise_std=0"], "no noise"),
        (["--set", "model.nerf.netwidth=8"], "--model nerf"),
        (["--model", "nerf", "--set", "model.tensorf.lr_grid=0.1"], "--model tensorf"),
    ],
)
def test_a_key_the_model_does_not_read_is_a_usage_error(tiny_llff, tmp_path, args, named):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(tiny_llff), "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    key = args[-1].split("=")[0]
    assert f"--set {key}: the" in result.output and named in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_the_model_that_reads_the_key_takes_it(tiny_llff):
    cfg = resolve_config(ConfigRequest(tiny_llff, model="nerf", overrides=("train.lr=1e-3",)))
    assert cfg.train.lr == 1e-3
    cfg = resolve_config(ConfigRequest(tiny_llff, overrides=("model.tensorf.lr_grid=0.05",)))
    assert cfg.model.tensorf.lr_grid == 0.05


def test_every_key_named_is_a_config_key():
    cfg = build_config()
    for keys in NOT_READ.values():
        for key in keys:
            node = cfg
            for part in key.split("."):
                node = getattr(node, part)  # AttributeError: a stale key


def test_fern_acceptance(fern_dir: Path, tmp_path: Path):
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", str(fern_dir), "--set", "train.lr=1e-3", "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert "model.tensorf.lr_grid" in result.output and "model.tensorf.lr_network" in result.output
