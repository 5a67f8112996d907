"""Conv-2/4/6 of the LTH paper: pairs of 3x3 same-padded convs, each pair followed by 2x2 max-pool,
then FC 256-256 and the output layer (REFERENCE.md section 1.1)."""

from __future__ import annotations

import torch
from torch import nn

CONV_WIDTHS = {"conv2": [64, 64], "conv4": [64, 64, 128, 128], "conv6": [64, 64, 128, 128, 256, 256]}


class ConvNet(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], widths: list[int], num_classes: int,
                 fc: tuple[int, ...] = (256, 256), dropout: float = 0.0):
        super().__init__()
        channels, height, width = input_shape
        chans = [channels, *widths]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans[:-1], chans[1:]))
        pools = len(widths) // 2
        if height >> pools == 0 or width >> pools == 0:
            raise ValueError(f"input {height}x{width} is too small for {len(widths)} conv layers")
        flat = widths[-1] * (height >> pools) * (width >> pools)
        sizes = [flat, *fc]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], num_classes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = torch.relu(conv(x))
            if i % 2 == 1:
                x = nn.functional.max_pool2d(x, 2)
        x = x.flatten(1)
        for layer in self.hidden:
            x = self.dropout(torch.relu(layer(x)))
        return self.out(x)
