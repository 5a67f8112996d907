"""Loss and accuracy over a whole split, in batches, without autograd."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import TicketlabError

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def eval_batch_size(model: nn.Module) -> int:
    """Large batches for fully connected models; small ones for conv nets, whose per-example cost on a CPU
    rises with the batch once the activations outgrow the cache (Conv-2 on 28x28 inputs, one thread,
    measured: 0.86 ms/example at batch 60-96, 1.04 at 120, 1.67 at 5,000; LeNet: flat from 200 to 2,000)."""
    return 64 if any(isinstance(m, CONV) for m in model.modules()) else 1000


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on (x, y); the model is left in the mode it was in.
    Regression targets (floating-point y): (mean squared error per output, NaN): no accuracy."""
    if len(x) == 0:
        return float("nan"), float("nan")
    batch_size = batch_size or eval_batch_size(model)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for i in range(0, len(x), batch_size):
        out = model(x[i:i + batch_size])
        target = y[i:i + batch_size]
        if target.is_floating_point():
            loss_sum += nn.functional.mse_loss(out, target.view_as(out), reduction="sum") / out[0].numel()
            continue
        loss_sum += nn.functional.cross_entropy(out, target, reduction="sum")
        correct += (out.argmax(1) == target).sum()
    model.train(was_training)
    if y.is_floating_point():
        return loss_sum.item() / len(x), float("nan")
    return loss_sum.item() / len(x), correct.item() / len(x)


def training_loss(name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The training loss `name` (TrainingHparams.loss): cross-entropy on class labels, or the mean squared
    error on regression targets (floating-point y); a loss that does not fit the labels is said in one line."""
    if name == "mse":
        if not y.is_floating_point():
            raise TicketlabError("training.loss mse needs regression targets (e.g. the relu or helix data set); "
                                 "this data set has class labels: use cross_entropy")
        return nn.functional.mse_loss(out, y.view_as(out))
    if y.is_floating_point():
        raise TicketlabError("this data set has regression targets: set training.loss = \"mse\"")
    return nn.functional.cross_entropy(out, y)
