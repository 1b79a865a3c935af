"""The list of commands: (name, function, epilog with a worked example).

Command modules import torch inside their functions, so importing them here stays cheap.
"""

from __future__ import annotations

from nerfcli.cli import colmap2poses as _colmap2poses
from nerfcli.cli import demo as _demo
from nerfcli.cli import eval as _eval
from nerfcli.cli import export as _export
from nerfcli.cli import inspect_poses as _inspect_poses
from nerfcli.cli import make_scene as _make_scene
from nerfcli.cli import rays as _rays
from nerfcli.cli import render_video as _render_video
from nerfcli.cli import sfm as _sfm
from nerfcli.cli import train as _train
from nerfcli.cli import view as _view

COMMANDS: list = [
    ("inspect-poses", _inspect_poses.inspect_poses, _inspect_poses.EPILOG),
    ("rays", _rays.rays, _rays.EPILOG),
    ("train", _train.train, _train.EPILOG),
    ("render-video", _render_video.render_video, _render_video.EPILOG),
    ("eval", _eval.eval_command, _eval.EPILOG),
    ("view", _view.view, _view.EPILOG),
    ("colmap2poses", _colmap2poses.colmap2poses, _colmap2poses.EPILOG),
    ("sfm", _sfm.sfm, _sfm.EPILOG),
    ("make-scene", _make_scene.make_scene, _make_scene.EPILOG),
    ("demo", _demo.demo, _demo.EPILOG),
]

# Command groups: (name, Typer sub-application), e.g. `nerf export mesh`.
GROUPS: list = [
    ("export", _export.app),
]
