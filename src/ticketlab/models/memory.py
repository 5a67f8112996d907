"""The memory format a conv net trains fastest in, where it is safe (see CifarResNet.memory_format)."""

from __future__ import annotations

import torch
from torch import nn

MIN_CHANNELS = 8  # channels_last crashed oneDNN's backward at 2 and 4 channels per layer (torch 2.13, CPU)


def channels_last_if_wide(model: nn.Module) -> torch.memory_format | None:
    """channels_last when every conv layer has at least MIN_CHANNELS output channels, else None (as built)."""
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    return torch.channels_last if widths and min(widths) >= MIN_CHANNELS else None


class ChannelsLastWhenWide:
    """Mixin for conv nets: build_model converts the drawn model to `memory_format`. channels_last measured
    faster here (ResNet-20 on 1x28x28, batch 128, one CPU thread: 1.36x per training step; VGG-16 1.03-1.14x,
    bench/conv_speed.py), at the standard widths only: with 2 or 4 channels per layer (width 0.125, 0.25)
    oneDNN's channels_last backward crashed (segmentation fault) in about half of the runs tried with torch 2.13
    on this CPU, never in 24 runs at 8 or 16."""

    @property
    def memory_format(self) -> torch.memory_format | None:
        return channels_last_if_wide(self)  # type: ignore[arg-type]
