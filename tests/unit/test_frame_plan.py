"""The frame plan `nerf train` settles without flags (scene kind, factor, frame, cameras), and
the walk-around LLFF frame."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfcli.config import DataConfig
from nerfcli.data.formats import load_scene, plan_frame
from nerfcli.data.formats.llff_unbounded import CAMERA_RADIUS, rotation_to_up
from nerfcli.data.plan import MAX_SIDE, auto_factor
from nerfcli.errors import ConfigError
from nerfcli.models.config import build_config
from nerfcli.models.resolve import ConfigRequest, resolve, resolve_config
from tests.conftest import write_llff
from tests.scene_types import surround_poses, write_surround_llff

AUTO = DataConfig(factor=0)


def choose_scene_type(path: Path, data: DataConfig):
    return plan_frame(path, data).choices["scene_type"]


def choose_factor(path: Path, data: DataConfig):
    return plan_frame(path, data).choices["factor"]


def test_forward_facing_llff_is_forward_and_surround_is_unbounded(tmp_path: Path):
    facing = write_llff(tmp_path / "facing", with_images=False)
    around = write_surround_llff(tmp_path / "around")
    choice = choose_scene_type(facing, AUTO)
    assert choice.value == "forward" and choice.auto and "forward-facing" in choice.reason
    choice = choose_scene_type(around, AUTO)
    assert choice.value == "unbounded" and choice.auto
    # a full circle 1 above the subject at radius 3: the mean direction is straight down and
    # every view is atan(3 / 1) = 71.6 deg from it
    assert "surround capture: views spread 72 deg > 45" in choice.reason


def test_generated_scene_is_forward(tmp_path: Path):
    from nerfcli.data.synthetic import make_scene

    make_scene(tmp_path / "gen", preset="small", views=4, height=12, width=16)
    assert choose_scene_type(tmp_path / "gen", AUTO).value == "forward"


def test_given_scene_type_wins_and_is_checked_against_the_format(tmp_path: Path):
    around = write_surround_llff(tmp_path / "around")
    choice = choose_scene_type(around, replace(AUTO, scene_type="forward"))
    assert choice.value == "forward" and not choice.auto
    assert choose_scene_type(around, replace(AUTO, llff={"spherify": True})).value == "object"
    with pytest.raises(ConfigError, match="--spherify"):
        choose_scene_type(around, replace(AUTO, llff={"spherify": True}, scene_type="unbounded"))
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "transforms.json").write_text("{}")
    with pytest.raises(ConfigError, match="needs an LLFF capture"):
        choose_scene_type(tmp_path / "json", replace(AUTO, scene_type="forward"))


@pytest.mark.parametrize(
    "side, factor",
    [(4032, 8), (1920, 2), (800, 1), (1280, 2), (1000, 1), (1001, 2), (2000, 2), (2001, 4), (1, 1)],
)
def test_auto_factor_is_the_smallest_power_of_two_within_max_side(side, factor):
    assert auto_factor(side) == factor
    assert side / factor <= MAX_SIDE
    assert factor == 1 or side / (factor // 2) > MAX_SIDE  # the smallest such power of two


def test_factor_choice_reads_the_stored_size_and_an_explicit_factor_wins(tmp_path: Path):
    big = write_llff(tmp_path / "big", height=1800, width=2400, focal=2000.0, with_images=False)
    choice = choose_factor(big, AUTO)
    assert choice.value == 4 and choice.auto and "2400 x 1800" in choice.reason
    choice = choose_factor(big, replace(AUTO, factor=2))
    assert choice.value == 2 and not choice.auto
    scene = load_scene(big, AUTO, load_images=False)  # the loader resolves auto the same way
    assert scene.factor == 4 and (scene.height, scene.width) == (450, 600)


def test_resolve_config_settles_type_factor_and_profile(tmp_path: Path):
    around = write_surround_llff(tmp_path / "around")
    facing = write_llff(tmp_path / "facing")
    choices: dict = {}
    cfg = resolve(ConfigRequest(around), choices)[0]
    assert (cfg.data.scene_type, cfg.data.ndc, cfg.data.factor) == ("unbounded", False, 1)
    assert choices["scene_type"].value == "unbounded" and choices["factor"].value == 1
    probe = build_config("llff", ["data.ndc=false", "data.scene_type=unbounded"])
    from nerfcli.models.registry import model_profile

    expected = model_profile("tensorf", "cpu", "unbounded")["model"]["tensorf"]
    assert list(cfg.model.tensorf.grid_final) == list(expected["grid_final"])
    assert probe.data.scene_type == "unbounded"
    cfg = resolve_config(ConfigRequest(facing))
    assert (cfg.data.scene_type, cfg.data.ndc) == ("forward", True)
    cfg = resolve_config(ConfigRequest(around, data={"scene_type": "forward", "factor": 2}))
    assert (cfg.data.scene_type, cfg.data.ndc, cfg.data.factor) == ("forward", True, 2)
    sphere = ("data.llff.spherify=true", "data.ndc=false")  # what --spherify asks
    cfg = resolve_config(ConfigRequest(facing, "surround", overrides=sphere))
    assert (cfg.data.scene_type, cfg.data.llff["spherify"]) == ("object", True)


def test_rotation_to_up_takes_any_direction_to_z():
    rng = np.random.default_rng(3)
    for up in [*rng.normal(size=(20, 3)), np.array([0.0, 0.0, -2.0]), np.array([0, 0, 1.0])]:
        rotation = rotation_to_up(up)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
        np.testing.assert_allclose(rotation @ (up / np.linalg.norm(up)), [0, 0, 1], atol=1e-12)


def test_walk_around_frame_centres_scales_and_maps_file_coordinates(tmp_path: Path):
    centre, radius = np.array([1.0, 2.0, 3.0]), 3.0
    around = write_surround_llff(tmp_path / "around", centre=centre, radius=radius)
    scene = load_scene(around, AUTO, load_images=False)
    assert scene.kind == "unbounded" and scene.render_path == "orbit"
    assert scene.frame == "walk-around" and not scene.ndc and scene.source["centre"] == "focus"
    np.testing.assert_allclose(scene.source["focus_point"], centre, atol=1e-9)
    positions = scene.c2w[:, :, 3].astype(np.float64)
    distance = np.hypot(radius, 1.0)  # the cameras sit 1 above the circle of radius 3
    np.testing.assert_allclose(np.linalg.norm(positions, axis=1), CAMERA_RADIUS, atol=1e-6)
    assert scene.scale == pytest.approx(CAMERA_RADIUS / distance)
    # the mean up of cameras looking down at the centre is +z in the training frame
    mean_up = scene.c2w[:, :, 1].mean(0)
    np.testing.assert_allclose(mean_up / np.linalg.norm(mean_up), [0, 0, 1], atol=1e-6)
    # world_from_file maps every stored camera centre (and the focus) to the training frame
    stored = surround_poses(12, centre, radius)
    world = scene.world_from_file
    mapped = stored[:, :, 3] @ world[:3, :3].T + world[:3, 3]
    np.testing.assert_allclose(mapped, positions, atol=1e-6)
    np.testing.assert_allclose(world[:3, :3] @ centre + world[:3, 3], 0.0, atol=1e-9)
    # the box holds every camera; near, far from the bounds (1.5, 9 in file units)
    assert np.all(np.abs(positions) <= scene.scene_box[1] + 1e-6)
    assert scene.near == pytest.approx(0.9 * 1.5 * scene.scale)
    assert scene.far == pytest.approx(max(9.0 * scene.scale, 2 * np.sqrt(3) * CAMERA_RADIUS))
    np.testing.assert_allclose(scene.bounds, np.array([[1.5, 9.0]] * 12) * scene.scale, 1e-6)
    # the viewing directions turn with the frame: every camera still looks at the focus
    looks = -scene.c2w[:, :, 2]
    to_focus = -positions / np.linalg.norm(positions, axis=1, keepdims=True)
    np.testing.assert_allclose(looks, to_focus, atol=1e-6)


def test_object_scene_type_is_the_same_frame_in_a_box(tmp_path: Path):
    around = write_surround_llff(tmp_path / "around")
    unbounded = load_scene(around, AUTO, load_images=False)
    obj = load_scene(around, replace(AUTO, scene_type="object"), load_images=False)
    assert obj.kind == "object" and obj.frame == "walk-around"
    np.testing.assert_array_equal(obj.c2w, unbounded.c2w)
    np.testing.assert_array_equal(obj.scene_box, unbounded.scene_box)


def test_forward_scene_type_keeps_the_reference_frame(tmp_path: Path):
    from nerfcli.data.formats.llff import load_llff_data as llff_load

    around = write_surround_llff(tmp_path / "around")
    forced = load_scene(around, replace(AUTO, scene_type="forward", ndc=False), False)
    reference = llff_load(around, factor=1, ndc=False, load_imgs=False)
    assert forced.kind == reference.kind == "forward" and forced.scene_box is None
    assert not forced.ndc and not reference.ndc and forced.frame == "reference"
    np.testing.assert_array_equal(forced.c2w, reference.c2w)


def test_the_plan_reads_poses_bounds_once_and_the_load_follows_it(tmp_path: Path, monkeypatch):
    import nerfcli.data.formats.llff as llff
    import nerfcli.data.formats.llff_plan as llff_plan
    from nerfcli.training.session import load_training_scene

    facing = write_llff(tmp_path / "facing")
    reads: list[Path] = []
    real = llff_plan.read_poses_bounds

    def counting(path):
        reads.append(Path(path))
        return real(path)

    monkeypatch.setattr(llff_plan, "read_poses_bounds", counting)
    monkeypatch.setattr(llff, "read_poses_bounds", counting)
    cfg, plan = resolve(ConfigRequest(facing))
    scene = load_training_scene(facing, cfg, plan=plan)
    assert len(reads) == 1
    assert (plan.kind, plan.frame, plan.ndc, plan.cameras) == (
        "forward",
        "reference",
        True,
        "poses_bounds.npy",
    )
    assert (scene.kind, scene.frame, scene.ndc, scene.factor) == (
        "forward",
        "reference",
        True,
        plan.factor,
    )
    assert set(plan.to_dict()["reasons"]) == {"scene_type", "factor", "frame", "cameras"}


def test_surround_object_and_spherified_plans(tmp_path: Path):
    around = write_surround_llff(tmp_path / "around")
    plan = plan_frame(around, AUTO)
    assert (plan.kind, plan.frame, plan.ndc, plan.profile_kind) == (
        "unbounded",
        "walk-around",
        False,
        "unbounded",
    )
    plan = plan_frame(around, replace(AUTO, scene_type="object"))
    assert (plan.kind, plan.frame, plan.profile_kind) == ("object", "walk-around", "object")
    plan = plan_frame(around, replace(AUTO, llff={"spherify": True}, ndc=False))
    assert (plan.kind, plan.frame, plan.ndc) == ("object", "spherified", False)
    # nerf-pytorch's frame without NDC: a forward scene whose model defaults are an object's
    plan = plan_frame(around, replace(AUTO, scene_type="forward", ndc=False))
    assert (plan.kind, plan.frame, plan.ndc, plan.profile_kind) == (
        "forward",
        "reference",
        False,
        "object",
    )


@pytest.mark.parametrize(
    "old_kind, render_path, kind, ndc, frame",
    [
        ("ndc", "spiral", "forward", True, "reference"),
        ("unbounded", "spiral", "forward", False, "reference"),  # nerf-pytorch's --no_ndc
        ("box", "circle", "object", False, "spherified"),
        ("unbounded", "orbit", "unbounded", False, "walk-around"),
        ("box", "orbit", "object", False, "walk-around"),
    ],
)
def test_records_written_before_the_plan_load_in_its_vocabulary(
    tmp_path: Path, old_kind, render_path, kind, ndc, frame
):
    from nerfcli.training.scene_record import scene_from_record, scene_record

    scene = load_scene(write_llff(tmp_path / "facing", with_images=False), AUTO, False)
    record = scene_record(scene)
    for name in ("ndc", "frame"):
        del record[name]
    record.update(kind=old_kind, render_path=render_path)
    if old_kind == "box":
        record["scene_box"] = torch.tensor([[-1.0] * 3, [1.0] * 3])
    loaded = scene_from_record(record)
    assert (loaded.kind, loaded.ndc, loaded.frame) == (kind, ndc, frame)
    assert scene_from_record(scene_record(loaded)).frame == frame  # and stays so
