"""The step-based training loop: masked updates, evaluation every N steps, exact checkpoint/resume.

A run is a pure function of (initial weights, mask, hyper-parameters, data seed): the batch of step s and
the LR of step s are computed from s, and the checkpoint holds the weights, optimizer state, RNG state and
metrics so far. Killed at any moment and resumed, it ends bit-identical to an uninterrupted run (CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..config import TrainingHparams
from ..data import BatchOrder, DataSplits
from ..masks import Mask, MaskApplier
from ..store import load_checkpoint, save_checkpoint
from .evaluate import evaluate
from .optim import build_optimizer, lr_at


@dataclass
class TrainResult:
    evals: list[dict[str, float]]  # one row per evaluation: step, val/test loss and accuracy
    early_stop: dict[str, float] | None  # the row of minimum validation loss (None without a validation set)
    final: dict[str, float]  # the row at the last step
    checks: dict[str, float] = field(default_factory=dict)  # largest |value| found at pruned positions

    def summary(self) -> dict[str, Any]:
        es = self.early_stop
        return {"early_stop_step": es["step"] if es else None,
                "early_stop_test_accuracy": es["test_accuracy"] if es else None,
                "early_stop_val_loss": es["val_loss"] if es else None,
                "final_step": self.final["step"],
                "final_test_accuracy": self.final["test_accuracy"],
                "final_val_accuracy": self.final["val_accuracy"]}


@dataclass
class Checkpointing:
    path: Path
    every: int = 1000  # steps; checked at evaluation points


@dataclass
class Hooks:
    """Where a method or a data pipeline joins the loop without changing it."""

    at_step: dict[int, Callable[[nn.Module], None]] = field(default_factory=dict)  # before the update of step s
    progress: Callable[[int, int], None] | None = None  # (step, last step)
    # (inputs, labels, step) -> (inputs, labels) of step s's batch, e.g. augmentation. It must be a function
    # of the step (and seeds it holds), never of hidden state, so a resumed run sees the same batches.
    batch_transform: Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]] | None = None
    # (model, result) once training is over, before the result is returned: methods whose result is a
    # learned mask or other state read it from the trained model here.
    at_end: Callable[[nn.Module, "TrainResult"], None] | None = None


def train(model: nn.Module, data: DataSplits, hp: TrainingHparams, mask: Mask, *, data_seed: int,
          start_step: int = 0, checkpoint: Checkpointing | None = None, hooks: Hooks | None = None) -> TrainResult:
    """Train `model` (already holding its starting weights) from `start_step` to hp.train_steps."""
    hooks = hooks or Hooks()
    applier = MaskApplier(model, mask)
    applier.weights()
    optimizer = build_optimizer(model, hp)
    order = BatchOrder(len(data.train_x), hp.batch_size, data_seed, data.train_x.device)
    evals: list[dict[str, float]] = []
    step = start_step
    torch.manual_seed(data_seed)  # dropout and any other stochastic layer

    best: dict[str, torch.Tensor] | None = None  # weights of the best validation loss, if not tested then
    state = load_checkpoint(checkpoint.path) if checkpoint else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        step, evals, best = state["step"], state["evals"], state["best"]
    applier.optimizer_state(optimizer)
    last_saved = step
    test_every = hp.test_every or hp.eval_every

    model.train()
    lr = None
    while True:
        if (step % hp.eval_every == 0 or step == hp.train_steps) and not (evals and evals[-1]["step"] == step):
            row = _evaluate(model, data, step, test=step % test_every == 0 or step == hp.train_steps)
            if row["val_loss"] < min((e["val_loss"] for e in evals), default=float("inf")):
                best = None if row["test_loss"] is not None else {k: v.clone() for k, v in model.state_dict().items()}
            evals.append(row)
            if checkpoint and step - last_saved >= checkpoint.every and step < hp.train_steps:
                save_checkpoint(checkpoint.path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                                  "rng": torch.get_rng_state(), "step": step, "evals": evals,
                                                  "best": best})
                last_saved = step
        if step == hp.train_steps:
            break
        if step in hooks.at_step:
            hooks.at_step[step](model)
        if lr != (new_lr := lr_at(hp, step)):
            lr = new_lr
            for group in optimizer.param_groups:
                group["lr"] = lr
        idx = order.indices(step)
        x, y = data.train_x[idx], data.train_y[idx]
        if hooks.batch_transform:
            x, y = hooks.batch_transform(x, y, step)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        applier.grads()
        optimizer.step()
        applier.weights()
        step += 1
        if hooks.progress:
            hooks.progress(step, hp.train_steps)
    result = _result(evals)
    result.checks = applier.pruned_magnitudes(optimizer)
    if result.early_stop is not None and result.early_stop["test_loss"] is None and best is not None:
        _test_best_weights(model, best, data, result.early_stop)
    if hooks.at_end:
        hooks.at_end(model, result)
    return result


def _test_best_weights(model: nn.Module, best: dict[str, torch.Tensor], data: DataSplits, row: dict) -> None:
    """Fill the early-stopping row's test figures from the weights kept at that step."""
    final = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best)
    row["test_loss"], row["test_accuracy"] = evaluate(model, data.test_x, data.test_y)
    model.load_state_dict(final)


def _evaluate(model: nn.Module, data: DataSplits, step: int, test: bool = True) -> dict[str, float | None]:
    val_loss, val_acc = evaluate(model, data.val_x, data.val_y)
    test_loss, test_acc = evaluate(model, data.test_x, data.test_y) if test else (None, None)
    return {"step": step, "val_loss": val_loss, "val_accuracy": val_acc,
            "test_loss": test_loss, "test_accuracy": test_acc}


def _result(evals: list[dict[str, float]]) -> TrainResult:
    with_val = [e for e in evals if e["val_loss"] == e["val_loss"]]  # NaN when there is no validation set
    early = min(with_val, key=lambda e: e["val_loss"]) if with_val else None  # first minimum on ties
    return TrainResult(evals=evals, early_stop=early, final=evals[-1])
