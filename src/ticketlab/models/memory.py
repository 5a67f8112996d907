"""The memory format a conv net trains fastest in, where it is safe (see CifarResNet.memory_format)."""

from __future__ import annotations

import torch
from torch import nn

MIN_CHANNELS = 8  # channels_last crashed oneDNN's backward at 2 and 4 channels per layer (torch 2.13, CPU)


def channels_last_if_wide(model: nn.Module) -> torch.memory_format | None:
    """channels_last when every conv layer has at least MIN_CHANNELS output channels, else None (as built)."""
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    return torch.channels_last if widths and min(widths) >= MIN_CHANNELS else None
