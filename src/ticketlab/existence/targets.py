"""Target networks: an MLP as a list of layers (W [out, in], b [out]) in float64, ReLU between layers and
none after the last, from any nn.Module made of nn.Linear and nn.ReLU (an nn.Sequential, ticketlab's MLP, a
user's module whose forward applies them in the order they were registered), or from a planted target.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..errors import TicketlabError
from ..models import planted

# Modules that do not change what an MLP made of Linear and ReLU computes
_NEUTRAL = (nn.Flatten, nn.Identity, nn.Dropout)


class Layer(NamedTuple):
    weight: np.ndarray  # [out, in], float64
    bias: np.ndarray  # [out], float64


def check_layers(layers: list[Layer]) -> list[Layer]:
    """Consecutive layers must chain (each one's inputs are the previous one's outputs), all numbers finite."""
    if not layers:
        raise TicketlabError("the target has no layer")
    for i, (w, b) in enumerate(layers):
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise TicketlabError(f"target layer {i}: weight {tuple(w.shape)} and bias {tuple(b.shape)} do not form "
                                 "a linear layer")
        if i and w.shape[1] != layers[i - 1].weight.shape[0]:
            raise TicketlabError(f"target layer {i} takes {w.shape[1]} inputs but layer {i - 1} gives "
                                 f"{layers[i - 1].weight.shape[0]}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise TicketlabError(f"target layer {i} holds NaN or infinite numbers")
    return layers


def layers_of(module: nn.Module) -> list[Layer]:
    """The layers of an MLP module: its nn.Linear leaves in registration order, a ReLU between each two
    (checked: any other leaf module, or a missing ReLU, is refused, since the construction assumes ReLU)."""
    leaves = [m for m in module.modules() if not list(m.children())]
    layers: list[Layer] = []
    relu_after = True
    for m in leaves:
        if isinstance(m, nn.Linear):
            if layers and not relu_after:
                raise TicketlabError("the target has two nn.Linear layers without a ReLU between them")
            bias = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(m.out_features)
            layers.append(Layer(m.weight.detach().double().numpy().copy(), bias.copy()))
            relu_after = False
        elif isinstance(m, nn.ReLU):
            relu_after = True
        elif not isinstance(m, _NEUTRAL):
            raise TicketlabError(f"the target holds a {type(m).__name__}: only nn.Linear and nn.ReLU are supported")
    if relu_after and layers:
        raise TicketlabError("the target ends with a ReLU; the construction's last layer is linear")
    return check_layers(layers)


def planted_target(name: str) -> list[Layer]:
    """The target network of a planted model name planted_<task>_<depth>_<width> (models/planted.py's target;
    the width is that of the network it is planted in, not the target's)."""
    task, depth, _ = planted.parse(name)
    return check_layers([Layer(np.asarray(w, dtype=np.float64).T.copy(), np.asarray(b, dtype=np.float64).copy())
                         for w, b in planted.target(task, depth)])


def from_state(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None = None) -> list[Layer]:
    """Layers from a state dict of an MLP ('<name>.weight' 2-D, '<name>.bias'), in the order of the names'
    numbers ('layers.10' after 'layers.2'); masked by `masks` (keyed by the weights' names) where given."""
    names = sorted((k for k, v in weights.items() if k.endswith(".weight") and v.ndim == 2), key=_natural)
    if len(names) != sum(1 for v in weights.values() if v.ndim > 1):
        raise TicketlabError("the target holds weights that are not 2-D (a convolution?): only MLPs are supported")
    layers = []
    for name in names:
        w = weights[name].double()
        if masks is not None and name in masks:
            w = w * masks[name].double()
        bias = weights.get(name[: -len("weight")] + "bias")
        b = bias.double() if bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        layers.append(Layer(w.numpy().copy(), b.numpy().copy()))
    return check_layers(layers)


def _natural(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in name.replace(".", " . ").split()]


def evaluate(layers: list[Layer], x: np.ndarray) -> np.ndarray:
    """The target on inputs x [N, in] (float64)."""
    for i, (w, b) in enumerate(layers):
        x = x @ w.T + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x


def fingerprint(layers: list[Layer]) -> dict:
    """What names a target in an identity: its shape and the hash of its numbers' bytes."""
    import hashlib

    h = hashlib.sha256()
    for w, b in layers:
        h.update(np.ascontiguousarray(w, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(b, dtype=np.float64).tobytes())
    return {"widths": [int(layers[0].weight.shape[1])] + [int(w.shape[0]) for w, _ in layers],
            "sha256": h.hexdigest()[:16]}
