"""How big a picture the viewer renders: small while the camera moves, sized from the measured
speed to keep frames coming; full size once it stops (nerfstudio's render state machine is the
pattern: rays a second measured on the renders so far, a picture of rate / target fps rays
while moving, the full size when still).

Two speeds are measured: `moving_rate`, pixels a second of the moving pictures counted over
their whole turn (render, colour map, JPEG, send), which holds the fixed cost of a picture as
well as its pixels, so the moving size settles where a turn takes 1 / moving_fps; and `rate`,
the render speed of any picture, which sizes the first moving picture before any has been
timed."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Sizer:
    """Picks render heights. Rates are exponential averages (weight `smoothing` on the newest);
    None until the first picture of their kind is timed."""

    full_height: int  # the still picture's height (the capture's, or --max-height)
    # above the 8 a second asked: the gaps between pictures (the next camera update) and a
    # loaded machine's jitter are not in the measured turn
    moving_fps: float = 10.0
    min_height: int = 16  # cup's 111-step fog: 24 x 32 took 0.14 s at load 13
    rate: float | None = None  # render speed, pixels a second (any picture)
    moving_rate: float | None = None  # pixels a second of moving pictures' whole turns
    smoothing: float = 0.5

    def moving_height(self, aspect: float) -> int:
        """The height whose turn takes about 1 / moving_fps at the measured speed."""
        rate = self.moving_rate if self.moving_rate is not None else self.rate
        if rate is None:  # nothing measured yet: start small
            return min(self.full_height, max(self.min_height, self.full_height // 4))
        pixels = rate / self.moving_fps
        height = int(math.sqrt(pixels / max(aspect, 1e-3)))
        return max(self.min_height, min(self.full_height, height))

    def still_height(self) -> int:
        return self.full_height

    def record(self, pixels: int, seconds: float) -> None:
        """Fold one render (pixels drawn in seconds) into the render speed."""
        self.rate = self._average(self.rate, pixels, seconds)

    def record_moving(self, pixels: int, seconds: float) -> None:
        """Fold one moving picture's whole turn into the moving speed."""
        self.moving_rate = self._average(self.moving_rate, pixels, seconds)

    def _average(self, current: float | None, pixels: int, seconds: float) -> float | None:
        if seconds <= 0 or pixels <= 0:
            return current
        measured = pixels / seconds
        if current is None:
            return measured
        return self.smoothing * measured + (1 - self.smoothing) * current
