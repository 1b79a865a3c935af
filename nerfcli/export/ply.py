"""Binary little-endian PLY, written atomically: vertices (position, optional normal and
colour), optional triangles and edges, and comments (the frame each file is in).

Our own writer (numpy structured arrays, one write per element) rather than a dependency: the
three element layouts here are fixed, and `read_ply` reads back exactly what it writes (tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nerfcli.errors import NerfError
from nerfcli.fsutil import atomic_write


@dataclass
class PlyData:
    vertices: np.ndarray  # [V, 3] float
    normals: np.ndarray | None = None  # [V, 3] float
    colours: np.ndarray | None = None  # [V, 3] uint8
    faces: np.ndarray | None = None  # [F, 3] int
    edges: np.ndarray | None = None  # [E, 2] int
    comments: list[str] = field(default_factory=list)


def _vertex_dtype(data: PlyData) -> np.dtype:
    names = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if data.normals is not None:
        names += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    if data.colours is not None:
        names += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    return np.dtype(names)


def _header(data: PlyData, vertex_dtype: np.dtype) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {' '.join(c.split())}" for c in data.comments]
    lines.append(f"element vertex {len(data.vertices)}")
    types = {"<f4": "float", "u1": "uchar"}
    for name in vertex_dtype.names:
        lines.append(f"property {types[vertex_dtype[name].str.replace('|', '')]} {name}")
    if data.faces is not None:
        lines += [f"element face {len(data.faces)}", "property list uchar int vertex_indices"]
    if data.edges is not None:
        lines += [f"element edge {len(data.edges)}", "property int vertex1", "property int vertex2"]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def _check(data: PlyData) -> None:
    count = len(data.vertices)
    for name, width in (("normals", 3), ("colours", 3)):
        value = getattr(data, name)
        if value is not None and np.shape(value) != (count, width):
            raise ValueError(f"{name}: expected [{count}, {width}], got {np.shape(value)}")
    for name, width in (("faces", 3), ("edges", 2)):
        value = getattr(data, name)
        if value is None:
            continue
        value = np.asarray(value)
        if value.ndim != 2 or value.shape[1] != width:
            raise ValueError(f"{name}: expected [*, {width}], got {value.shape}")
        if value.size and (value.min() < 0 or value.max() >= count):
            raise ValueError(f"{name}: vertex index out of range 0..{count - 1}")


def write_ply(path: str | Path, data: PlyData) -> Path:
    """Write `data` to `path` atomically (temp file beside it, then rename)."""
    path = Path(path)
    _check(data)
    vertex_dtype = _vertex_dtype(data)
    vertices = np.empty(len(data.vertices), dtype=vertex_dtype)
    for axis, name in enumerate("xyz"):
        vertices[name] = data.vertices[:, axis]
    if data.normals is not None:
        for axis, name in enumerate(("nx", "ny", "nz")):
            vertices[name] = data.normals[:, axis]
    if data.colours is not None:
        for axis, name in enumerate(("red", "green", "blue")):
            vertices[name] = data.colours[:, axis]
    try:
        with atomic_write(path, suffix=".tmp") as tmp, open(tmp, "wb") as handle:
            handle.write(_header(data, vertex_dtype))
            handle.write(vertices.tobytes())
            if data.faces is not None:
                faces = np.empty(len(data.faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
                faces["n"] = 3
                faces["v"] = data.faces
                handle.write(faces.tobytes())
            if data.edges is not None:
                handle.write(np.ascontiguousarray(data.edges, dtype="<i4").tobytes())
    except OSError as exc:
        raise NerfError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


def read_ply(path: str | Path) -> PlyData:
    """Read a PLY that `write_ply` wrote (binary little-endian, the layouts above)."""
    raw = Path(path).read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    header = raw[:end].decode("ascii").splitlines()
    comments, elements = [], []  # elements: (name, count, [(type, name)])
    for line in header:
        words = line.split()
        if words[0] == "comment":
            comments.append(line[len("comment ") :])
        elif words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            elements[-1][2].append(tuple(words[1:]))
    types = {"float": "<f4", "uchar": "u1", "int": "<i4"}
    offset, out = end, PlyData(vertices=np.zeros((0, 3)), comments=comments)
    for name, count, properties in elements:
        if name == "face":
            dtype = np.dtype([("n", "u1"), ("v", "<i4", (3,))])
        else:
            dtype = np.dtype([(prop[-1], types[prop[0]]) for prop in properties])
        array = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
        offset += dtype.itemsize * count
        if name == "vertex":
            out.vertices = np.stack([array[n] for n in "xyz"], -1)
            if "nx" in array.dtype.names:
                out.normals = np.stack([array[n] for n in ("nx", "ny", "nz")], -1)
            if "red" in array.dtype.names:
                out.colours = np.stack([array[n] for n in ("red", "green", "blue")], -1)
        elif name == "face":
            out.faces = np.array(array["v"])
        elif name == "edge":
            out.edges = np.stack([array["vertex1"], array["vertex2"]], -1)
    return out
