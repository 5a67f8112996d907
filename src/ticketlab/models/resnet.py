"""CIFAR ResNet-D (He et al. 2016, section 4.2) as OpenLTH's `cifar_resnet_D[_W]` (REFERENCE.md 2.1).

D = 6n + 2: a 3x3 conv + BN, then three segments of n basic blocks with W, 2W and 4W channels (W = 16 by
default), the first block of segments 2 and 3 striding by 2; global average pooling and `fc`. A block whose
input and output shapes differ has a 1x1-conv + BN projection shortcut (OpenLTH's choice, not He et al.'s
zero padding). Convs have no bias (BN follows each), `fc` has one. Parameter names are OpenLTH's (`conv`,
`bn`, `blocks.<i>.conv1`, `blocks.<i>.shortcut.0`, `fc`), so its ignore lists read the same here.
Spatial sizes only halve twice, so 28x28 inputs (Fashion-MNIST) work as well as 32x32: 28 -> 14 -> 7.
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


class Block(nn.Module):
    def __init__(self, f_in: int, f_out: int, downsample: bool):
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(f_in, f_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(f_out)
        self.conv2 = nn.Conv2d(f_out, f_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(f_out)
        if downsample or f_in != f_out:
            self.shortcut: nn.Module = nn.Sequential(nn.Conv2d(f_in, f_out, 1, stride=stride, bias=False),
                                                     nn.BatchNorm2d(f_out))
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(ChannelsLastWhenWide, nn.Module):
    def __init__(self, input_shape: tuple[int, ...], depth: int, num_classes: int, width: int = 16):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"ResNet depth must be 6n + 2 with n >= 1 (8, 14, 20, 56, 110, ...), got {depth}")
        if len(input_shape) != 3:
            raise ValueError(f"needs image inputs [C, H, W], got shape {tuple(input_shape)}")
        channels, height, wide = input_shape
        if min(height, wide) < 4:
            raise ValueError(f"input {height}x{wide} is too small for two stride-2 stages")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(channels, width, 3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks, f_in = [], width
        for segment, f_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(Block(f_in, f_out, downsample=segment > 0 and i == 0))
                f_in = f_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.conv(x)))
        out = self.blocks(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # OpenLTH: avg_pool2d over the whole (square) map
        return self.fc(out)


# ---- Registry: names, builder and OpenLTH's recipe ---------------------------------------------------------

NAME = re.compile(r"(?:cifar_resnet_|resnet)(\d+)(?:_(\d+))?")

# OpenLTH `cifar_resnet_20` defaults (REFERENCE.md 2.1): SGD 0.1, momentum 0.9, wd 1e-4, batch 128, LR x0.1 at
# 80 and 120 of 160 epochs, flip + 4-pixel crop, kaiming_normal weights, U[0, 1] BN scales (shifts 0) and
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)) biases (fc's: its convs have none), global IMP at 20% per level over every
# conv and fc weight (shortcut convs included). Epochs count this data set's
# training split: CIFAR-10 less the 5,000 held out for validation is 351 steps of 128 (OpenLTH, which holds
# nothing out and keeps the last partial batch: 391).
PRESET: dict[str, dict[str, Any]] = {
    "dataset": {"augment": "flip_crop"},
    "model": {"init": "kaiming_normal", "bias_init": "fan_in_uniform"},
    "training": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 128,
                 "train_steps": "160ep", "milestones": ["80ep", "120ep"], "gamma": 0.1, "eval_every": "1ep"},
    # counted as OpenLTH's sparse_global: ceil(0.2 x every remaining weight) + 1 per level (PruningHparams.counting)
    "pruning": {"strategy": "global", "rate": 0.2, "counting": "openlth"},
}


def build(hp: ModelHparams, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """`cifar_resnet_<D>[_<W>]` or `resnet<D>`; hp.width multiplies W (rounded, at least 1)."""
    m = NAME.fullmatch(hp.name)
    if m is None:
        raise ValueError(f"cannot read a ResNet depth from {hp.name!r} (e.g. cifar_resnet_20, cifar_resnet_20_64)")
    depth, width = int(m.group(1)), int(m.group(2) or 16)
    if width < 1:
        raise ValueError(f"ResNet width W must be at least 1, got {width}")
    return CifarResNet(input_shape, depth, num_classes, width=scaled([width], hp.width)[0])
