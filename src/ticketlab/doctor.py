"""The ticket doctor: what a mask really leaves of a network, checked on every mask any method makes.

- requested vs achieved survivors per layer (the budget the mask was cut to, if any);
- layer collapse: a layer with no weight left, or whose kept weights all lie on no path from the input to
  the output (units cut off from the input or the output), so the network computes a constant;
- kept weights that lie on no input-output path (wasted: they can never change the output).

Paths are counted SynFlow-style on a copy: every kept weight set to 1, every pruned one to 0, biases 0,
batch norm as the identity, an all-ones input, R = the sum of the outputs = the number of input-output
paths. A kept weight w is on a path exactly when dR/dw > 0. Exact for ReLU networks of Linear/Conv layers
with max/avg pooling (what the registry builds); float64, so counts up to ~1e300 paths are represented.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .masks import Mask, prunable
from .pruning import Budget, budget_met


def path_flow(model: nn.Module, mask: Mask, input_shape: tuple[int, ...]) -> tuple[float, dict[str, torch.Tensor]]:
    """(number of input-output paths, per prunable weight: dR/dw of the binary network) on a copy."""
    net = copy.deepcopy(model).double().eval()
    weights = prunable(net)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()  # mean 0, var 1: with weight 1 and bias 0, (nearly) the identity
                if module.affine:
                    module.weight.fill_(1.0)
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.Tensor):
                bias.zero_()
        for name, p in weights.items():
            p.copy_(mask[name].to(p.device, p.dtype))
    device = next(net.parameters()).device
    with torch.random.fork_rng(devices=[]):
        paths = net(torch.ones((1, *input_shape), dtype=torch.float64, device=device)).sum()
        grads = torch.autograd.grad(paths, list(weights.values()), allow_unused=True)
    return float(paths.detach()), {k: torch.zeros_like(p) if g is None else g.detach() for (k, p), g in zip(weights.items(), grads)}


def examine(model: nn.Module, mask: Mask, input_shape: tuple[int, ...], budget: Budget | None = None) -> dict[str, Any]:
    """The doctor's findings for `mask` on `model` (whose weights are not used, only its structure)."""
    paths, flow = path_flow(model, mask, input_shape)
    counts = mask.counts()
    on_path = {k: int(((flow[k] > 0) & mask[k].to(flow[k].device)).sum()) for k in counts}
    requested = None if budget is None else {"+".join(group): n for group, n in budget.items()}
    collapsed = [k for k in counts if on_path[k] == 0]
    return {"requested": requested, "achieved": counts, "counts_as_requested": budget is None or budget_met(mask, budget),
            "paths": paths, "collapsed": paths == 0, "collapsed_layers": collapsed,
            "empty_layers": [k for k, c in counts.items() if c == 0],
            "on_path": on_path, "wasted": {k: counts[k] - on_path[k] for k in counts}}
