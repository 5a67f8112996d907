"""Weight initialisations, seeded by an explicit generator (never the global RNG)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import PRESET_INIT
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


def fan_in_bound(weight: torch.Tensor) -> float:
    """1 / sqrt(fan_in) of a Linear/Conv weight [out, in, *kernel] (fan_in = in x kernel size), 0 for an empty
    fan-in: the bound of PyTorch's default bias draw (nn.Linear/nn.Conv*.reset_parameters)."""
    fan_in = weight[0].numel()
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


# Bias inits of Linear/Conv layers (model.bias_init). "zeros": every bias 0, the LTH paper's TF code's and
# ticketlab's only rule before this setting. "fan_in_uniform": U(-1/sqrt(fan_in), 1/sqrt(fan_in)), what
# nn.Linear/nn.Conv2d's constructor draws and OpenLTH keeps (its initializers redraw only weights and BN scales).
BIAS_INITS = {
    "zeros": lambda b, bound, g: b.zero_(),
    "fan_in_uniform": lambda b, bound, g: b.uniform_(-bound, bound, generator=g),
}


BIAS_CHOICES = (PRESET_INIT, *BIAS_INITS)  # model.bias_init: "preset" resolves per model (models.registry)


def check_bias_init(bias_init: str, choices: tuple[str, ...] = tuple(BIAS_INITS)) -> None:
    if bias_init not in choices:
        raise TicketlabError(f"unknown bias init {bias_init!r} (model.bias_init); choose one of: "
                             f"{', '.join(choices)}")


def initialize(model: nn.Module, scheme: str, generator: torch.Generator, bn_init: str = "uniform",
               bias_init: str = "zeros") -> None:
    """Weights of Linear/Conv layers from `scheme`, batch-norm scales from `bn_init` (their shifts 0, as in
    OpenLTH's BN inits and PyTorch's default), in one pass over the modules in order; then the Linear/Conv
    biases from `bias_init`, in a second pass over the same generator. Other modules keep their own init.

    The order is a choice: every weight and BN scale is drawn before any bias, so a seed's weights are the same
    under every bias init (the bias effect can be isolated), and "zeros" draws exactly what ticketlab drew
    before bias inits existed (as a network without batch norm draws what it drew before BN inits). OpenLTH's
    biases come from the constructor's draws, interleaved with default weight draws it then discards, from the
    global RNG: its distribution is matched, not its bits."""
    if scheme not in INITS:
        raise TicketlabError(f"unknown init {scheme!r}; choose one of: {', '.join(INITS)}")
    if bn_init not in BN_INITS:
        raise TicketlabError(f"unknown batch-norm init {bn_init!r}; choose one of: {', '.join(BN_INITS)}")
    check_bias_init(bias_init)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LAYERS):
                INITS[scheme](module.weight, generator)
            elif isinstance(module, NORMS) and module.affine:
                BN_INITS[bn_init](module.weight, generator)
                module.bias.zero_()
        for module in model.modules():
            if isinstance(module, LAYERS) and module.bias is not None:
                BIAS_INITS[bias_init](module.bias, fan_in_bound(module.weight), generator)
