"""LPIPS against an independent computation: random small backbone weights saved in
torchvision's layout (no download), the distance recomputed here with plain F.conv2d /
max_pool2d calls from the paper's formula."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nerfcli.errors import NerfError
from nerfcli.evaluation import lpips

ALEX = [
    (3, 64, 11, 4, 2),
    (64, 192, 5, 1, 2),
    (192, 384, 3, 1, 1),
    (384, 256, 3, 1, 1),
    (256, 256, 3, 1, 1),
]


def _random_torchvision_state(net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict shaped like torchvision's alexnet / vgg16 (classifier keys included)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    if net == "alex":
        indices = [0, 3, 6, 8, 10]
        shapes = [(o, i, k, k) for i, o, k, _, _ in ALEX]
    else:
        indices, shapes, channels, index = [], [], 3, 0
        for item in lpips.VGG16:
            if item == "M":
                index += 1
                continue
            indices.append(index)
            shapes.append((item, channels, 3, 3))
            channels, index = item, index + 2
    for index, shape in zip(indices, shapes):
        fan_in = shape[1] * shape[2] * shape[3]
        state[f"features.{index}.weight"] = torch.randn(shape, generator=generator) / fan_in**0.5
        state[f"features.{index}.bias"] = 0.01 * torch.randn(shape[0], generator=generator)
    state["classifier.1.weight"] = torch.zeros(4, 4)  # ignored, as torchvision's head
    return state


def _reference(net: str, state: dict, linear: list[np.ndarray], x0, x1) -> float:
    """LPIPS recomputed with explicit convolutions, taps as in the LPIPS paper's code."""

    def taps(image):
        x = (2.0 * image - 1.0 - torch.tensor(lpips.SHIFT).view(1, 3, 1, 1)) / torch.tensor(
            lpips.SCALE
        ).view(1, 3, 1, 1)
        out = []
        if net == "alex":
            for layer, (index, (_, _, _, stride, pad)) in enumerate(zip([0, 3, 6, 8, 10], ALEX)):
                x = F.relu(
                    F.conv2d(
                        x,
                        state[f"features.{index}.weight"],
                        state[f"features.{index}.bias"],
                        stride,
                        pad,
                    )
                )
                out.append(x)
                if layer in (0, 1):
                    x = F.max_pool2d(x, 3, 2)
        else:
            index, blocks = (
                0,
                [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
            )
            for block_number, block in enumerate(blocks):
                if block_number:
                    x = F.max_pool2d(x, 2, 2)
                    index += 1
                for _ in block:
                    x = F.relu(
                        F.conv2d(
                            x,
                            state[f"features.{index}.weight"],
                            state[f"features.{index}.bias"],
                            1,
                            1,
                        )
                    )
                    index += 2
                out.append(x)
        return out

    total = 0.0
    for f0, f1, w in zip(taps(x0), taps(x1), linear):
        n0 = f0 / (torch.sqrt((f0**2).sum(1, keepdim=True)) + 1e-10)
        n1 = f1 / (torch.sqrt((f1**2).sum(1, keepdim=True)) + 1e-10)
        total += float((F.conv2d((n0 - n1) ** 2, torch.tensor(w).view(1, -1, 1, 1))).mean())
    return total


@pytest.mark.parametrize("net,size", [("alex", 67), ("vgg", 34)])
def test_lpips_matches_the_formula(tmp_path: Path, net: str, size: int) -> None:
    state = _random_torchvision_state(net)
    path = tmp_path / ("alexnet-owt-0000.pth" if net == "alex" else "vgg16-0000.pth")
    torch.save(state, path)
    generator = torch.Generator().manual_seed(1)
    x0 = torch.rand(1, 3, size, size + 5, generator=generator)
    x1 = (x0 + 0.2 * torch.rand(x0.shape, generator=generator)).clamp(0, 1)
    model = lpips.load_lpips(net, path)
    linear = [w.numpy() for w in lpips.linear_weights(net)]
    got = float(model(x0, x1)[0])
    want = _reference(net, state, linear, x0, x1)
    assert got == pytest.approx(want, rel=1e-4)
    assert got > 0
    assert float(model(x0, x0)[0]) == 0.0
    # [H, W, 3] input is the same image
    assert float(model(x0[0].permute(1, 2, 0), x1[0].permute(1, 2, 0))) == pytest.approx(
        got, rel=1e-5
    )


def test_shipped_linear_weights_have_lpips_shapes() -> None:
    assert [len(w) for w in lpips.linear_weights("alex")] == [64, 192, 384, 256, 256]
    assert [len(w) for w in lpips.linear_weights("vgg")] == [64, 128, 256, 512, 512]
    assert all(float(w.min()) >= 0 for w in lpips.linear_weights("vgg"))  # LPIPS clamps them


def test_torch_cache_is_searched_and_missing_weights_say_where(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(
        NerfError,
        match=r"alexnet-owt-\*\.pth .*put it in .*hub/checkpoints or pass --lpips-weights",
    ):
        lpips.find_backbone_weights("alex")
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(_random_torchvision_state("alex"), folder / "alexnet-owt-7be5be79.pth")
    assert lpips.find_backbone_weights("alex") == folder / "alexnet-owt-7be5be79.pth"
    assert isinstance(lpips.load_lpips("alex"), lpips.LPIPS)


def test_wrong_backbone_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "vgg16-x.pth"
    torch.save(_random_torchvision_state("alex"), path)
    with pytest.raises(NerfError, match="not torchvision's vgg16"):
        lpips.load_lpips("vgg", path)
