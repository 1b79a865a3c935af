"""How big a picture the viewer renders: small while the camera moves, sized from the measured
render speed to keep frames coming; full size once it stops (nerfstudio's render state machine
is the pattern: a low-resolution render per camera update, a high-resolution one when still)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Sizer:
    """Picks render heights. `rate` is the measured render speed in pixels per second (an
    exponential average over the renders so far); None until the first render is timed."""

    full_height: int  # the still picture's height (the capture's, or --max-height)
    moving_fps: float = 8.0  # frames a second wanted while the camera moves
    min_height: int = 24
    rate: float | None = None
    smoothing: float = 0.5  # weight of the newest measurement

    def moving_height(self, aspect: float) -> int:
        """The height whose render takes about 1 / moving_fps at the measured speed."""
        if self.rate is None:  # nothing measured yet: start small
            return min(self.full_height, max(self.min_height, self.full_height // 4))
        pixels = self.rate / self.moving_fps
        height = int(math.sqrt(pixels / max(aspect, 1e-3)))
        return max(self.min_height, min(self.full_height, height))

    def still_height(self) -> int:
        return self.full_height

    def record(self, pixels: int, seconds: float) -> None:
        """Fold one render (pixels drawn in seconds) into the measured speed."""
        if seconds <= 0 or pixels <= 0:
            return
        measured = pixels / seconds
        if self.rate is None:
            self.rate = measured
        else:
            self.rate = self.smoothing * measured + (1 - self.smoothing) * self.rate


def width_for(height: int, aspect: float) -> int:
    return max(1, int(round(height * aspect)))
