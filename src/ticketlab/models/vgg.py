"""CIFAR VGG-11/13/16/19 with batch norm, as OpenLTH's `cifar_vgg_<D>` (REFERENCE.md 2.1).

Each 3x3 conv (with bias, padding 1) is followed by BN and ReLU; 'M' is a 2x2 max-pool. After the last conv:
average pooling to 1x1 (OpenLTH: a 2x2 avg-pool of the 2x2 map that 32x32 inputs leave, the same numbers),
then `fc` 512 -> classes. Parameter names are OpenLTH's (`layers.<i>.conv`, `layers.<i>.bn`, `fc`), so its
ignore list (`fc.weight`) reads the same here. 28x28 inputs (Fashion-MNIST) leave a 1x1 map after four
pools (28 -> 14 -> 7 -> 3 -> 1), which the adaptive pool takes as it is.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelHparams
from .memory import ChannelsLastWhenWide
from .width import scaled
from .resnet import PRESET as RESNET_PRESET

PLANS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


class ConvModule(nn.Module):
    def __init__(self, f_in: int, f_out: int):
        super().__init__()
        self.conv = nn.Conv2d(f_in, f_out, 3, padding=1)
        self.bn = nn.BatchNorm2d(f_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class CifarVGG(ChannelsLastWhenWide, nn.Module):
    def __init__(self, input_shape: tuple[int, ...], depth: int, num_classes: int, width: float = 1.0):
        super().__init__()
        if depth not in PLANS:
            raise ValueError(f"VGG depth must be one of {', '.join(map(str, PLANS))}, got {depth}")
        if len(input_shape) != 3:
            raise ValueError(f"needs image inputs [C, H, W], got shape {tuple(input_shape)}")
        channels, height, wide = input_shape
        if min(height, wide) < 16:
            raise ValueError(f"input {height}x{wide} is too small for four 2x2 max-pools (at least 16x16)")
        layers: list[nn.Module] = []
        f_in = channels
        for spec in PLANS[depth]:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                f_out = scaled([int(spec)], width)[0]
                layers.append(ConvModule(f_in, f_out))
                f_in = f_out
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(f_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


# ---- Registry: names, builder and OpenLTH's recipe ---------------------------------------------------------

NAME = re.compile(r"(?:cifar_vgg_|vgg)(\d+)")

# OpenLTH `cifar_vgg_16` defaults (REFERENCE.md 2.1): as cifar_resnet_20 (SGD 0.1, momentum 0.9, wd 1e-4, batch
# 128, x0.1 at 80 and 120 of 160 epochs, flip + crop, kaiming_normal, U[0, 1] BN scales, fan-in uniform biases
# of every conv and fc), global IMP at 20% per level over the conv weights: the output layer `fc.weight` is
# never pruned.
PRESET: dict[str, dict[str, Any]] = {**RESNET_PRESET,
                                     "pruning": {**RESNET_PRESET["pruning"], "ignore": ["fc.weight"]}}


def build(hp: ModelHparams, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """`cifar_vgg_<11|13|16|19>` or `vgg<11|13|16|19>`; hp.width multiplies every conv's channels."""
    m = NAME.fullmatch(hp.name)
    if m is None:
        raise ValueError(f"cannot read a VGG depth from {hp.name!r} (e.g. cifar_vgg_16)")
    return CifarVGG(input_shape, int(m.group(1)), num_classes, width=hp.width)
