"""A generated forward-facing capture in LLFF layout, rendered by a small analytic ray caster.

The scene is a table-top still life seen by a hand-held camera: a textured backdrop (soft
checker over a smooth colour field), a wooden floor, two textured cards standing at
intermediate depths, two spheres and a box, lit by one directional light with Lambertian
shading and hard shadows (all view-independent, so a radiance field can reproduce it exactly).
Cameras sit on a jittered grid in the plane z ~ 0, all looking down -z with a slight toe-in and
a small random rotation, like a hand-held LLFF capture; so recentering and NDC behave as on fern.

Written layout (what `nerfcli.data.formats.llff.load_llff_data` reads):
    poses_bounds.npy   [N, 17]: 3x5 [R | t | hwf] with rotation columns [down, right, back]
                       (the stored LLFF convention), then near, far = 0.9 * min and 1.1 * max of
                       that view's true depth
    images/imageNNN.png  uint8 RGB, supersampled (s x s rays per pixel, averaged)
    depth/imageNNN.npy   float32 [H, W] z-depth of the pixel's centre ray: distance along the
                       camera's viewing axis, in the world units of the poses
    scene.json         the generator's parameters (seed, preset, objects, cameras)

Pixel convention (nerfcli.data.rays): pixel (i, j) = (column, row) looks along
[(i - W/2) / f, -(j - H/2) / f, -1] in the camera frame [right, up, back], with no half-pixel
offset. Because that direction has camera z = -1, the ray parameter of a hit is its z-depth.

Everything is numpy, deterministic from the seed, and vectorised over the rays of one view.

The package: shapes (textures and analytic shapes), raycast (the renderer), still_life (the
objects for a seed), capture (cameras, one view), writer (make_scene, load_spec). Depth errors against its ground
truth are nerfcli.evaluation.depth's (the one eval uses). Import from here; the names below are
the public ones.
"""

from __future__ import annotations

from nerfcli.data.synthetic.capture import (
    LLFFHOLD,
    grid_shape,
    make_cameras,
    pixel_rays,
    render_view,
    training_to_stored_axes,
    view_order,
)
from nerfcli.data.synthetic.raycast import AMBIENT, LIGHT_DIRECTION, Hits, SceneSpec
from nerfcli.data.synthetic.shapes import Box, Plane, Shape, Sphere, Texture
from nerfcli.data.synthetic.still_life import BACKDROP_DEPTH, FLOOR_HEIGHT, scene_spec
from nerfcli.data.synthetic.writer import (
    FOCAL_PER_WIDTH,
    GENERATOR,
    GENERATOR_VERSION,
    PRESETS,
    SCENE_FILE,
    Preset,
    SynthInfo,
    load_spec,
    make_scene,
)

__all__ = [
    "AMBIENT",
    "BACKDROP_DEPTH",
    "FLOOR_HEIGHT",
    "FOCAL_PER_WIDTH",
    "GENERATOR",
    "GENERATOR_VERSION",
    "LIGHT_DIRECTION",
    "LLFFHOLD",
    "PRESETS",
    "SCENE_FILE",
    "Box",
    "Hits",
    "Plane",
    "Preset",
    "SceneSpec",
    "Shape",
    "Sphere",
    "SynthInfo",
    "Texture",
    "grid_shape",
    "load_spec",
    "make_cameras",
    "make_scene",
    "pixel_rays",
    "render_view",
    "scene_spec",
    "training_to_stored_axes",
    "view_order",
]
