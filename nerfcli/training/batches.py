"""The training rays of a run and the random batches drawn from them.

Every training pixel's ray (origins, directions, viewdirs), its colour and, for a random
background, its alpha are packed into one table [P, C] (C = 12 or 13 float32 columns), so a
batch is one gather. The table stays on the training device when it fits
`train.device_rays_gb`; a larger one (lego at 800 x 800: 64M rays, 3.1 GB) lives in pinned host
memory, each batch is gathered there into a pinned buffer and copied with non_blocking.

Batches across processes: every rank holds the same generator (same seed, same state) and
draws the same global batch [B]; rank r keeps its contiguous rows (`Ranks.rows`). The random
background colours [B, 3] are drawn the same way. The training render's own randomness
(stratified jitter, density noise) is seeded per chunk of rays by the chunk's first row in the
global batch (`block_seed(seed, step, row)`), so N processes render exactly the rays, with
exactly the jitter, that one process would (when the chunks line up: see
Trainer._forward_backward).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nerfcli.data.rays import Rays, camera_rays
from nerfcli.data.scene import Scene
from nerfcli.errors import NerfError

RGB = slice(9, 12)  # the columns of the packed table; origins 0:3, directions 3:6, viewdirs 6:9
ALPHA = 12


def random_background(scene: Scene) -> bool:
    return scene.background == "random"


def table_columns(scene: Scene) -> int:
    return 13 if random_background(scene) and scene.alpha is not None else 12


def table_bytes(scene: Scene) -> int:
    """Bytes of the packed table of every training pixel."""
    return len(scene.i_train) * scene.height * scene.width * table_columns(scene) * 4


def rays_home(scene: Scene, device: torch.device, budget_gb: float) -> torch.device:
    """Where the table (and the batch generator) live: the training device when it fits the
    budget (or the device is the CPU), else the host."""
    if device.type == "cpu" or table_bytes(scene) <= budget_gb * 1e9:
        return device
    return torch.device("cpu")


def pack_training_rays(scene: Scene) -> torch.Tensor:
    """Every training pixel's row [P, C] on the CPU, filled view by view (no second copy of
    the rays); each view's rays use its own camera (intrinsics, distortion)."""
    if scene.images is None:
        raise NerfError(f"{scene.root}: the scene was loaded without images")
    pixels = scene.height * scene.width
    table = torch.empty(len(scene.i_train) * pixels, table_columns(scene))  # [P, C]
    for k, view in enumerate(scene.i_train):
        rays = camera_rays(scene.camera(view)).reshape(-1)  # [H*W]
        rows = table[k * pixels : (k + 1) * pixels]
        rows[:, 0:3], rows[:, 3:6], rows[:, 6:9] = rays.origins, rays.directions, rays.viewdirs
        rows[:, RGB] = torch.from_numpy(scene.images[view].reshape(-1, 3))
        if table.shape[1] > ALPHA:
            rows[:, ALPHA] = torch.from_numpy(scene.alpha[view].reshape(-1))
    return table


def rank_invariance_note(batch_rays: int, grad_chunk_rays: int, world: int) -> str | None:
    """Why a run on `world` ranks is not one process's run to float precision, or None.

    Each rank renders its rows in chunks of train.grad_chunk_rays (0: all its rows at once),
    each chunk's jitter seeded by its first row in the global batch. When the chunks of every
    rank start where one process's do (grad_chunk_rays divides the per-rank rows), N ranks
    draw one process's jitter. With 0 (the default) rank r's one chunk is seeded at row
    r * B / N, one process's at row 0: fern, default profile, 20 steps, 2 ranks against 1:
    losses 3e-3 to 1.6e-2 and factor tensors 0.11 to 0.35 (relative L2) apart; with
    --set train.grad_chunk_rays=512 in both, 9.1e-8 and 1.2e-4, but one process steps 2.5x
    slower (1.46 against 0.58 s, chunks alternating in one process), so it is not the default.
    """
    rows = batch_rays // world
    if batch_rays % world == 0 and grad_chunk_rays > 0 and rows % grad_chunk_rays == 0:
        return None
    block = batch_rays // 8 if batch_rays % 8 == 0 else None
    fix = (
        f"--set train.grad_chunk_rays={block} in this run and the one-process run"
        if block
        else "a train.grad_chunk_rays that divides each rank's rows, in both runs"
    )
    return (
        f"note: each of the {world} ranks seeds the training jitter of its {rows} rows in "
        f"chunks of {grad_chunk_rays or rows}, not where one process does, so this run matches "
        f"one process's statistically, not to float precision; for that, {fix}"
    )


def block_seed(seed: int, step: int, block: int) -> int:
    """A seed for one chunk of rays of one step's global batch, `block` its first row
    (splitmix64 of the three)."""
    mask = (1 << 64) - 1
    x = (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + block * 0x94D049BB133111EB) & mask
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & mask
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & mask
    return (x ^ (x >> 31)) >> 1  # < 2**63


@dataclass
class Batch:
    rays: Rays  # [b], on the training device
    target: torch.Tensor  # [b, 3], composited onto `colour` when the background is random
    colour: torch.Tensor | None  # [b, 3] the random background, or None


class RaySource:
    """The packed table at `home` and the batches drawn from it with `generator` (at home)."""

    def __init__(
        self, scene: Scene, device: torch.device, home: torch.device, generator: torch.Generator
    ):
        self.device = device
        self.home = home
        self.generator = generator
        self.random_background = random_background(scene)
        table = pack_training_rays(scene)  # [P, C]
        if home.type == "cpu" and device.type == "cuda":
            table = table.pin_memory()
        self.table = table.to(home)
        self._rows: torch.Tensor | None = None  # [K] the rows batches are drawn from (None: all)
        self._buffer: torch.Tensor | None = None  # pinned [b, C], host gathers
        self._copied = None  # a CUDA event: the buffer's last copy is done

    @property
    def num_rays(self) -> int:
        return self.table.shape[0]

    @property
    def rays(self) -> Rays:
        """Every training ray [P] (views of the table)."""
        t = self.table
        return Rays(t[:, 0:3], t[:, 3:6], t[:, 6:9])

    @property
    def target(self) -> torch.Tensor:
        return self.table[:, RGB]  # [P, 3]

    @property
    def num_drawn(self) -> int:
        """The rows batches are drawn from."""
        return self.num_rays if self._rows is None else len(self._rows)

    def keep(self, mask: torch.Tensor | None) -> None:
        """Draw batches only from the rows where mask [P] is True from now on (None, or a
        mask keeping no row: every row)."""
        if mask is None or not bool(mask.any()):
            self._rows = None
        else:
            self._rows = torch.nonzero(mask.to(self.home)).squeeze(1)

    def draw(self, batch_rays: int, rows: slice) -> Batch:
        """The global batch's random rows (and background colours); this rank's `rows`."""
        g = self.generator
        index = torch.randint(0, self.num_drawn, (batch_rays,), generator=g, device=g.device)
        if self._rows is not None:
            index = self._rows[index]
        colour = None
        if self.random_background:
            colour = torch.rand((batch_rays, 3), generator=g, device=g.device)  # [B, 3]
            colour = colour[rows].to(self.device, non_blocking=True)
        picked = self._gather(index[rows])  # [b, C]
        target = picked[:, RGB]
        if colour is not None and picked.shape[1] > ALPHA:
            target = target + (1.0 - picked[:, ALPHA : ALPHA + 1]) * colour
        return Batch(Rays(picked[:, 0:3], picked[:, 3:6], picked[:, 6:9]), target, colour)

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        if self.home == self.device or self.device.type != "cuda":
            return self.table[index].to(self.device)
        if self._copied is not None:
            self._copied.synchronize()  # the previous batch has left the buffer
        size = (index.shape[0], self.table.shape[1])
        if self._buffer is None or tuple(self._buffer.shape) != size:
            self._buffer = torch.empty(size, dtype=self.table.dtype).pin_memory()
        torch.index_select(self.table, 0, index, out=self._buffer)
        out = self._buffer.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return out
