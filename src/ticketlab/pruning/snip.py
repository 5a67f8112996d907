"""SNIP (Lee et al. 2019): connection sensitivity |dL/dc| = |g * w| on one mini-batch, at the current mask.

The loss is the cross-entropy of `batch` (inputs, labels) through a masked copy of the model, in the model's
own train/eval mode (the copy's BN statistics move, the model's do not). Scores are divided by their sum,
as published; the ranking does not depend on it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import TicketlabError
from ..masks import Mask, prunable
from .scorers import Batch, register_scorer, scoring_copy, weight_gradients


@register_scorer("snip")
def snip(model: nn.Module, batch: Batch | None, mask: Mask, generator: torch.Generator) -> dict[str, torch.Tensor]:
    if batch is None:
        raise TicketlabError("the snip scorer needs a batch of training data (inputs, labels)")
    with scoring_copy(model, mask) as m:
        x, y = batch
        grads = weight_gradients(m, nn.functional.cross_entropy(m(x), y))
        scores = {k: (grads[k] * p.detach()).abs() for k, p in prunable(m).items()}
    total = sum(s.sum() for s in scores.values())
    return {k: s / total if total > 0 else s for k, s in scores.items()}
