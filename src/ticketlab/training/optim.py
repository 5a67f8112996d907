"""Optimizers and the learning-rate schedule (a pure function of the step, so a resumed run needs no
scheduler state)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrainingHparams


def build_optimizer(model: nn.Module, hp: TrainingHparams) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    # The fused kernels (one call for all parameters) are the fastest on CPU and CUDA alike.
    if hp.optimizer == "adam":
        return torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay, fused=True)
    return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov,
                           weight_decay=hp.weight_decay, fused=True)


def lr_at(hp: TrainingHparams, step: int) -> float:
    """LR for the update made at `step`: linear warm-up to hp.lr over warmup_steps, then x gamma at each
    milestone passed."""
    lr = hp.lr * hp.gamma ** sum(step >= m for m in hp.milestones)
    if hp.warmup_steps:
        lr *= min(1.0, (step + 1) / hp.warmup_steps)
    return lr
