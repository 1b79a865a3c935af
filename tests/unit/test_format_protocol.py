"""The capture formats behind the registry's protocol (nerfcli.data.formats), and nothing
outside data/formats/ telling formats apart by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nerfcli.config import DataConfig, available_presets
from nerfcli.data.formats import FORMATS, every_view_data, format_module, frame_of_record
from nerfcli.data.plan import FRAMES, FramePlan

PACKAGE = Path(__file__).resolve().parents[2] / "nerfcli"
# where a format's name may still be spelled out, and why
ALLOWED = {
    "config.py": "data.format's choice list, and the upgrade of pre-scene-type checkpoints",
    "data/scene.py": "the comment naming Scene.format's values",
    "data/sfm/pipeline.py": "the `transforms` key of nerf sfm's --json (a file, not a format test)",
    "cli/common.py": "the CLI's choice list of --format (kept literal: no import at start-up)",
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_provides_the_protocol(name):
    module = format_module(name)
    for function in ("detect", "plan_frame", "load"):
        assert callable(getattr(module, function)), function
    assert module.PRESET in available_presets()
    assert module.REPORT in ("poses", "scene")
    for frame in getattr(module, "FRAME_OF_RENDER_PATH", {}).values():
        assert frame in FRAMES
    assert every_view_data(name, DataConfig()).format == name
    assert callable(module.find_photo) and module.RENDER_FRAMES >= 1
    assert isinstance(module.OPTIONS, frozenset) and module.OPTIONS <= set(
        DataConfig.__annotations__
    )
    assert isinstance(module.TRANSFORMS_WORLD, bool)
    assert isinstance(module.COLMAP_IS_CAPTURE_WORLD, bool)


def test_old_records_frames_and_every_view():
    assert frame_of_record("llff", "orbit") == "walk-around"
    assert frame_of_record("transforms", "orbit") == "file"  # the file's own frame
    assert frame_of_record("nope", "spiral") == "file"
    assert every_view_data("blender", DataConfig(testskip=8)).testskip == 1
    assert every_view_data("blender", DataConfig(testskip=8), 4).testskip == 4
    assert every_view_data("llff", DataConfig(testskip=8)).testskip == 8


def test_no_format_name_comparisons_outside_the_formats():
    pattern = re.compile(r"""["'](llff|blender|transforms)["']""")
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("data/formats/") or relative in ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "format names outside data/formats/ (ask the format module):\n" + "\n".join(
        found
    )


def test_a_plan_is_all_a_load_needs(tmp_path):
    from nerfcli.data.formats import load_scene, plan_frame
    from tests.conftest import write_llff

    root = write_llff(tmp_path / "s", with_images=False)
    plan = plan_frame(root, DataConfig(factor=0))
    assert isinstance(plan, FramePlan) and plan.capture is not None
    scene = load_scene(root, DataConfig(factor=0), False, plan)
    assert (scene.kind, scene.frame, scene.factor) == (plan.kind, plan.frame, plan.factor)
