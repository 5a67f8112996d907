"""The step-based training loop: masked updates, evaluation every N steps, exact checkpoint/resume.

A run is a pure function of (initial weights, mask, hyper-parameters, data seed): the batch of step s and
the LR of step s are computed from s, and the checkpoint holds the weights, optimizer state, RNG state and
metrics so far. Killed at any moment and resumed, it ends bit-identical to an uninterrupted run (CPU).

A run that diverges stops with `Diverged`: a training loss that is not finite (NaN or inf; the losses of
the steps since the last evaluation are kept as tensors and checked at each evaluation point and at the end,
so the check adds no device synchronisation per step), or weights, buffers or an evaluation loss that are
not finite at an evaluation point. Nothing computed from such weights is returned, evaluated or
checkpointed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..config import TrainingHparams
from ..data import BatchOrder, DataSplits
from ..errors import TicketlabError
from ..masks import Mask, MaskApplier
from ..store import load_checkpoint, save_checkpoint
from .evaluate import evaluate, training_loss
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
                "final_val_accuracy": self.final["val_accuracy"],
                # regression has no accuracy (NaN, stored as null): its test loss is the result
                "early_stop_test_loss": es.get("test_loss") if es else None,
                "final_test_loss": self.final.get("test_loss")}


class Diverged(TicketlabError):
    """Training stopped because a loss or the weights stopped being finite.

    `step`: the first step where it was seen (the step whose training loss was not finite, or the evaluation
    point whose weights or evaluation loss were not finite); `reason`: what was not finite; `evals`: the
    evaluation rows before it (all finite)."""

    def __init__(self, step: int, reason: str, evals: list[dict[str, float]]):
        super().__init__(f"training diverged at step {step}: {reason}")
        self.step, self.reason, self.evals = step, reason, evals

    def __reduce__(self):  # noqa: ANN204 - picklable across worker processes
        return Diverged, (self.step, self.reason, self.evals)


class _LossLog:
    """Training losses since the last check, as tensors: appending costs no synchronisation with the device;
    `first_bad` reads them once. Stacked every `CHUNK` steps so a long interval holds few tensors."""

    CHUNK = 1024

    def __init__(self) -> None:
        self.chunks: list[torch.Tensor] = []
        self.pending: list[torch.Tensor] = []
        self.count = 0

    def add(self, loss: torch.Tensor) -> None:
        self.pending.append(loss.detach())
        self.count += 1
        if len(self.pending) == self.CHUNK:
            self.chunks.append(torch.stack(self.pending))
            self.pending = []

    def first_bad(self) -> int | None:
        """Offset (from the first logged step) of the first loss that is not finite; None if all are. Clears."""
        if not self.count:
            return None
        losses = torch.cat(self.chunks + ([torch.stack(self.pending)] if self.pending else []))
        self.chunks, self.pending, self.count = [], [], 0
        bad = ~torch.isfinite(losses)
        return int(bad.nonzero()[0, 0]) if bool(bad.any()) else None


def _check_finite(log: _LossLog, model: nn.Module, step: int, evals: list[dict[str, float]]) -> None:
    """At an evaluation point `step`: raise Diverged if a training loss since the last check, or a weight or
    buffer now, is not finite."""
    first = step - log.count
    offset = log.first_bad()
    if offset is not None:
        raise Diverged(first + offset, "loss is not finite", evals)
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
        bad = [k for k, t in model.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        raise Diverged(step, f"weights are not finite ({', '.join(bad)})", evals)


def _check_row(row: dict[str, float | None], step: int, evals: list[dict[str, float]], data: DataSplits) -> None:
    """An evaluation loss that is not finite (on a split that has examples) is divergence too. Emptiness is
    read from the data, not from a NaN accuracy: a regression task has no accuracy on any split."""
    for split, examples in (("val", len(data.val_x)), ("test", len(data.test_x))):
        loss = row[f"{split}_loss"]
        if loss is not None and examples and not math.isfinite(loss):
            raise Diverged(step, f"{'validation' if split == 'val' else 'test'} loss is not finite", evals)


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
    """Train `model` (already holding its starting weights) from `start_step` to hp.train_steps.

    Raises Diverged (a TicketlabError) when a training loss, the weights or an evaluation loss stop being
    finite; the model then holds the non-finite weights and no checkpoint of them is written."""
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
    losses = _LossLog()
    while True:
        if (step % hp.eval_every == 0 or step == hp.train_steps) and not (evals and evals[-1]["step"] == step):
            _check_finite(losses, model, step, evals)
            row = _evaluate(model, data, step, test=step % test_every == 0 or step == hp.train_steps)
            _check_row(row, step, evals, data)
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
        if data.augment is not None:  # the data set's augmentation: a function of (data seed, step)
            x = data.augment(x, data_seed, step)
        if hooks.batch_transform:
            x, y = hooks.batch_transform(x, y, step)
        loss = training_loss(hp.loss, model(x), y)  # cross-entropy, or mse for regression (hp.loss)
        losses.add(loss)
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
