"""LPIPS (Zhang et al. 2018, v0.1): the distance between two images as the learned weighted
squared difference of a backbone's unit-normalised features, averaged over space and summed
over five layers:

    x -> 2x - 1 -> (x - shift) / scale -> backbone taps f_l [1, C_l, H_l, W_l]
    d = sum_l mean_hw( sum_c w_lc (f_l / |f_l|_c  -  g_l / |g_l|_c)^2 )

The backbones (AlexNet's or VGG-16's convolution stack) are written here with torchvision's
layer layout, so torchvision's checkpoint files (`alexnet-owt-*.pth`, `vgg16-*.pth`) load
into them without torchvision; the taps are LPIPS's (the ReLU after each of AlexNet's five
convolutions; VGG-16's relu1_2, relu2_2, relu3_3, relu4_3, relu5_3). The linear weights w ship
with nerfcli (lpips_data/). Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nerfcli.errors import NerfError

NETS = ("alex", "vgg")
CHECKPOINT_GLOBS = {"alex": "alexnet-owt-*.pth", "vgg": "vgg16-*.pth"}
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
LINEAR_WEIGHTS = Path(__file__).parent / "lpips_data" / "lpips_v0.1.npz"
# AlexNet's features: (out channels, kernel, stride, padding) per convolution, a max-pool
# after the first, second and fifth.
ALEX_CONVS = ((64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1))
ALEX_POOL_AFTER = (0, 1)
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
VGG_TAPS = (3, 8, 15, 22, 29)  # index of the ReLU in `features` after which a tap is taken
ALEX_TAPS = (1, 4, 7, 9, 11)


def _alex_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for index, (out, kernel, stride, padding) in enumerate(ALEX_CONVS):
        layers += [nn.Conv2d(channels, out, kernel, stride, padding), nn.ReLU()]
        if index in ALEX_POOL_AFTER:
            layers.append(nn.MaxPool2d(3, 2))
        channels = out
    layers.append(nn.MaxPool2d(3, 2))
    return nn.Sequential(*layers)


def _vgg_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
            channels = item
    layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class Backbone(nn.Module):
    """torchvision's `features` stack of AlexNet or VGG-16 (same module indices, so its
    state dict keys `features.N.weight` load), returning LPIPS's five taps."""

    def __init__(self, net: str):
        super().__init__()
        if net not in NETS:
            raise NerfError(f"--lpips must be one of {', '.join(NETS)}, got {net!r}")
        self.net = net
        self.features = _alex_features() if net == "alex" else _vgg_features()
        self.taps = ALEX_TAPS if net == "alex" else VGG_TAPS

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                taps.append(x)
            if index >= self.taps[-1]:
                break
        return taps


class LPIPS(nn.Module):
    """LPIPS distance between images [B, 3, H, W] (or [H, W, 3]) in [0, 1] -> [B]."""

    def __init__(self, backbone: Backbone, linear: list[torch.Tensor]):
        super().__init__()
        self.backbone = backbone.eval()
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(False)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        for index, weight in enumerate(linear):
            self.register_buffer(f"lin{index}", weight.reshape(1, -1, 1, 1).float())
        self.layers = len(linear)

    @torch.no_grad()
    def forward(self, image0: torch.Tensor, image1: torch.Tensor) -> torch.Tensor:
        if image0.dim() == 3:  # [H, W, 3]
            image0, image1 = image0.permute(2, 0, 1)[None], image1.permute(2, 0, 1)[None]
        try:
            features0 = self.backbone(((2.0 * image0 - 1.0) - self.shift) / self.scale)
            features1 = self.backbone(((2.0 * image1 - 1.0) - self.shift) / self.scale)
        except RuntimeError as exc:
            if "too small" not in str(exc):
                raise
            height, width = image0.shape[-2:]
            raise NerfError(
                f"LPIPS ({self.backbone.net}) cannot score {width} x {height} images: too small "
                "for its backbone; score at a larger size (a smaller --downscale)"
            ) from None
        total = torch.zeros(image0.shape[0], device=image0.device)
        for layer, (f0, f1) in enumerate(zip(features0, features1)):
            f0 = f0 / (f0.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)  # [B, C, h, w]
            f1 = f1 / (f1.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            weighted = ((f0 - f1) ** 2 * getattr(self, f"lin{layer}")).sum(1)  # [B, h, w]
            total = total + weighted.mean((1, 2))
        return total


def torch_cache_dirs() -> list[Path]:
    """Where torchvision keeps downloaded checkpoints: $TORCH_HOME/hub/checkpoints (TORCH_HOME
    defaulting to $XDG_CACHE_HOME/torch, else ~/.cache/torch)."""
    home = os.environ.get("TORCH_HOME")
    if home is None:
        cache = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
        home = str(Path(cache) / "torch")
    return [Path(home) / "hub" / "checkpoints"]


def find_backbone_weights(net: str, path: str | Path | None = None) -> Path:
    """The backbone checkpoint: `path` when given, else torchvision's file in its cache;
    NerfError saying where to put it otherwise."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise NerfError(
                f"{path}: no such file for --lpips-weights (torchvision's {CHECKPOINT_GLOBS[net]})"
            )
        return path
    for folder in torch_cache_dirs():
        found = sorted(folder.glob(CHECKPOINT_GLOBS[net])) if folder.is_dir() else []
        if found:
            return found[-1]
    folder = torch_cache_dirs()[0]
    raise NerfError(
        f"--lpips {net} needs torchvision's {CHECKPOINT_GLOBS[net]} (the ImageNet backbone); "
        f"put it in {folder} or pass --lpips-weights FILE (nothing is downloaded)"
    )


def linear_weights(net: str, path: Path = LINEAR_WEIGHTS) -> list[torch.Tensor]:
    """LPIPS v0.1's five linear layers for `net` (shipped in lpips_data/)."""
    with np.load(path) as data:
        return [torch.from_numpy(data[f"{net}_lin{index}"].copy()) for index in range(5)]


def load_lpips(net: str, weights: str | Path | None = None, device="cpu") -> LPIPS:
    """LPIPS with the backbone from torchvision's checkpoint (see find_backbone_weights)."""
    backbone = Backbone(net)
    path = find_backbone_weights(net, weights)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise NerfError(
            f"{path}: not a readable torch checkpoint ({str(exc).splitlines()[0][:120]})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    features = (
        {k: v for k, v in state.items() if k.startswith("features.")}
        if isinstance(state, dict)
        else {}
    )
    try:
        backbone.load_state_dict(features)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:160]
        raise NerfError(
            f"{path}: not torchvision's {CHECKPOINT_GLOBS[net]} ({first}); give the {net} "
            "backbone's checkpoint"
        ) from None
    return LPIPS(backbone, linear_weights(net)).to(device)
