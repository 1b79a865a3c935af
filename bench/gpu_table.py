"""The one table of bench/gpu.sh: per scene, our default model and the classic model side by
side (held-out PSNR at the three marks, it/s, peak VRAM, the 120-frame path time) and their
ratios, from the bench.fern / bench.lego JSON files in a results folder.

    .venv/bin/python -m bench.gpu_table bench/results/gpu --mode shared --seconds 90
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SCENES = ("fern", "lego")
MODELS = (("tensorf", "ours (TensoRF)"), ("nerf", "classic (--model nerf)"))


def load(folder: Path, scene: str, model: str) -> dict | None:
    path = folder / f"{scene}_{model}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def marks(doc: dict, count: int = 3) -> list[float | None]:
    """Held-out PSNR at the run's marks (the last one: the end of the run)."""
    values: list[float | None] = [c["test_psnr"] for c in doc.get("curve", [])][:count]
    return values + [None] * (count - len(values))


def path_seconds(doc: dict, frames: int = 120) -> tuple[float | None, bool]:
    """Seconds for a `frames`-frame render path, and whether that is scaled from fewer."""
    render = doc.get("render")
    if not render:
        return None, False
    return render["seconds_per_frame"] * frames, render["frames"] < frames


def row(scene: str, name: str, doc: dict | None) -> list[str]:
    if doc is None:
        return [scene, name, "failed", "", "", "", "", ""]
    seconds, scaled = path_seconds(doc)
    cells = [f"{v:.2f}" if v is not None else "-" for v in marks(doc)]
    vram = doc.get("peak_cuda_gb")
    return [
        scene,
        name,
        *cells,
        f"{doc['its']:.1f}",
        f"{vram:.2f}" if vram is not None else "-",
        "-" if seconds is None else f"{seconds:.1f}" + (" (scaled)" if scaled else ""),
    ]


def ratio_row(scene: str, ours: dict | None, classic: dict | None) -> list[str]:
    if ours is None or classic is None:
        return [scene, "ours / classic", "", "", "", "", "", ""]
    gaps = [
        f"{a - b:+.2f} dB" if a is not None and b is not None else "-"
        for a, b in zip(marks(ours), marks(classic))
    ]

    def times(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}x" if a and b else "-"

    return [
        scene,
        "ours / classic",
        *gaps,
        times(ours["its"], classic["its"]),
        times(ours.get("peak_cuda_gb"), classic.get("peak_cuda_gb")),
        times(path_seconds(ours)[0], path_seconds(classic)[0]),
    ]


def table(folder: Path, mode: str, seconds: float) -> str:
    thirds = [round(seconds * k / 3) for k in (1, 2, 3)]
    header = ["scene", "model", *[f"PSNR {t} s" for t in thirds], "it/s", "peak VRAM (GiB)"]
    header.append("120-frame path (s)")
    rows = []
    first = None
    for scene in SCENES:
        docs = {model: load(folder, scene, model) for model, _ in MODELS}
        first = first or next((d for d in docs.values() if d), None)
        rows += [row(scene, name, docs[model]) for model, name in MODELS]
        rows.append(ratio_row(scene, docs["tensorf"], docs["nerf"]))
    machine = (first or {}).get("machine", {})
    shared = (
        "both models of a scene trained at the same time on the one GPU (time-sliced): absolute "
        "it/s and PSNR-at-time are lower than alone; compare the ratios"
        if mode == "shared"
        else "each run alone on the GPU"
    )
    lines = [
        f"GPU: {machine.get('gpu', '?')}, torch {machine.get('torch', '?')}; {shared}.",
        "Held-out PSNR: fern views 0, 8, 16 at 504 x 378; lego every 8th test view at "
        "200 x 200 (--half-res, scored at 1/2). Path: fern's spiral, lego's spherical path; "
        "'scaled': the classic model timed on 12 frames.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--mode", choices=("shared", "serial"), default="shared")
    parser.add_argument("--seconds", type=float, default=90.0)
    args = parser.parse_args()
    print(table(args.folder, args.mode, args.seconds))


if __name__ == "__main__":
    main()
