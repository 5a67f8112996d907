"""SynFlow (Tanaka et al. 2020): data-free, iterative conservation of synaptic flow.

On a copy of the model with every parameter replaced by its absolute value (masked weights stay 0), batch
norm in eval mode and double precision (the product of many layers' weights overflows float32), the input
is one all-ones example and R = sum of the outputs: the summed product of the weights along every path.
The score is |w * dR/dw|. Used iteratively with the exponential schedule (100 rounds, as published):
`prune(model, density=d, scorer="synflow", schedule="exponential", rounds=100)`. Each round keeps the count
hp.rounding gives at its density; Synaptic-Flow's own, N - int((1 - d_r) N) every round, is
`hp=PruningHparams(rounding="synaptic-flow")`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..masks import Mask, prunable
from .scorers import Batch, register_scorer, scoring_copy, weight_gradients


def input_shape(model: nn.Module, batch: Batch | None) -> tuple[int, ...]:
    """One example's shape: from the batch if given, else from the model's `input_shape` attribute."""
    if batch is not None:
        return tuple(batch[0].shape[1:])
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("synflow needs the input shape: pass a batch (only its shape is used) or give the model "
                         "an `input_shape` attribute")
    return tuple(shape)


@register_scorer("synflow")
def synflow(model: nn.Module, batch: Batch | None, mask: Mask, generator: torch.Generator) -> dict[str, torch.Tensor]:
    shape = input_shape(model, batch)
    with scoring_copy(model, mask, dtype=torch.float64) as m:
        m.eval()
        with torch.no_grad():
            for p in m.state_dict().values():
                if p.is_floating_point():
                    p.abs_()
        device = next(m.parameters()).device
        flow = m(torch.ones((1, *shape), dtype=torch.float64, device=device)).sum()
        grads = weight_gradients(m, flow)
        return {k: (grads[k] * p.detach()).abs() for k, p in prunable(m).items()}
