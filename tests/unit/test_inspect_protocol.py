"""inspect-poses over the format protocol: every format's `inspect(path, data)` returns a
Report that knows its summary rows and checks, and the CLI prints each the same way."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.data.formats import FORMATS, format_module
from nerfcli.data.inspect.report import Report, Row
from nerfcli.models.resolve import ConfigRequest, resolve_data
from tests.conftest import write_llff
from tests.unit.test_blender import write_blender
from tests.unit.test_transforms import write_transforms

runner = CliRunner()
WRITERS = {"llff": write_llff, "blender": write_blender, "transforms": write_transforms}


@pytest.fixture(params=list(FORMATS))
def capture(request, tmp_path):
    root = tmp_path / request.param
    WRITERS[request.param](root)
    return request.param, root


def test_every_format_reports_through_the_protocol(capture):
    name, root = capture
    data = resolve_data(ConfigRequest(root, data={"format": name}))
    assert data.format == name and data.factor == 0  # the preset's, before any plan
    report = format_module(name).inspect(root, data)
    assert isinstance(report, Report) and report.ok, report.failed
    rows = report.summary_rows()
    assert all(isinstance(row, Row) and row.value for row in rows)
    names = [row.name for row in rows]
    for shared in ("views", "image size (H x W)", "focal", "camera extent", "capture"):
        assert shared in names, (name, names)
    assert names[-1] in ("images", "render path") and len(set(names)) == len(names)
    doc = report.to_json()
    assert doc["path"].startswith(str(root)) and doc["ok"] is True  # LLFF: its .npy
    assert [check["name"] for check in doc["checks"]] == [check.name for check in report.checks]


def test_the_cli_prints_every_report_one_way(capture):
    name, root = capture
    human = runner.invoke(app, ["inspect-poses", str(root)])
    assert human.exit_code == 0, human.output
    report = format_module(name).inspect(root, resolve_data(ConfigRequest(root)))
    text = "".join(human.stderr.split())  # the table wraps at the console's width, anywhere
    rows = "".join(f"{report.path}" + "".join(f"{r.name}{r.value}" for r in report.summary_rows()))
    assert "".join(rows.split()) + "checks" in text
    at = text.index("checks")
    for check in report.checks:  # in order, each after its mark
        at = text.index("".join(f"{check.name}:{check.message}".split()), at + 1)
    doc = json.loads(runner.invoke(app, ["inspect-poses", str(root), "--json"]).stdout)
    assert doc == {"format": name, **json.loads(json.dumps(report.to_json()))}


def test_llffhold_reaches_a_transforms_capture(tmp_path):
    root = write_transforms(tmp_path / "circle", n=9)  # no split lists: every llffhold-th view
    views = {}
    for hold in ("8", "4"):
        result = runner.invoke(app, ["inspect-poses", str(root), "--llffhold", hold, "--json"])
        assert result.exit_code == 0, result.output
        views[hold] = json.loads(result.stdout)["test_views"]
    assert views == {"8": [0, 8], "4": [0, 4, 8]}


def test_spherify_on_a_forward_capture_is_hinted(tmp_path):
    root = write_llff(tmp_path / "forward")
    result = runner.invoke(app, ["inspect-poses", str(root), "--spherify"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stderr.split())
    assert "capture forward-facing (views within" in text
    assert "mean direction); hint: --spherify is meant for surround captures render path" in text
