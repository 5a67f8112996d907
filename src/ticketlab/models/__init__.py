"""Model registry: a name and the data's shape -> an initialised nn.Module."""

from __future__ import annotations

import re

import torch
from torch import nn

from ..config import ModelHparams
from ..errors import TicketlabError
from .convnet import CONV_WIDTHS, ConvNet
from .init import INITS, initialize
from .mlp import MLP

MODEL_NAMES = ["lenet_300_100", "mlp_<w1>_<w2>_..", *CONV_WIDTHS]


def build_model(hp: ModelHparams, input_shape: tuple[int, ...], num_classes: int, seed: int) -> nn.Module:
    """The named model with weights drawn from `hp.init` by a generator seeded with `seed`."""
    name = hp.name
    if name == "lenet_300_100":
        model: nn.Module = MLP(input_shape, [300, 100], num_classes, hp.dropout)
    elif re.fullmatch(r"mlp(_\d+)+", name):
        model = MLP(input_shape, [int(w) for w in name.split("_")[1:]], num_classes, hp.dropout)
    elif name in CONV_WIDTHS:
        if len(input_shape) != 3:
            raise TicketlabError(f"{name} needs image inputs [C, H, W], got shape {input_shape}")
        try:
            model = ConvNet(input_shape, CONV_WIDTHS[name], num_classes, dropout=hp.dropout)
        except ValueError as e:
            raise TicketlabError(f"{name}: {e}") from None
    else:
        raise TicketlabError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")
    initialize(model, hp.init, torch.Generator().manual_seed(seed))
    return model


__all__ = ["build_model", "initialize", "INITS", "MODEL_NAMES", "MLP", "ConvNet"]
