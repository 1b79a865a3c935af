"""Bit-identity check for refactors: a short `nerf train` on a real capture, every loss and
every weight tensor saved, and a comparison of two such records with torch.equal.

    python bench/identity.py record fern /work/kind-runs/baseline/fern.pt
    python bench/identity.py record lego /work/kind-runs/baseline/lego.pt --half-res
    python bench/identity.py compare /work/kind-runs/baseline/fern.pt /work/kind-runs/after/fern.pt

`record` runs the real command (`nerf train`, in this process, through the Typer app and so
through training/session.py) for --iters steps (default 20) with a fixed seed, one CPU
thread, every step logged (train.log_every=1) and no held-out evaluation, then saves the
logged losses (from metrics.jsonl) and the checkpoint's weights. `compare` exits 1 at the
first difference it finds, naming it; a TensoRF record made before the model became a
composition has its tensor names mapped to the composed ones (`model.density_planes.0` ->
`model.field.density_planes.0`) first, so old baselines compare by value.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from bench.common import SHARED_DATA


def record(capture: str, out: Path, iters: int, data: Path, extra: list[str]) -> None:
    from typer.testing import CliRunner

    from nerfcli.cli.app import app

    torch.set_num_threads(1)
    scene = data / capture
    if not scene.is_dir():
        raise SystemExit(f"{scene}: no such capture (--data DIR: the folder holding it)")
    with tempfile.TemporaryDirectory(prefix="identity-") as tmp:
        run_dir = Path(tmp) / capture
        args = ["train", str(scene), "--out", str(run_dir), "--iters", str(iters)]
        args += ["--seed", "0", "--device", "cpu", "--quiet"]
        args += ["--set", "train.log_every=1", "--set", "train.eval_every=0"]
        args += ["--set", "train.ckpt_every=0", *extra]
        result = CliRunner().invoke(app, args, catch_exceptions=False)
        if result.exit_code != 0:
            sys.stderr.write(result.output)
            raise SystemExit(f"nerf train {capture} exited {result.exit_code}")
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        losses = [r["loss"] for r in records if "loss" in r and "step" in r]
        ckpt = torch.load(run_dir / "ckpt.pt", map_location="cpu", weights_only=False)
    weights = _tensors(ckpt)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    torch.save(
        {"capture": capture, "args": args[2:], "losses": losses, "weights": weights}, tmp_out
    )
    tmp_out.replace(out)
    print(f"{capture}: {len(losses)} losses (last {losses[-1]!r}), {len(weights)} tensors -> {out}")


def _tensors(tree, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a checkpoint (model weights, optimiser state, ...) by its path."""
    found: dict[str, torch.Tensor] = {}
    if isinstance(tree, torch.Tensor):
        found[prefix] = tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            found.update(_tensors(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            found.update(_tensors(value, f"{prefix}[{index}]"))
    return found


def _composed_names(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A TensoRF record from before the model became a composition (its field's tensors at
    `model.density_planes.0`, `model.aabb`, ...) under the composed names (`model.field.*`;
    the estimator's keep theirs): the same mapping as checkpoint_shapes.upgrade_field_keys."""
    if "model.density_planes.0" not in weights:
        return weights
    renamed = {}
    for name, value in weights.items():
        rest = name[len("model.") :]
        if name.startswith("model.") and not rest.startswith(("field.", "estimator.")):
            name = f"model.field.{rest}"
        renamed[name] = value
    return renamed


def compare(first: Path, second: Path) -> int:
    a = torch.load(first, weights_only=False)
    b = torch.load(second, weights_only=False)
    a["weights"], b["weights"] = _composed_names(a["weights"]), _composed_names(b["weights"])
    if len(a["losses"]) != len(b["losses"]):
        print(f"DIFFER: {len(a['losses'])} losses against {len(b['losses'])}")
        return 1
    for step, (x, y) in enumerate(zip(a["losses"], b["losses"]), start=1):
        if x != y:
            print(f"DIFFER: loss at step {step}: {x!r} against {y!r}")
            return 1
    if sorted(a["weights"]) != sorted(b["weights"]):
        only = sorted(set(a["weights"]) ^ set(b["weights"]))
        print(f"DIFFER: tensor names differ: {only[:8]}")
        return 1
    for name in sorted(a["weights"]):
        x, y = a["weights"][name], b["weights"][name]
        if x.shape != y.shape or x.dtype != y.dtype or not torch.equal(x, y):
            print(f"DIFFER: tensor {name} ({tuple(x.shape)} against {tuple(y.shape)})")
            return 1
    count = len(a["weights"])
    print(f"{a['capture']}: all {len(a['losses'])} losses and all {count} tensors torch.equal")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("capture")
    rec.add_argument("out", type=Path)
    rec.add_argument("--iters", type=int, default=20)
    rec.add_argument("--data", type=Path, default=SHARED_DATA, help="the captures' folder")
    cmp_ = sub.add_parser("compare")
    cmp_.add_argument("first", type=Path)
    cmp_.add_argument("second", type=Path)
    args, extra = parser.parse_known_args()
    if args.mode == "record":
        record(args.capture, args.out, args.iters, args.data, extra)
    else:
        raise SystemExit(compare(args.first, args.second))


if __name__ == "__main__":
    main()
