"""GraSP (Wang et al. 2020): keep the weights whose removal least reduces the gradient flow.

Published score S(-w) = -w * Hg, pruning the weights with the LARGEST S; as a keep-score (higher = keep)
that is w * Hg. g is the gradient of the loss on the scoring batch with logits divided by a temperature
(T = 200, as published), H the Hessian of the same loss, and Hg = d(g_stopped . g)/dw, with g_stopped
the gradient taken without a graph. The scoring batch should hold 10 examples per class (the paper's
setting: `examples_per_class` in ticketlab.experiments builds it). Scores are divided by |sum|.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import TicketlabError
from ..masks import Mask, prunable
from .scorers import Batch, register_scorer, scoring_copy, weight_gradients

TEMPERATURE = 200.0


def grasp_scores(model: nn.Module, batch: Batch, mask: Mask, temperature: float = TEMPERATURE) -> dict[str, torch.Tensor]:
    with scoring_copy(model, mask) as m:
        x, y = batch

        def loss() -> torch.Tensor:
            return nn.functional.cross_entropy(m(x) / temperature, y)

        stopped = {k: g.detach() for k, g in weight_gradients(m, loss()).items()}
        grads = weight_gradients(m, loss(), create_graph=True)
        weights = prunable(m)
        flow = sum((stopped[k] * grads[k]).sum() for k in grads)
        hg = torch.autograd.grad(flow, list(weights.values()), allow_unused=True)
        scores = {k: (w.detach() * (torch.zeros_like(w) if h is None else h)) for (k, w), h in zip(weights.items(), hg)}
    norm = torch.abs(sum(s.sum() for s in scores.values())) + 1e-10
    return {k: s / norm for k, s in scores.items()}


@register_scorer("grasp")
def grasp(model: nn.Module, batch: Batch | None, mask: Mask, generator: torch.Generator) -> dict[str, torch.Tensor]:
    if batch is None:
        raise TicketlabError("the grasp scorer needs a batch of training data (10 examples per class)")
    return grasp_scores(model, batch, mask)
