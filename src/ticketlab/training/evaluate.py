"""Loss and accuracy over a whole split, in large batches, without autograd."""

from __future__ import annotations

import torch
from torch import nn


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 5000) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on (x, y); the model is left in the mode it was in."""
    if len(x) == 0:
        return float("nan"), float("nan")
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for i in range(0, len(x), batch_size):
        out = model(x[i:i + batch_size])
        target = y[i:i + batch_size]
        loss_sum += nn.functional.cross_entropy(out, target, reduction="sum")
        correct += (out.argmax(1) == target).sum()
    model.train(was_training)
    return loss_sum.item() / len(x), correct.item() / len(x)
