"""Depth against ground truth: the one depth_error that `nerf eval` reports, and camera_depth
mapping rendered ray depths back to stored z-depth (NDC and world rays)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nerfcli.data.cameras import Camera, intrinsics
from nerfcli.data.rays import camera_rays
from nerfcli.evaluation.depth import camera_depth, depth_error


def test_depth_error_closed_form():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])  # the 0 is not a valid ground-truth pixel
    pred = np.array([[1.1, 2.2], [4.4, 9.0]])
    error = depth_error(pred, gt)
    assert error.valid_pixels == 3
    assert error.abs_rel == pytest.approx(0.1)
    assert error.rmse == pytest.approx(np.sqrt((0.01 + 0.04 + 0.16) / 3))
    assert error["abs_rel"] == error.abs_rel
    assert error.to_dict() == {
        "abs_rel": error.abs_rel,
        "rmse": error.rmse,
        "valid_pixels": 3,
    }


def test_depth_error_ignores_invalid_pixels_and_takes_tensors():
    gt = torch.tensor([2.0, float("nan"), 3.0, 5.0])
    pred = torch.tensor([2.0, 1.0, float("inf"), 5.0])
    error = depth_error(pred, gt)
    assert (error.valid_pixels, error.abs_rel, error.rmse) == (2, 0.0, 0.0)
    nothing = depth_error(np.ones(3), np.zeros(3))
    assert nothing.valid_pixels == 0 and np.isnan(nothing.abs_rel) and np.isnan(nothing.rmse)
    with pytest.raises(ValueError, match="shapes differ"):
        depth_error(np.ones((2, 2)), np.ones(4))


@pytest.mark.parametrize("ndc", [False, True])
def test_camera_depth_recovers_the_z_depth_of_a_plane(ndc):
    """A fronto-parallel plane at z-depth 3 (training units) seen by a camera at the origin:
    the rendered t of every pixel maps back to 3 / scale stored units."""
    camera = Camera(6, 8, intrinsics(6, 8, 5.0), np.eye(3, 4, dtype=np.float32), ndc, 0.0, 1.0)
    rays = camera_rays(camera)
    if ndc:  # NDC t of the world point at z = -3 on each ray (near = 1): z_ndc = 1 + 2/z
        t = ((1.0 + 2.0 / -3.0) - rays.origins[..., 2]) / rays.directions[..., 2]
    else:
        t = torch.full((6, 8), 3.0)  # camera-frame directions have z = -1: t is z-depth
    depth = camera_depth(camera, t, scale=0.5)
    np.testing.assert_allclose(depth.numpy(), 6.0, rtol=1e-5)
