"""Scorers: how much each prunable weight is worth keeping.

A scorer maps (model, batch or None, current mask, generator) to one float score per prunable weight,
of the weight's shape; higher = keep. Scores of already pruned weights do not matter (they are never
revived). A scorer must leave the model as it found it: weights, buffers (BN statistics), train/eval
mode and the global RNG (draw from the generator given); `prune` checks this and refuses one that does not.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..masks import Mask, prunable
from .registry import Registry

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, labels)
Scorer = Callable[[nn.Module, Batch | None, Mask, torch.Generator], dict[str, torch.Tensor]]
SCORERS: Registry = Registry("scorer")
register_scorer = SCORERS.register


@register_scorer("magnitude")
def magnitude(model: nn.Module, batch: Batch | None, mask: Mask, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """|w| of the weights the model holds now: trained magnitude after training, magnitude at init on theta_0."""
    return {k: p.detach().abs() for k, p in prunable(model).items()}


@register_scorer("random")
def random(model: nn.Module, batch: Batch | None, mask: Mask, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Uniform scores from `generator`, drawn on the CPU (the same on every device) and moved to the weight's."""
    return {k: torch.rand(p.shape, generator=generator).to(p.device) for k, p in prunable(model).items()}
