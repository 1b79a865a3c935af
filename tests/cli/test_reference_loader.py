"""`nerf rays --out` and `nerf inspect-poses --path-out` on fern against an independent plain
numpy transcription of the reference nerf-pytorch maths (load_llff_data with factor 8,
recenter, bd_factor 0.75, the 120-frame spiral; get_rays_np; ndc_rays): equal to < 1e-4."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from nerfcli.cli.app import app


def _normalize(x):
    return x / np.linalg.norm(x)


def _viewmatrix(z, up, pos):
    vec2 = _normalize(z)
    vec0 = _normalize(np.cross(up, vec2))
    vec1 = _normalize(np.cross(vec2, vec0))
    return np.stack([vec0, vec1, vec2, pos], 1)


def _poses_avg(poses):
    center = poses[:, :3, 3].mean(0)
    return _viewmatrix(poses[:, :3, 2].sum(0), poses[:, :3, 1].sum(0), center)


def reference_llff(poses_bounds: np.ndarray, factor: int = 8):
    """(poses [N, 3, 4], render path [120, 3, 4], H, W, focal), the reference's way."""
    poses = poses_bounds[:, :-2].reshape([-1, 3, 5]).transpose([1, 2, 0])
    bds = poses_bounds[:, -2:].transpose([1, 0])
    height, width, focal = poses[0, 4, 0], poses[1, 4, 0], poses[2, 4, 0]
    height, width, focal = round(height / factor), round(width / factor), focal / factor
    poses = np.concatenate([poses[:, 1:2, :], -poses[:, 0:1, :], poses[:, 2:, :]], 1)
    poses = np.moveaxis(poses, -1, 0).astype(np.float32)
    bds = np.moveaxis(bds, -1, 0).astype(np.float32)
    sc = 1.0 / (bds.min() * 0.75)
    poses[:, :3, 3] *= sc
    bds *= sc
    avg = np.concatenate([_poses_avg(poses), [[0, 0, 0, 1.0]]], 0)
    bottom = np.tile(np.reshape([0, 0, 0, 1.0], [1, 1, 4]), [poses.shape[0], 1, 1])
    poses = (np.linalg.inv(avg) @ np.concatenate([poses[:, :3, :4], bottom], -2))[:, :3, :4]
    c2w = _poses_avg(poses)
    up = _normalize(poses[:, :3, 1].sum(0))
    close_depth, inf_depth = bds.min() * 0.9, bds.max() * 5.0
    dt = 0.75
    focus = 1.0 / ((1.0 - dt) / close_depth + dt / inf_depth)
    rads = np.append(np.percentile(np.abs(poses[:, :3, 3]), 90, 0), 1.0)
    path = []
    for theta in np.linspace(0.0, 2.0 * np.pi * 2, 121)[:-1]:
        c = c2w[:3, :4] @ (
            np.array([np.cos(theta), -np.sin(theta), -np.sin(theta * 0.5), 1]) * rads
        )
        z = _normalize(c - c2w[:3, :4] @ np.array([0, 0, -focus, 1.0]))
        path.append(_viewmatrix(z, up, c))
    return poses, np.stack(path), height, width, focal


def reference_rays(height, width, focal, c2w):
    """get_rays_np, then ndc_rays with near 1."""
    i, j = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height), indexing="xy")
    dirs = np.stack([(i - 0.5 * width) / focal, -(j - 0.5 * height) / focal, -np.ones_like(i)], -1)
    rays_d = np.sum(dirs[..., None, :] * c2w[:3, :3], -1)
    rays_o = np.broadcast_to(c2w[:3, -1], rays_d.shape)
    t = -(1.0 + rays_o[..., 2]) / rays_d[..., 2]
    rays_o = rays_o + t[..., None] * rays_d
    o0 = -1.0 / (width / (2.0 * focal)) * rays_o[..., 0] / rays_o[..., 2]
    o1 = -1.0 / (height / (2.0 * focal)) * rays_o[..., 1] / rays_o[..., 2]
    o2 = 1.0 + 2.0 * 1.0 / rays_o[..., 2]
    d0 = (
        -1.0
        / (width / (2.0 * focal))
        * (rays_d[..., 0] / rays_d[..., 2] - rays_o[..., 0] / rays_o[..., 2])
    )
    d1 = (
        -1.0
        / (height / (2.0 * focal))
        * (rays_d[..., 1] / rays_d[..., 2] - rays_o[..., 1] / rays_o[..., 2])
    )
    d2 = -2.0 * 1.0 / rays_o[..., 2]
    return np.stack([o0, o1, o2], -1), np.stack([d0, d1, d2], -1)


def test_fern_rays_and_render_path_match_the_reference(fern_dir, tmp_path):
    arr = np.load(fern_dir / "poses_bounds.npy")
    poses, path, height, width, focal = reference_llff(arr)
    path_file, rays_file = tmp_path / "path.npy", tmp_path / "rays.npz"
    runner = CliRunner()
    result = runner.invoke(app, ["inspect-poses", str(fern_dir), "--path-out", str(path_file)])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(path_file), path, atol=1e-4)
    for view in (0, 7, 19):
        result = runner.invoke(app, ["rays", str(fern_dir), "--view", str(view), "--out",
                                     str(rays_file), "--force"])  # fmt: skip
        assert result.exit_code == 0, result.output
        rays_o, rays_d = reference_rays(height, width, focal, poses[view])
        with np.load(rays_file) as data:
            assert data["rays_o"].shape == (height, width, 3) == (378, 504, 3)
            np.testing.assert_allclose(data["c2w"], poses[view], atol=1e-4)
            np.testing.assert_allclose(data["rays_o"], rays_o, atol=1e-4)
            np.testing.assert_allclose(data["rays_d"], rays_d, atol=1e-4)
