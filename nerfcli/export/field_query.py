"""Density, colour and density gradients of a restored model at arbitrary points of its ray
space (NDC or the training frame), in chunks, for the model kinds nerfcli has (TensoRF and the
classic NeRF). Models are read through their own field methods; nothing here renders rays."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from nerfcli.errors import NerfError
from nerfcli.models.base import RadianceModel

CHUNK = 1 << 18


def _tensorf_density(model, points: torch.Tensor) -> torch.Tensor:
    field = model.field
    coords = field.normalize(points)  # [P, 3] grid coordinates
    inside = (coords.abs() <= 1.0).all(-1)  # [P]
    if field.alpha_mask.numel():
        inside = inside & field.alpha_mask_lookup(coords.detach())
    if points.requires_grad:
        # gradients (normals): the field clamped to the box, so a point a hair outside it (a
        # median depth inside the ray's last interval in the box) keeps the face's normal
        sigma = field.activate_density(field.density_feature(coords.clamp(-1.0, 1.0)))
        if field.alpha_mask.numel():
            sigma = sigma * field.alpha_mask_lookup(coords.detach().clamp(-1.0, 1.0))
        return sigma
    index = torch.nonzero(inside).squeeze(-1)  # [V] only the points inside are read
    sigma = torch.zeros(len(points), device=points.device, dtype=points.dtype)
    return sigma.index_put((index,), field.activate_density(field.density_feature(coords[index])))


def _tensorf_colour(model, points: torch.Tensor, viewdirs: torch.Tensor) -> torch.Tensor:
    field = model.field
    coords = field.normalize(points).clamp(-1.0, 1.0)  # [P, 3]
    return field.decoder(field.appearance(coords), viewdirs)  # [P, 3]


def _nerf_field(model):
    return model.fine if model.fine is not None else model.coarse


def _nerf_density(model, points: torch.Tensor) -> torch.Tensor:
    """The density the model renders: the network's, and 0 outside its estimator's occupied
    cells (where it was never trained, and renders nothing)."""
    sigma_raw, _ = _nerf_field(model)(points, torch.zeros_like(points))
    sigma = F.relu(sigma_raw)
    keep = model.occupied(points)
    return sigma if keep is None else sigma * keep


def _nerf_colour(model, points: torch.Tensor, viewdirs: torch.Tensor) -> torch.Tensor:
    _, rgb_raw = _nerf_field(model)(points, viewdirs)
    return torch.sigmoid(rgb_raw)


def _functions(model: RadianceModel) -> tuple[Callable, Callable]:
    if model.name == "tensorf":
        return _tensorf_density, _tensorf_colour
    if model.name == "nerf":
        return _nerf_density, _nerf_colour
    raise NerfError(f"nerf export does not know model {model.name!r}; export a tensorf or nerf run")


def _device(model: RadianceModel) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def density_at(model: RadianceModel, points, chunk: int = CHUNK) -> torch.Tensor:
    """Density [P] (per unit length of the ray space) at points [P, 3]."""
    density, _ = _functions(model)
    points = torch.as_tensor(points, dtype=torch.float32)
    device = _device(model)
    parts = [
        density(model, points[start : start + chunk].to(device)).cpu()
        for start in range(0, len(points), chunk)
    ]
    return torch.cat(parts) if parts else torch.zeros(0)


@torch.no_grad()
def colour_at(
    model: RadianceModel, points, viewdirs, to_ray: Callable | None = None, chunk: int = CHUNK
) -> torch.Tensor:
    """RGB [P, 3] in [0, 1] at training-frame points [P, 3] seen along unit directions
    viewdirs [P, 3] (training frame); `to_ray` maps the points into the model's ray space."""
    _, colour = _functions(model)
    to_ray = to_ray or (lambda p: p)
    points = torch.as_tensor(points, dtype=torch.float32)
    viewdirs = torch.as_tensor(viewdirs, dtype=torch.float32)
    device = _device(model)
    parts = [
        colour(
            model,
            to_ray(points[start : start + chunk].to(device)),
            viewdirs[start : start + chunk].to(device),
        ).cpu()
        for start in range(0, len(points), chunk)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, 3)


def outward_normals(
    model: RadianceModel, points, to_ray: Callable | None = None, chunk: int = CHUNK // 4
) -> torch.Tensor:
    """Unit normals [P, 3] pointing out of the matter, -grad(density) / |grad(density)|, at
    training-frame points [P, 3], the gradient taken in the training frame through `to_ray`
    (the map into the model's ray space; zero where the gradient vanishes)."""
    density, _ = _functions(model)
    to_ray = to_ray or (lambda p: p)
    points = torch.as_tensor(points, dtype=torch.float32)
    device = _device(model)
    parts = []
    for start in range(0, len(points), chunk):
        part = points[start : start + chunk].to(device).requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(density(model, to_ray(part)).sum(), part)
        normal = -gradient / gradient.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        parts.append(normal.detach().cpu())
    return torch.cat(parts) if parts else torch.zeros(0, 3)
