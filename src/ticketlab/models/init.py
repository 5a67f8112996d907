"""Weight initialisations, seeded by an explicit generator (never the global RNG)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import TicketlabError

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

INITS = {
    "glorot_normal": lambda w, g: nn.init.xavier_normal_(w, generator=g),
    "glorot_uniform": lambda w, g: nn.init.xavier_uniform_(w, generator=g),
    "kaiming_normal": lambda w, g: nn.init.kaiming_normal_(w, nonlinearity="relu", generator=g),
    "kaiming_uniform": lambda w, g: nn.init.kaiming_uniform_(w, nonlinearity="relu", generator=g),
}


def initialize(model: nn.Module, scheme: str, generator: torch.Generator) -> None:
    """Weights of Linear/Conv layers from `scheme`, their biases zero; other modules keep their own init."""
    if scheme not in INITS:
        raise TicketlabError(f"unknown init {scheme!r}; choose one of: {', '.join(INITS)}")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LAYERS):
                INITS[scheme](module.weight, generator)
                if module.bias is not None:
                    module.bias.zero_()
