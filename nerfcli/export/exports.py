"""The three exports end to end: checkpoint in, files out (atomically), a report back.
Progress is reported through callbacks, so the CLI draws the bars."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nerfcli.errors import NerfError
from nerfcli.export import mesh as mesh_ops
from nerfcli.export.frames import (
    frame_description,
    frame_scale,
    output_transform,
    transform_normals,
    transform_points,
)
from nerfcli.export.ply import PlyData, write_ply
from nerfcli.export.region import march_region
from nerfcli.training.checkpoint import Checkpoint, restore_model

Progress = Callable[[str, int, int], None]  # (stage, done, total)
# Random pixels per training view whose median-depth density sets the mesh's default level.
LEVEL_RAYS_PER_VIEW = 512


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


@dataclass
class ExportReport:
    kind: str
    checkpoint: str
    out: str
    frame: str
    frame_description: str
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def export_mesh(
    ckpt: Checkpoint,
    out: Path,
    resolution: int,
    bbox: list[float] | None = None,
    level: float | None = None,
    decimate_voxels: float = 0.0,
    frame: str = "capture",
    device: str = "cpu",
    progress: Progress = _no_progress,
    seen_tolerance: float = 0.0,
    seen_downscale: int | None = None,
) -> ExportReport:
    """Marching cubes at `resolution` over the scene's box (or `bbox`), coloured, in `frame`;
    with seen_tolerance > 0 only the vertices some training view sees (export/visibility)."""
    start = time.perf_counter()
    scene = ckpt.scene
    transform = output_transform(scene, frame)
    need = mesh_ops.check_memory(resolution)
    model = restore_model(ckpt, device)
    region = march_region(model, scene, bbox)
    axes = mesh_ops.grid_axes(region, resolution)
    grid = _density_grid(model, region, axes, progress)  # [Rx, Ry, Rz]
    level, level_from = _mesh_level(model, ckpt, level, device)
    progress("marching cubes", 0, 1)
    vertices, faces = mesh_ops.marching_cubes(grid, level, region, axes)
    del grid
    step = float(axes[0][1] - axes[0][0])
    if decimate_voxels > 0:
        vertices, faces = mesh_ops.decimate(vertices, faces, decimate_voxels * step)
    training = region.to_training(region.to_ray(vertices))  # [V, 3]
    progress("marching cubes", 1, 1)
    marched = len(training)
    if seen_tolerance > 0:
        seen_downscale, training, faces = _keep_seen(
            model, ckpt, training, faces, level, seen_tolerance, seen_downscale, device, progress
        )
    progress("colours", 0, 1)
    normals, colours = mesh_ops.shade_vertices(model, scene, training)
    progress("colours", 1, 1)
    points = transform_points(transform, training)
    normals = transform_normals(transform, normals)
    faces = mesh_ops.orient_faces(points, faces, normals)
    description = frame_description(scene, frame)
    write_ply(
        out,
        PlyData(
            vertices=points,
            normals=normals,
            colours=colours,
            faces=faces,
            comments=[
                f"nerfcli frame: {frame}",
                description,
                f"nerfcli mesh: checkpoint {ckpt.path} step {ckpt.step}, resolution {resolution}, "
                f"level {level:.6g}, march space {region.space}",
            ],
        ),
    )
    return ExportReport(
        kind="mesh",
        checkpoint=str(ckpt.path),
        out=str(out),
        frame=frame,
        frame_description=description,
        seconds=time.perf_counter() - start,
        counts={"vertices": len(points), "faces": len(faces)},
        details={
            "resolution": resolution,
            "grid": [len(a) for a in axes],
            "level": level,
            "level_from": level_from,
            "march_space": region.space,
            "box": [region.lo.tolist(), region.hi.tolist()],
            "memory_estimate_bytes": need,
            "decimate_voxels": decimate_voxels,
            "seen_tolerance": seen_tolerance,
            "seen_downscale": seen_downscale,
            "vertices_marched": marched,
            "bounds": [points.min(0).tolist(), points.max(0).tolist()] if len(points) else None,
        },
    )


def _density_grid(model, region, axes, progress: Progress):
    """The density on the grid of `axes` over the region, a progress step per slab."""
    done = [0]

    def on_slab() -> None:
        done[0] += 1
        progress("density", done[0], len(axes[0]))

    return mesh_ops.density_grid(model, region, axes, on_slab)


def _mesh_level(model, ckpt: Checkpoint, level: float | None, device: str) -> tuple[float, str]:
    """(density level of the surface, where it came from): --level as given, else the
    median-depth density of the training rays, else one render sample half opaque."""
    if level is not None:
        return float(level), "--level"
    from nerfcli.export.surface import surface_level

    scene = ckpt.scene
    level = surface_level(model, scene, LEVEL_RAYS_PER_VIEW, ckpt.config.render.chunk, device)
    level_from = "median-depth density of the training rays"
    if not level > 0:  # no ray is half opaque: one render sample half opaque
        level, level_from = mesh_ops.default_level(model, scene), "half-opaque sample"
    return float(level), level_from


def _keep_seen(
    model,
    ckpt: Checkpoint,
    training,
    faces,
    level: float,
    seen_tolerance: float,
    seen_downscale: int | None,
    device: str,
    progress: Progress,
):
    """(downscale used, vertices [V', 3], faces) of the surface some training view sees
    within seen_tolerance of its depth (export/visibility)."""
    from nerfcli.export.visibility import auto_downscale, keep_vertices, seen_by_views

    seen_downscale = seen_downscale or auto_downscale(ckpt.scene)
    seen = seen_by_views(
        model,
        ckpt.scene,
        training,
        seen_tolerance,
        seen_downscale,
        ckpt.config.render.chunk,
        device,
        lambda done, total: progress("seen by the views", done, total),
    )
    faces, used = keep_vertices(faces, seen)
    if len(used) == 0:
        raise NerfError(
            f"no training view sees the surface at level {level:.3g} within --seen-tolerance "
            f"{seen_tolerance:g} of its depth; raise it, change --level, or pass "
            "--seen-tolerance 0 to keep every vertex"
        )
    return seen_downscale, training[used], faces


def _image_paths(ckpt: Checkpoint) -> tuple[list[str], list[float]]:
    """Paths of the views' photos: the checkpoint stores their names; they are looked for in
    the scene folder where the format keeps them (LLFF: images_<factor>/ or images/; Blender:
    the view's split folder; otherwise anywhere below), else given as scene folder / name;
    with each, the photo's size over the size trained on (LLFF photos in images/ resized by
    the factor on loading: the factor; else 1)."""
    from nerfcli.data.formats import format_module
    from nerfcli.export.cameras import view_splits

    scene = ckpt.scene
    root = Path(scene.root)
    splits = view_splits(scene)
    out, sizes = [], []
    fmt = format_module(scene.format)
    for view, name in enumerate(scene.image_files):
        path = fmt.find_photo(root, name, scene.factor, splits[view]) or root / name
        out.append(str(path))
        resized = path.parent.name == fmt.PHOTOS_RESIZED_FROM and scene.factor > 1
        sizes.append(float(scene.factor) if resized else 1.0)
    return out, sizes


def export_cameras(ckpt: Checkpoint, out_dir: Path, frame: str = "capture") -> ExportReport:
    """transforms.json, cameras.ply (frustums) and, where the capture has COLMAP's sparse
    points, sparse_points.ply, into out_dir."""
    from nerfcli.export import cameras as camera_ops

    start = time.perf_counter()
    scene = ckpt.scene
    transform = output_transform(scene, frame)
    description = frame_description(scene, frame)
    comments = [f"nerfcli frame: {frame}", description]
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, sizes = _image_paths(ckpt)
    document = camera_ops.transforms_document(
        scene, transform, paths, sizes, out_dir, frame, description
    )
    counts = {"cameras": scene.num_views}
    sparse = camera_ops.sparse_points(scene, transform)
    if sparse is not None:
        points, colours = sparse
        write_ply(
            out_dir / "sparse_points.ply",
            PlyData(vertices=points, colours=colours, comments=[*comments, "COLMAP sparse/0"]),
        )
        document["ply_file_path"] = "sparse_points.ply"
        counts["sparse points"] = len(points)
    write_ply(out_dir / "cameras.ply", camera_ops.frustums_ply(scene, transform, comments))
    camera_ops.write_json(out_dir / "transforms.json", document)
    return ExportReport(
        kind="cameras",
        checkpoint=str(ckpt.path),
        out=str(out_dir),
        frame=frame,
        frame_description=description,
        seconds=time.perf_counter() - start,
        counts=counts,
        details={
            "files": sorted(p.name for p in out_dir.iterdir() if p.suffix in (".json", ".ply")),
            "units_per_training_unit": frame_scale(transform),
        },
    )


def export_points(
    ckpt: Checkpoint,
    out: Path,
    num_points: int,
    downscale: int = 1,
    min_opacity: float = 0.5,
    frame: str = "capture",
    device: str = "cpu",
    progress: Progress = _no_progress,
    edge_tolerance: float = 0.0,
    depth: str = "expected",
) -> ExportReport:
    """A coloured point cloud with normals from the training views' median (or expected)
    depth, in `frame`."""
    from nerfcli.export.points import point_cloud

    start = time.perf_counter()
    scene = ckpt.scene
    transform = output_transform(scene, frame)
    model = restore_model(ckpt, device)
    points, normals, colours = point_cloud(
        model,
        scene,
        num_points,
        ckpt.config.render.chunk,
        device,
        downscale,
        min_opacity,
        edge_tolerance,
        depth,
        on_view=lambda done, total: progress("views", done, total),
    )
    points = transform_points(transform, points)
    normals = transform_normals(transform, normals)
    description = frame_description(scene, frame)
    write_ply(
        out,
        PlyData(
            vertices=points,
            normals=normals,
            colours=colours,
            comments=[
                f"nerfcli frame: {frame}",
                description,
                f"nerfcli points: checkpoint {ckpt.path} step {ckpt.step}, min opacity "
                f"{min_opacity}, downscale {downscale}, {depth} depth",
            ],
        ),
    )
    return ExportReport(
        kind="points",
        checkpoint=str(ckpt.path),
        out=str(out),
        frame=frame,
        frame_description=description,
        seconds=time.perf_counter() - start,
        counts={"points": len(points)},
        details={
            "min_opacity": min_opacity,
            "edge_tolerance": edge_tolerance,
            "downscale": downscale,
            "depth": depth,
            "bounds": [points.min(0).tolist(), points.max(0).tolist()],
        },
    )
