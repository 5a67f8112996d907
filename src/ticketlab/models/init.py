"""Weight initialisations, seeded by an explicit generator (never the global RNG)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import TicketlabError

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.modules.batchnorm._BatchNorm,)

INITS = {
    "glorot_normal": lambda w, g: nn.init.xavier_normal_(w, generator=g),
    "glorot_uniform": lambda w, g: nn.init.xavier_uniform_(w, generator=g),
    "kaiming_normal": lambda w, g: nn.init.kaiming_normal_(w, nonlinearity="relu", generator=g),
    "kaiming_uniform": lambda w, g: nn.init.kaiming_uniform_(w, nonlinearity="relu", generator=g),
}

# Batch-norm scale (gamma) inits of OpenLTH (REFERENCE.md 2.1); the shift (beta) is always 0. "uniform"
# (gamma ~ U[0, 1]) is OpenLTH's default for every model, so tickets of BN nets start as theirs do.
BN_INITS = {
    "uniform": lambda w, g: w.uniform_(0.0, 1.0, generator=g),
    "fixed": lambda w, g: w.fill_(1.0),
}


def initialize(model: nn.Module, scheme: str, generator: torch.Generator, bn_init: str = "uniform") -> None:
    """Weights of Linear/Conv layers from `scheme`, their biases zero; batch-norm scales from `bn_init`, their
    shifts zero; other modules keep their own init. One generator, modules in order: a network without batch
    norm draws exactly what it drew before BN inits existed."""
    if scheme not in INITS:
        raise TicketlabError(f"unknown init {scheme!r}; choose one of: {', '.join(INITS)}")
    if bn_init not in BN_INITS:
        raise TicketlabError(f"unknown batch-norm init {bn_init!r}; choose one of: {', '.join(BN_INITS)}")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LAYERS):
                INITS[scheme](module.weight, generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, NORMS) and module.affine:
                BN_INITS[bn_init](module.weight, generator)
                module.bias.zero_()
