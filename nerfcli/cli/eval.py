"""`nerf eval CKPT`: render the held-out views and score them (PSNR, SSIM, depth error); under
torchrun the views are split across the processes and rank 0 writes metrics.json."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import typer

from nerfcli.cli.common import (
    DEVICES,
    check_downscale,
    check_new_eval_dir,
    choice,
    console,
    fresh_folder,
    info,
    make_progress,
    q,
    stdout_json,
)


class LpipsNet(str, Enum):
    alex = "alex"
    vgg = "vgg"


EPILOG = (
    "Example: [bold]nerf eval runs/fern/ckpt.pt --json[/]  "
    "(quick check: [bold]--downscale 4[/]; another copy of the scene: [bold]--scene DIR[/]; "
    "on 2 GPUs: [bold]torchrun --standalone --nproc-per-node 2 -m nerfcli eval CKPT[/])"
)


def eval_command(
    checkpoint: Path = typer.Argument(..., help="Checkpoint file (or a run folder with ckpt.pt)."),
    scene: Path = typer.Option(
        None, "--scene", help="Scene folder for ground truth (default: the one it trained on)."
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for PNGs and metrics.json (default: <run>/eval/step_<N>[_dsK]).",
    ),
    downscale: int = typer.Option(
        1, "--downscale", min=1, help="Score at 1/K resolution against downscaled ground truth."
    ),
    testskip: int = typer.Option(
        None,
        "--testskip",
        min=0,
        help="Blender: score every K-th test view (default: all of them, the papers' protocol).",
    ),
    lpips: LpipsNet = typer.Option(
        None,
        "--lpips",
        help="Also score LPIPS with this backbone (its torchvision weights must be on the "
        "machine: torchvision's cache or --lpips-weights; nothing is downloaded).",
    ),
    lpips_weights: Path = typer.Option(
        None,
        "--lpips-weights",
        help="torchvision's alexnet-owt-*.pth or vgg16-*.pth (default: from "
        "$TORCH_HOME/hub/checkpoints).",
    ),
    device: str = typer.Option(
        "auto", "--device", help="auto, cpu, cuda or mps.", callback=choice(*DEVICES)
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
) -> None:
    """Render every held-out view, score it, and write render / ground truth / error PNGs."""
    net = None
    if lpips is not None or lpips_weights is not None:
        net = (lpips or LpipsNet.alex).value
    request = EvalRequest(
        checkpoint=checkpoint,
        scene=scene,
        out=out,
        downscale=downscale,
        testskip=testskip,
        lpips_net=net,
        lpips_weights=lpips_weights,
        device=device,
        json_out=json_out,
        quiet=quiet,
    )
    run_eval(request)


@dataclass(frozen=True)
class EvalRequest:
    """What `nerf eval` asks, built once from its parameters.

    checkpoint     checkpoint file or run folder
    scene          scene folder for ground truth; None: the one it trained on
    out            folder for PNGs and metrics.json; None: <run>/eval/step_<N>[_dsK]
    downscale      score at 1/K resolution
    testskip       Blender: score every K-th test view; None: all of them
    lpips_net      "alex" or "vgg" to score LPIPS too; None: no LPIPS
    lpips_weights  torchvision's backbone file; None: from its cache
    device         auto, cpu, cuda or mps
    json_out       print the metrics as JSON on stdout
    quiet          no progress bar or table
    """

    checkpoint: Path
    scene: Path | None = None
    out: Path | None = None
    downscale: int = 1
    testskip: int | None = None
    lpips_net: str | None = None
    lpips_weights: Path | None = None
    device: str = "auto"
    json_out: bool = False
    quiet: bool = False


def run_eval(request: EvalRequest) -> None:
    """Score the request's checkpoint on its held-out views; rank 0 prints the report."""
    from nerfcli.evaluation.evaluate import evaluate, load_matching_scene
    from nerfcli.training import distributed
    from nerfcli.training.checkpoint import load_checkpoint

    if request.out is not None:
        check_new_eval_dir(request.out)
    dev, ranks = distributed.join(request.device)
    quiet = request.quiet or not ranks.is_main
    lpips_model = None
    if request.lpips_net is not None:
        from nerfcli.evaluation.lpips import load_lpips

        lpips_model = load_lpips(request.lpips_net, request.lpips_weights, dev)
    ckpt = load_checkpoint(request.checkpoint, map_location="cpu")
    check_downscale(request.downscale, ckpt.scene.height, ckpt.scene.width)
    _warn_testskip(request, ckpt.scene.format, quiet)
    loaded = load_matching_scene(ckpt, request.scene, request.testskip)
    out = request.out
    if out is None:
        suffix = f"_ds{request.downscale}" if request.downscale > 1 else ""
        out = fresh_folder(ckpt.path.parent / "eval" / f"step_{ckpt.step:07d}{suffix}")
        out = Path(ranks.all_gather_objects(str(out))[0])  # rank 0's choice, on every rank
    views = loaded.held_out
    if request.downscale > 1:
        info(
            f"[yellow]scoring at 1/{request.downscale} resolution[/] (quick check, not comparable "
            "with full-resolution numbers)",
            quiet,
        )
    with make_progress(quiet) as progress:
        task = progress.add_task("eval", total=len(views))
        report = evaluate(
            ckpt,
            loaded,
            out,
            dev,
            request.downscale,
            on_view=lambda s: progress.advance(task, ranks.world),  # the others' views too
            ranks=ranks,
            lpips_model=lpips_model,
        )
    if not ranks.is_main:
        return
    if request.json_out:
        stdout_json(report.to_dict())
    if not quiet:
        console.print(_report_table(report, lpips_model is not None))
        console.print(f"images and metrics.json in {q(out)}")


def _warn_testskip(request: EvalRequest, data_format: str, quiet: bool) -> None:
    """A word when --testskip is given for a format that does not read it."""
    from nerfcli.data.formats import reads_option

    if request.testskip is not None and not reads_option(data_format, "testskip"):
        info(
            f"[yellow]warning:[/] --testskip is for Blender captures; this {data_format} "
            "run's held-out views are every data.llffhold-th view, all of them scored",
            quiet,
        )


def _report_table(report, with_lpips: bool):
    """The per-view table of an eval report (PSNR, SSIM, LPIPS and depth where scored), the
    mean in bold."""
    from rich.table import Table

    table = Table(
        title=f"held-out views, step {report.step} ({report.width} x {report.height}, W x H)"
    )
    for column in ("view", "PSNR", "SSIM"):
        table.add_column(column, justify="right")
    has_depth = report.depth_abs_rel is not None
    if with_lpips:
        table.add_column(f"LPIPS ({report.lpips_net})", justify="right")
    if has_depth:
        table.add_column("depth abs rel", justify="right")
    for s in report.views:
        row = [str(s.view), f"{s.psnr:.2f}", f"{s.ssim:.4f}"]
        if with_lpips:
            row.append(f"{s.lpips:.4f}")
        if has_depth:
            row.append(f"{s.depth_abs_rel:.4f}")
        table.add_row(*row)
    mean = ["mean", f"{report.psnr:.2f}", f"{report.ssim:.4f}"]
    if with_lpips:
        mean.append(f"{report.lpips:.4f}")
    if has_depth:
        mean.append(f"{report.depth_abs_rel:.4f}")
    table.add_row(*mean, style="bold")
    return table
