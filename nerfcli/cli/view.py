"""`nerf view RUN_OR_CKPT`: the trained model in the browser (viser), with the capture's cameras,
its scene box and default path, and a keyframe panel that saves camera path files."""

from __future__ import annotations

from pathlib import Path

import typer

from nerfcli.cli.common import info

EPILOG = (
    "Example: [bold]nerf view runs/fern[/] then open the printed URL; save a path in the page's "
    "'camera path' panel and render it with [bold]nerf render-video runs/fern --path "
    "camera_path.json[/]. Needs the viewer extra: [bold]pip install 'nerfcli\\[viewer]'[/]."
)


def view(
    checkpoint: Path = typer.Argument(..., help="Checkpoint file (or a run folder with ckpt.pt)."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to serve on (0.0.0.0 to share on the network)."
    ),
    port: int = typer.Option(
        7007, "--port", min=1, max=65535, help="Port (taken: the next free one)."
    ),
    max_height: int = typer.Option(
        None, "--max-height", min=8, help="Height of the still picture (default the capture's)."
    ),
    path_out: Path = typer.Option(
        None,
        "--path-out",
        help="Where the page saves camera paths (default <run>/camera_path.json).",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the URL."),
) -> None:
    """Look around a trained model in the browser and make camera paths there (Ctrl-C stops)."""
    import signal
    import time

    from nerfcli.training.checkpoint import load_checkpoint
    from nerfcli.training.device import select_device
    from nerfcli.viewer.server import Viewer, import_viser
    from nerfcli.viewer.source import ModelSource

    import_viser()  # the extra's message before any work
    dev = select_device(device)
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    source = ModelSource.from_checkpoint(ckpt, dev)
    viewer = Viewer(
        source, host, port, max_height, path_file=path_out or ckpt.path.parent / "camera_path.json"
    )

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C (even if started with it ignored)
        signal.signal(sig, interrupt)
    try:
        viewer.engine.warm.wait(120)  # the model's render snapshots are built before the URL
        typer.echo(viewer.url)
        psnr = source.status.test_psnr
        info(
            f"[bold]view[/] {ckpt.path} (step {ckpt.step}, held-out PSNR "
            f"{'-' if psnr is None else f'{psnr:.2f} dB'}) at {viewer.url}; Ctrl-C stops",
            quiet,
        )
        while True:
            time.sleep(0.5)
    finally:
        viewer.close()
