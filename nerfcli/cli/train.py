"""`nerf train SCENE`: train a radiance field on a scene folder, writing checkpoints; in several
processes under torchrun (`torchrun --nproc-per-node N -m nerfcli train ...`) or `--nproc N`."""

from __future__ import annotations

import signal
from pathlib import Path

import typer
from rich.progress import TextColumn

from nerfcli.cli.argv import command_args, given_flags
from nerfcli.cli.common import (
    DEVICES,
    FORMATS,
    MODEL_NAMES,
    SCENE_TYPE_NAMES,
    choice,
    console,
    ignored_half_res,
    info,
    make_progress,
    positive,
    q,
    spherified,
    stdout_json,
)
from nerfcli.errors import ConfigError

EPILOG = (
    "Example: [bold]nerf train ../shared/data/fern --max-minutes 10 --out runs/fern[/]  "
    "then [bold]nerf eval runs/fern/ckpt.pt[/] and [bold]nerf render-video runs/fern/ckpt.pt[/]. "
    "Interrupt with Ctrl-C (a checkpoint is saved) and continue with --resume. "
    "Two GPUs: [bold]nerf train ../shared/data/fern --nproc 2[/] (the same as "
    "[bold]torchrun --standalone --nproc-per-node 2 -m nerfcli train ../shared/data/fern[/])."
)


# the parameters `train --resume` takes; any other given is refused (the run's config holds it)
RESUME_MAY_CHANGE = frozenset(
    {"scene", "out", "resume", "iters", "max_minutes", "device", "nproc"}
    | {"json_out", "quiet", "view", "view_port"}
)


def train(
    ctx: typer.Context,
    scene: Path = typer.Argument(
        ..., help="Scene folder: LLFF (poses_bounds.npy), Blender or transforms.json."
    ),
    config: str = typer.Option(
        None,
        "--config",
        "-c",
        metavar="NAME|FILE",
        help="Preset name from scenes/ (llff, fern, surround, blender, transforms, synthetic) or "
        "a YAML file. Default: the preset named like the scene folder, else the format's own "
        "(surround with --spherify).",
    ),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        metavar="NAME",
        help="Model: tensorf (fast, default) or nerf (the classic MLP).",
        callback=choice(*MODEL_NAMES),
    ),
    iters: int = typer.Option(
        None, "--iters", min=1, help="Training steps (default from the profile)."
    ),
    max_minutes: float = typer.Option(
        None,
        "--max-minutes",
        callback=positive,
        metavar="M",
        help="Train for M minutes; the decay and grid steps follow the clock, so the run "
        "ends fully decayed (train.schedule=steps: cut at M).",
    ),
    device: str = typer.Option(
        "auto",
        "--device",
        metavar="DEVICE",
        help="auto, cpu, cuda or mps.",
        callback=choice(*DEVICES),
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="Run folder (default runs/<scene>). Never overwritten."
    ),
    seed: int = typer.Option(None, "--seed", help="Random seed (default 0)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out from its latest checkpoint."
    ),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        help="Override a config key, e.g. model.tensorf.lr_grid=0.01 (repeatable); a key "
        "the model does not read is refused.",
    ),
    factor: int = typer.Option(
        None,
        "--factor",
        min=1,
        metavar="K",
        help="Image downsampling factor. Default: the preset's, else the smallest power of two "
        "that brings the photos' longer side to 1000 px or less.",
    ),
    half_res: bool = typer.Option(
        None, "--half-res/--full-res", help="Blender: train at 400 x 400 (nerf-pytorch --half_res)."
    ),
    data_format: str = typer.Option(
        None,
        "--format",
        metavar="FORMAT",
        help="Scene format: llff, blender or transforms (default: detected).",
        callback=choice(*FORMATS),
    ),
    spherify: bool = typer.Option(
        False,
        "--spherify",
        help="nerf-pytorch's object frame: spherified poses in a box, no NDC (the reference).",
    ),
    llff_camera: bool = typer.Option(
        False,
        "--llff-camera",
        help="LLFF: poses_bounds.npy's one camera for every view, even where sparse/0 has "
        "a camera per view.",
    ),
    scene_type: str = typer.Option(
        None,
        "--scene-type",
        callback=choice(*SCENE_TYPE_NAMES),
        metavar="TYPE",
        help="forward (NDC), object (a bounded box) or unbounded (contracted around the "
        "cameras). Default: from the poses (forward-facing LLFF: forward; Blender: object; "
        "surround and transforms.json: unbounded).",
    ),
    nproc: int = typer.Option(
        1,
        "--nproc",
        min=1,
        help="Processes (one per GPU) through torchrun --standalone; train.batch_rays "
        "stays the global batch.",
    ),
    skip_missing: bool = typer.Option(
        False,
        "--skip-missing",
        help="transforms.json: drop frames whose image file is missing (warned), instead of "
        "refusing the capture.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or messages."),
    view: bool = typer.Option(
        False, "--view", help="Watch it train in the browser (as `nerf view`; the URL is printed)."
    ),
    view_port: int = typer.Option(7007, "--view-port", min=1, max=65535, help="Port of --view."),
) -> None:
    """Train a NeRF on a scene folder; writes config.yaml, metrics.jsonl and checkpoints."""
    from nerfcli.training import distributed
    from nerfcli.training.session import load_training_scene

    if out is None:
        out = Path("runs") / (scene.name if scene.is_dir() else scene.parent.name or "scene")
    if view and nproc > 1:
        raise ConfigError("--view watches one process: drop --nproc, or --view")
    if not resume:  # before the scene is loaded: an existing run is refused at once
        from nerfcli.training.run_dir import check_new_run_dir

        check_new_run_dir(out)
    if nproc > 1:
        if distributed.under_torchrun():
            raise ConfigError("--nproc inside torchrun: drop --nproc (torchrun starts the ranks)")
        code = distributed.launch(nproc, worker_args(ctx, out))
        if code:
            raise typer.Exit(code)
        return
    dev, ranks = distributed.join(device)
    quiet = quiet or not ranks.is_main
    cfg, plan, choices = _settle(ctx, out, dev.type, quiet)
    loaded = load_training_scene(scene, cfg, plan=plan)
    _say_scene(cfg, loaded, half_res, q(scene), f"{q(out)} on {dev}", ranks.world, quiet)
    if ranks.world > 1:
        from nerfcli.training.batches import rank_invariance_note

        note = rank_invariance_note(cfg.train.batch_rays, cfg.train.grad_chunk_rays, ranks.world)
        if note:
            info(f"[yellow]{q(note)}[/]", quiet)
    viewer = _start_viewer(cfg, loaded, view_port, dev, out) if view and ranks.is_main else None
    try:
        summary = _run_with_progress(cfg, loaded, out, dev, resume, quiet, viewer)
    finally:
        if viewer is not None:
            viewer.close()
    if json_out and ranks.is_main:
        doc = _summary(summary, cfg, dev)
        doc["choices"] = {name: choice.to_dict() for name, choice in choices.items()}
        doc["scene_type"], doc["factor"] = cfg.data.scene_type, loaded.factor
        stdout_json(doc)
    if summary.interrupted:
        if ranks.is_main:
            console.print(
                f"[yellow]interrupted[/] at step {summary.steps}; checkpoint saved to "
                f"{q(summary.checkpoint)}; continue with: nerf train {q(scene)} --out {q(out)} --resume"
            )
        raise typer.Exit(130)
    info(
        f"[green]done[/] {summary.steps} steps in {summary.train_seconds:.1f}s, train PSNR "
        f"{summary.final_psnr:.2f} dB"
        + (
            f", held-out PSNR {summary.test_psnr:.2f} dB at 1/{cfg.train.eval_downscale} "
            "resolution (nerf eval scores full resolution)"
            if summary.test_psnr is not None
            else ""
        )
        + f"; checkpoint {q(summary.checkpoint)}",
        quiet,
    )


def train_request(params: dict, device_type: str):
    """The ConfigRequest of `nerf train`'s parameters (click's ctx.params): --spherify as the
    LLFF format asks it, each data flag where it belongs, the run's own flags."""
    from nerfcli.models.resolve import ConfigRequest

    scene, config, overrides = params["scene"], params["config"], tuple(params["overrides"] or ())
    if params["spherify"]:
        config, overrides = spherified(scene, params["data_format"], config, overrides)
    data = {"factor": params["factor"], "half_res": params["half_res"]}
    data.update(format=params["data_format"], scene_type=params["scene_type"])
    data.update(llff_camera=params["llff_camera"] or None)
    data.update(skip_missing=params["skip_missing"] or None)
    run = {name: params[name] for name in ("iters", "max_minutes", "seed")}
    return ConfigRequest(scene, config, params["model"], overrides, device_type, data, run)


def _settle(ctx: typer.Context, out: Path, device_type: str, quiet: bool):
    """(config, frame plan or None, choices): the run's own on --resume (refusing any option
    that would change it), else resolved from the command's request, its reasons printed."""
    if ctx.params["resume"]:
        from nerfcli.training.run_dir import check_resume_scene
        from nerfcli.training.session import resume_config

        refused = given_flags(ctx, RESUME_MAY_CHANGE)
        if refused:
            raise ConfigError(
                f"--resume continues with the run's own config; drop {'/'.join(refused)} "
                "(only --iters, --max-minutes and --device may change)"
            )
        cfg = resume_config(out, ctx.params["iters"], ctx.params["max_minutes"])
        check_resume_scene(out, ctx.params["scene"])
        return cfg, None, {}
    from nerfcli.models.resolve import resolve

    choices: dict = {}
    cfg, plan = resolve(train_request(ctx.params, device_type), choices)
    for settled in choices.values():
        info(q(settled.reason), quiet)
    return cfg, plan, choices


def _say_scene(cfg, loaded, half_res, source: str, destination: str, world, quiet) -> None:
    """The loaded scene in one line (and what was ignored or chosen about its cameras)."""
    from nerfcli.data.formats import reads_option

    if half_res is not None and not reads_option(loaded.format, "half_res"):
        info(ignored_half_res(loaded.format), quiet)
    if loaded.source.get("cameras"):
        info(q(loaded.source["cameras"]), quiet)
    info(
        f"[bold]train[/] {cfg.model.name} on {source} ({loaded.format}, "
        f"{loaded.num_views} views, {loaded.width} x {loaded.height} (W x H), {loaded.kind}, "
        f"test views {_views(capture_numbers(loaded))}) -> {destination}"
        + (f" x {world} processes" if world > 1 else ""),
        quiet,
    )


def _start_viewer(cfg, scene, port: int, dev, out: Path):
    """--view: the page of `nerf view` on the run's latest weights; prints its URL."""
    from nerfcli.viewer.live import TrainingViewer
    from nerfcli.viewer.server import import_viser

    import_viser()
    viewer = TrainingViewer(cfg, scene, "127.0.0.1", port, dev, out)
    console.print(f"[bold]view[/] the run at {viewer.url}")
    return viewer


def _run_with_progress(cfg, scene, out: Path, dev, resume: bool, quiet: bool, viewer=None):
    """Start the run and train it under a progress bar; SIGINT/SIGTERM stop it at the next
    step with a checkpoint (every rank at the same step). Returns the TrainSummary."""
    from nerfcli.training.optim import Schedule
    from nerfcli.training.session import start_run
    from nerfcli.training.trainer import EvalEvent, HeldOutProgress, StepEvent

    progress = make_progress(
        quiet,
        TextColumn("loss {task.fields[loss]:.4f}  PSNR {task.fields[psnr]:.2f}"),
        TextColumn("test@1/{task.fields[ds]} {task.fields[test]}"),
        TextColumn("{task.fields[its]:.2f} it/s"),
    )
    task = None
    last_test = ["-"]
    by_time = Schedule(cfg).by_time  # the bar counts seconds of the budget, not steps

    def on_event(event) -> None:
        if isinstance(event, StepEvent):
            progress.update(
                task,
                completed=event.train_seconds if by_time else event.step,
                description=f"train step {event.step}" if by_time else "train",
                loss=event.loss,
                psnr=event.psnr,
                its=event.its,
                test=last_test[0],
            )
        elif isinstance(event, HeldOutProgress):  # scoring can take long: say what it is doing
            progress.update(task, description=f"held-out view {event.done}/{event.total}")
        elif isinstance(event, EvalEvent):
            last_test[0] = f"{event.test_psnr:.2f}"
            progress.update(
                task,
                description=f"train step {event.step}" if by_time else "train",
                test=last_test[0],
            )
        if viewer is not None:
            viewer.on_event(event)

    trainer = start_run(cfg, scene, out, dev, resume=resume, on_event=on_event).trainer
    if viewer is not None:
        viewer.attach(trainer)

    def request_stop(signum, frame) -> None:
        trainer.stop_requested = True

    handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            handlers[sig] = signal.signal(sig, request_stop)
        except ValueError:  # not the main thread
            pass
    try:
        with progress:
            task = progress.add_task(
                "train",
                total=round(cfg.train.max_minutes * 60) if by_time else cfg.train.iters,
                completed=trainer.train_seconds if by_time else trainer.step,
                loss=0.0,
                psnr=0.0,
                its=0.0,
                test="-",
                ds=cfg.train.eval_downscale,
            )
            summary = trainer.run()
            progress.update(  # the bar ends on the run's last values, not the last logged ones
                task,
                completed=trainer.train_seconds if by_time else summary.steps,
                loss=summary.final_loss,
                psnr=summary.final_psnr,
                test=last_test[0] if summary.test_psnr is None else f"{summary.test_psnr:.2f}",
            )
            return summary
    except (RuntimeError, MemoryError) as exc:
        raise _out_of_memory(exc, cfg, out, trainer, resume) from None
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _out_of_memory(exc: BaseException, cfg, out: Path, trainer, resume: bool) -> BaseException:
    """An allocation failure as one line (a new run's folder without a checkpoint removed, so
    it blocks neither a new run nor --resume); any other error as it was."""
    from nerfcli.errors import NerfError
    from nerfcli.training.run_dir import discard_unstarted_run, is_out_of_memory

    if not is_out_of_memory(exc):
        return exc
    removed = not resume and discard_unstarted_run(out)
    return NerfError(
        f"out of memory at step {trainer.step} with train.batch_rays={cfg.train.batch_rays} "
        f"(render.chunk={cfg.render.chunk}); try a smaller --set train.batch_rays"
        + (f"; {out} was removed" if removed else "")
    )


def _summary(summary, cfg, dev) -> dict:
    """The run summary `--json` prints."""
    return {
        "steps": summary.steps,
        "start_step": summary.start_step,
        "seconds": round(summary.train_seconds, 3),
        "wall_seconds": round(summary.wall_seconds, 3),
        "final_loss": summary.final_loss,
        "final_psnr": summary.final_psnr,
        "test_psnr": summary.test_psnr,
        # held-out PSNR during training is scored at 1/eval_downscale resolution (nerf eval:
        # full resolution)
        "test_psnr_downscale": cfg.train.eval_downscale if summary.test_psnr is not None else None,
        "checkpoint": str(summary.checkpoint),
        "out_dir": str(summary.out_dir),
        "model": cfg.model.name,
        "device": str(dev),
        "processes": summary.world_size,
        "peak_vram_gb": summary.peak_vram_gb,  # torch.cuda.max_memory_allocated; None off CUDA
        "interrupted": summary.interrupted,
        "stopped_by_time": summary.stopped_by_time,
    }


def worker_args(ctx: typer.Context, out: Path) -> list[str]:
    """The `nerf train` arguments each process of --nproc gets: this command's own, as given,
    without --nproc (and with the run folder, when it was the default)."""
    args = ["train", *command_args(ctx, drop={"nproc"})]
    if "--out" not in args:
        args += ["--out", str(out)]
    return args


def capture_numbers(loaded) -> list[int]:
    """The test views as eval, rays and inspect-poses number them: Blender training thins
    val and test by data.testskip, the others number every view of the capture."""
    import json

    skip = int(loaded.source.get("testskip", 1) or 1)
    from nerfcli.data.formats import reads_option

    if not reads_option(loaded.format, "testskip") or skip <= 1:
        return list(loaded.i_test)
    full = {}
    for split in ("train", "val"):
        try:
            path = Path(loaded.root) / f"transforms_{split}.json"
            full[split] = len(json.loads(path.read_text(encoding="utf-8"))["frames"])
        except (OSError, ValueError, KeyError, TypeError):
            full[split] = 0
    sizes = loaded.source.get("split_sizes", {})
    first, first_full = sizes.get("train", 0) + sizes.get("val", 0), full["train"] + full["val"]
    return [first_full + (view - first) * skip for view in loaded.i_test]


def _views(views: list[int], limit: int = 8) -> str:
    shown = ", ".join(map(str, views[:limit]))
    return f"[{shown}{', ...' if len(views) > limit else ''}] ({len(views)})"
