"""The capture formats behind the registry's protocol (nerfcli.data.formats), and nothing
outside data/formats/ telling formats apart by name."""

from __future__ import annotations

import re
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest

from nerfcli.config import DataConfig, available_presets
from nerfcli.data.formats import FORMATS, every_view_data, format_module, frame_of_record
from nerfcli.data.plan import FRAMES, FramePlan

PACKAGE = Path(__file__).resolve().parents[2] / "nerfcli"
# where a format's name may still be spelled out, and why
ALLOWED = {
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
    assert callable(module.inspect)  # inspect-poses: its own report (one protocol member)
    for frame in getattr(module, "FRAME_OF_RENDER_PATH", {}).values():
        assert frame in FRAMES
    assert every_view_data(name, DataConfig()).format == name
    assert callable(module.find_photo) and module.RENDER_FRAMES >= 1
    # its own options: a frozen dataclass in its own section of the data config, whose keys
    # no shared key and no other format's repeat
    own = {f.name for f in fields(module.CONFIG)}
    assert name in DataConfig.__annotations__ and own
    assert not own & set(DataConfig.__annotations__)
    for other in FORMATS:
        if other != name:
            assert not own & {f.name for f in fields(format_module(other).CONFIG)}
    assert module.CONFIG.of(DataConfig()) == module.CONFIG()
    with pytest.raises(FrozenInstanceError):
        module.CONFIG().__setattr__(next(iter(own)), None)
    assert isinstance(module.TRANSFORMS_WORLD, bool)
    assert isinstance(module.COLMAP_IS_CAPTURE_WORLD, bool)


def test_old_records_frames_and_every_view():
    assert frame_of_record("llff", "orbit") == "walk-around"
    assert frame_of_record("transforms", "orbit") == "file"  # the file's own frame
    assert frame_of_record("nope", "spiral") == "file"
    eight = DataConfig(blender={"testskip": 8})
    assert every_view_data("blender", eight).blender["testskip"] == 1
    assert every_view_data("blender", eight, 4).blender["testskip"] == 4
    assert every_view_data("llff", eight).blender["testskip"] == 8


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


def test_spherify_is_the_llff_formats_and_the_clis_alone():
    """LLFF's spherified frame is named only where it lives (data/formats/llff*) and by the
    flag that asks for it (cli/): every other module speaks of the plan's frame."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(("data/formats/llff", "cli/")):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "spherify" in line:
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "spherify outside the LLFF format and the CLI:\n" + "\n".join(found)


def test_format_options_are_typed_checked_and_upgraded():
    from nerfcli.data.formats import check_options, upgrade_data_section
    from nerfcli.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.llff: unknown key 'half_res'.*bd_factor"):
        check_options(DataConfig(llff={"half_res": True}), "llff")
    with pytest.raises(ConfigError, match="data.blender.testskip: expected an integer"):
        check_options(DataConfig(blender={"testskip": "x"}), "llff")  # every section typed
    with pytest.raises(ConfigError, match="data.llff.bd_factor must be a finite number"):
        check_options(DataConfig(llff={"bd_factor": float("nan")}), "llff")
    full = check_options(DataConfig(llff={"recenter": False}), "llff")
    assert full == {"bd_factor": 0.75, "recenter": False, "spherify": False, "llff_camera": False}
    # a checkpoint written before format sections: the flat keys move into their sections
    old = {"format": "llff", "ndc": False, "spherify": True, "half_res": True, "testskip": 2}
    new = upgrade_data_section(old)
    assert new["llff"] == {"spherify": True} and new["blender"] == {"half_res": True, "testskip": 2}
    assert "scene_type" not in new  # spherified: no forward upgrade
    plain = upgrade_data_section({"format": "llff", "ndc": False, "bd_factor": 0.5})
    assert plain["scene_type"] == "forward" and plain["llff"] == {"bd_factor": 0.5}


def test_a_checkpoint_config_from_before_the_format_sections_loads():
    """What load_checkpoint reads: a stored config whose data section has the format keys
    flat (data.bd_factor, data.half_res, ...) loads with them in their sections."""
    from nerfcli.config import to_dict
    from nerfcli.models.config import build_config, config_from_checkpoint_dict
    from nerfcli.training.checkpoint import _upgraded_config

    stored = to_dict(build_config("llff"))
    data = {k: v for k, v in stored["data"].items() if k not in ("llff", "blender", "transforms")}
    data.update(bd_factor=0.5, recenter=False, spherify=False, llff_camera=True, half_res=True)
    data.update(testskip=8, skip_missing=False)
    cfg = config_from_checkpoint_dict(_upgraded_config({**stored, "data": data}))
    assert cfg.data.llff == {
        "bd_factor": 0.5,
        "recenter": False,
        "spherify": False,
        "llff_camera": True,
    }
    assert cfg.data.blender == {"half_res": True, "testskip": 8}
    assert cfg.data.transforms == {"skip_missing": False}
    with pytest.raises(Exception, match="unknown key 'bd_factor'"):
        config_from_checkpoint_dict({**stored, "data": data})  # not upgraded: refused
