"""`--set` on a key the chosen model does not read is a usage error (exit 2) naming the key
and what to set instead, before anything is loaded or written: derived from the config section
that holds the key (model.<name>.* is model <name>'s), plus each model config's INSTEAD table
of the shared keys it ignores (nerfcli.models.config.check_keys_read)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.config import to_dict
from nerfcli.models.config import build_config, config_from_checkpoint_dict, model_sections
from nerfcli.models.resolve import ConfigRequest, resolve_config

runner = CliRunner()


@pytest.mark.parametrize(
    "args, named",
    [
        (["--set", "train.lr=1e-3"], "model.tensorf.lr_grid"),
        (["--set", "render.n_samples=8"], "model.tensorf.step_ratio"),
        (["--set", "render.raw_noise_std=0"], "no noise"),
        (["--set", "model.nerf.n_samples=8"], "model.tensorf.step_ratio"),
        (["--set", "render.lindisp=true"], "model.nerf.lindisp, the nerf model's"),
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


def test_moved_keys_keep_their_old_spelling(tiny_llff):
    """render.n_samples & co. moved to the classic model's section; --set, presets and
    checkpoints written before the move still reach it (a later spelling wins)."""
    old = ["render.n_samples=8", "render.n_importance=4", "render.lindisp=true"]
    request = ConfigRequest(tiny_llff, model="nerf", overrides=(*old, "render.raw_noise_std=0"))
    cfg = resolve_config(request)
    nerf = cfg.model.nerf
    assert (nerf.n_samples, nerf.n_importance, nerf.lindisp, nerf.raw_noise_std) == (8, 4, True, 0)
    cfg = build_config(overrides=["model.nerf.n_samples=16", "render.n_samples=12"])
    assert cfg.model.nerf.n_samples == 12
    saved = to_dict(build_config())
    nerf_section = saved["model"].pop("nerf")
    for key in ("n_samples", "n_importance", "lindisp", "raw_noise_std"):
        saved["render"][key] = nerf_section.pop(key)
    saved["render"]["n_samples"] = 24
    saved["model"]["nerf"] = nerf_section
    assert config_from_checkpoint_dict(saved).model.nerf.n_samples == 24
    assert "n_samples" not in to_dict(config_from_checkpoint_dict(saved))["render"]


def test_every_key_named_is_a_config_key():
    cfg = build_config()
    for section in model_sections().values():
        for key in section.INSTEAD:
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
