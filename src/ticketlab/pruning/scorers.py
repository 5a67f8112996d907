"""Scorers: how much each prunable weight is worth keeping.

A scorer maps (model, batch or None, current mask, generator) to one float score per prunable weight,
of the weight's shape; higher = keep. Scores of already pruned weights do not matter (they are never
revived). A scorer must leave the model as it found it: weights, buffers (BN statistics), train/eval
mode and the global RNG (draw from the generator given); `prune` checks this and refuses one that does not.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable, Iterator

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


@contextlib.contextmanager
def scoring_copy(model: nn.Module, mask: Mask, dtype: torch.dtype | None = None) -> Iterator[nn.Module]:
    """A deep copy of `model` with the mask applied to its weights (and cast to `dtype`), under a forked RNG:
    scorers that need gradients or other weights work on it, so the model itself, its BN statistics, its
    gradients and the global RNG stay exactly as they were."""
    copy_ = copy.deepcopy(model)
    if dtype is not None:
        copy_ = copy_.to(dtype)
    with torch.no_grad():
        for name, p in prunable(copy_).items():
            p.mul_(mask[name].to(p.device, p.dtype))
            p.grad = None
    devices = [p.device.index or 0 for p in copy_.parameters() if p.is_cuda][:1]
    with torch.random.fork_rng(devices=devices):
        yield copy_


def weight_gradients(model: nn.Module, loss: torch.Tensor, create_graph: bool = False) -> dict[str, torch.Tensor]:
    """d loss / d w for every prunable weight of `model`, without touching .grad."""
    params = prunable(model)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph, allow_unused=True)
    return {k: torch.zeros_like(p) if g is None else g for (k, p), g in zip(params.items(), grads)}
