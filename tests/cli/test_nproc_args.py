"""`nerf train --nproc N` hands each process the command's own arguments: built here from
train's real parameters (every one given a non-default value), so an option the forwarding
forgot would parse back differently."""

from __future__ import annotations

import typing

import pytest
import typer
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.cli.train import train

runner = CliRunner()
HINTS = typing.get_type_hints(train)  # the Typer signature: each parameter's Python type


# a valid value other than the default, for the options that pick one of a few things
CHOICES = {"model": "nerf", "data_format": "blender", "scene_type": "object", "device": "cpu"}
# --view watches one process: train refuses it with --nproc (tested below), so it is not forwarded
NOT_WITH_NPROC = {"view"}


def _train():
    return typer.main.get_command(app).commands["train"]


def _non_default(param) -> list[str]:
    """A command-line spelling of `param` with a value other than its default."""
    if param.param_type_name == "argument":
        return ["some/scene"]
    option = max(param.opts, key=len)
    if param.is_flag:
        if param.secondary_opts and param.default is not False:
            return [option]  # None (unset) -> on
        return [option] if not param.default else [max(param.secondary_opts, key=len)]
    if param.multiple:
        return [option, "train.iters=7", option, "model.tensorf.lr_grid=0.5"]
    if param.name in CHOICES:  # options whose value is checked against a list (exit 2)
        return [option, CHOICES[param.name]]
    hint = HINTS[param.name]
    if hint is int:
        return [option, "3"]
    if hint is float:
        return [option, "2.5"]
    return [option, f"given-{param.name}"]


def _parsed(args: list[str]) -> dict:
    return dict(_train().make_context("train", list(args)).params)


@pytest.mark.parametrize("with_out", [True, False])
def test_nproc_forwards_every_option_train_has(monkeypatch, with_out):
    launched: list = []

    def launch(nproc, module_args):
        launched.append((nproc, list(module_args)))
        return 0

    monkeypatch.setattr("nerfcli.training.distributed.launch", launch)
    given: list[str] = []
    for param in _train().params:
        if param.name in {"nproc", *NOT_WITH_NPROC} or (param.name == "out" and not with_out):
            continue
        given += _non_default(param)
    result = runner.invoke(app, ["train", *given, "--nproc", "2"])
    assert result.exit_code == 0, result.output
    ((nproc, args),) = launched
    assert nproc == 2 and args[0] == "train" and "--nproc" not in args
    expected = _parsed(given if with_out else [*given, "--out", "runs/some"])  # scene.parent
    assert _parsed(args[1:]) == expected
    names = (
        {p.name for p in _train().params}
        - {"nproc", "scene", *NOT_WITH_NPROC}
        - ({"out"} if not with_out else set())
    )
    differ = {n for n in names if expected[n] == _parsed([given[0]])[n]}
    assert differ == set(), f"not exercised with a non-default value: {differ}"


def test_view_is_refused_with_nproc(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path), "--view", "--nproc", "2"])
    assert result.exit_code == 1 and "--view watches one process" in result.output
