"""`nerf train --view`: the page of `nerf view` while the run trains. The viewer renders the
latest weights in its own thread (one thread, one torch thread, niced, held to a share of the
time), from copies the training thread makes between steps only while a page is open."""

from __future__ import annotations

from nerfcli.data.scene import Scene
from nerfcli.models.config import Config
from nerfcli.models.registry import build_model
from nerfcli.training.events import EvalEvent, StepEvent
from nerfcli.viewer.engine import EngineOptions
from nerfcli.viewer.server import Viewer
from nerfcli.viewer.source import LiveSource

# the render thread's share of wall time and its niceness: measured against training steps
# in a time budget (README, `nerf train --view`)
LIVE_OPTIONS = EngineOptions(threads=1, nice=10, duty=0.35, still_after=0.3)


class TrainingViewer:
    """Build before the trainer; `attach(trainer)` once it exists; `on_event` from its events."""

    def __init__(self, cfg: Config, scene: Scene, host: str, port: int, device, out_dir):
        model = build_model(cfg, scene_box=scene.scene_box).to(device)
        self.source = LiveSource(model, scene, cfg, refresh_seconds=2.0)
        self.source.checkpoint_path = None
        self.viewer = Viewer(
            self.source, host, port, options=LIVE_OPTIONS, path_file=out_dir / "camera_path.json"
        )
        self.trainer = None

    @property
    def url(self) -> str:
        return self.viewer.url

    def attach(self, trainer) -> None:
        self.trainer = trainer
        self.source.status.step = trainer.step

    def on_event(self, event) -> None:
        """Between two steps, in the training thread: copy the weights when the page wants
        them (at most every refresh_seconds), pass on the held-out PSNR."""
        if isinstance(event, StepEvent):
            if self.trainer is not None and self.source.wants_weights():
                self.source.offer(self.trainer.model, event.step)
                self.viewer.engine.refresh()
                self.viewer.refresh_status()
        elif isinstance(event, EvalEvent):
            self.source.record_psnr(event.step, event.test_psnr)
            self.viewer.refresh_status()

    def close(self) -> None:
        self.viewer.close()
