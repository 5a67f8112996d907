"""Early-bird tickets (You et al. 2020, REFERENCE.md section 14), unstructured: while the dense network
trains, draw the global magnitude mask at the target density at the start of every epoch (the first one
at initialisation) and keep the last 5; the ticket is drawn once the newest mask's normalised Hamming
distance to each of the 4 older ones is at most epsilon = 0.1. The search then stops (EarlyBirdFound):
what it saves is the dense training after that point.

The paper's code is structured only (network slimming: an L1 penalty on batch-norm scales, channels
masked); this is the unstructured variant the paper describes, with one global ranking of |w| over every
prunable weight, ties to the lower flat index. The masks so far are the policy's state, so a search killed
mid-way resumes where it was.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..masks import Mask, prunable, top_k
from .policy import MaskPolicy

KEEP = 5  # masks compared (the paper's epoch_keep)
EPSILON = 0.1


class EarlyBirdFound(Exception):
    """The search found its ticket at `step` (the start of epoch `epoch`)."""

    def __init__(self, step: int, epoch: int, mask: Mask, distances: list[float]):
        super().__init__(f"early-bird ticket at step {step} (epoch {epoch})")
        self.step, self.epoch, self.mask, self.distances = step, epoch, mask, distances


def magnitude_mask(model: nn.Module, density: float) -> Mask:
    """The global magnitude mask keeping round(density * all prunable weights)."""
    params = prunable(model)
    flat = torch.cat([p.detach().abs().flatten() for p in params.values()])
    keep = top_k(flat, round(density * flat.numel()))
    out, at = {}, 0
    for name, p in params.items():
        out[name] = keep[at:at + p.numel()].view_as(p).cpu()
        at += p.numel()
    return Mask(out)


def distance(a: Mask, b: Mask) -> float:
    """Normalised Hamming distance: the fraction of prunable positions where the masks differ."""
    differ = sum(int((a[k] != b[k]).sum()) for k in a.keys())
    return differ / sum(v.numel() for v in a.tensors.values())


class EarlyBirdSearch(MaskPolicy):
    """Dense training that raises EarlyBirdFound at the first epoch start where the last KEEP masks agree."""

    name = "early-bird"

    def __init__(self, density: float, steps_per_epoch: int, epsilon: float = EPSILON):
        self.density, self.steps_per_epoch, self.epsilon = density, steps_per_epoch, epsilon
        self.masks: list[Mask] = []
        self.history: list[float | None] = []  # per epoch start: the largest distance (None before KEEP masks)

    def network(self, model: nn.Module) -> nn.Module:
        self.model = model
        return model

    def before_forward(self, step: int, net: nn.Module) -> None:
        if step % self.steps_per_epoch:
            return
        epoch = step // self.steps_per_epoch
        if len(self.history) > epoch:  # resumed at an epoch start already drawn
            return
        self.masks = [*self.masks, magnitude_mask(self.model, self.density)][-KEEP:]
        if len(self.masks) < KEEP:
            self.history.append(None)
            return
        distances = [distance(self.masks[-1], older) for older in self.masks[:-1]]
        self.history.append(max(distances))
        if max(distances) <= self.epsilon:
            raise EarlyBirdFound(step, epoch, self.masks[-1], distances)

    def state_dict(self) -> dict[str, Any]:
        return {"masks": [m.tensors for m in self.masks], "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.masks = [Mask(t) for t in state["masks"]]
            self.history = list(state["history"])
