"""The one training loop of every kind of run: dense, IMP levels and controls, pruning at init, tickets,
strong tickets (scores trained on frozen weights), supermasks and populations (training/population.py runs
this loop over a stacked functional model). What differs between methods is a MaskPolicy
(training/policy.py) called at fixed points; batches and augmentation, the LR schedule's application,
evaluation, early stopping, divergence checks, checkpoints and exact resume are written here once.

A run is a pure function of (initial weights, mask, hyper-parameters, data seed): the batch of step s and
the LR of step s are computed from s, and the checkpoint holds the weights, optimizer state, RNG state and
metrics so far. Killed at any moment and resumed, it ends bit-identical to an uninterrupted run (CPU).

A run that diverges stops with `Diverged`: a training loss that is not finite (NaN or inf; the losses of
the steps since the last evaluation are kept as tensors and checked at each evaluation point and at the end,
so the check adds no device synchronisation per step), weights, buffers or an evaluation loss that are not
finite at an evaluation point, or an evaluation loss over EXPLODED (100) times the run's first one at two
evaluations in a row. Nothing computed from such weights is returned, evaluated or
checkpointed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn

from ..config import TrainingHparams
from ..data import BatchOrder, DataSplits
from ..errors import TicketlabError
from ..masks import Mask
from ..store import load_checkpoint, save_checkpoint
from .evaluate import evaluate, training_loss
from .policy import MaskPolicy, StaticMask


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
    """Training losses since the last check, as tensors ([rows] per step): appending costs no synchronisation
    with the device; `first_bad` reads them once. Stacked every `CHUNK` steps so a long interval holds few
    tensors."""

    CHUNK = 1024

    def __init__(self) -> None:
        self.chunks: list[torch.Tensor] = []
        self.pending: list[torch.Tensor] = []
        self.count = 0

    def add(self, loss: torch.Tensor) -> None:
        self.pending.append(loss.detach().reshape(-1))
        self.count += 1
        if len(self.pending) == self.CHUNK:
            self.chunks.append(torch.stack(self.pending))
            self.pending = []

    def first_bad(self, step: int) -> dict[int, tuple[int, str]]:
        """At evaluation point `step`: {row: (first step whose loss is not finite, reason)}. Clears."""
        if not self.count:
            return {}
        first = step - self.count
        losses = torch.cat(self.chunks + ([torch.stack(self.pending)] if self.pending else []))  # [steps, rows]
        self.chunks, self.pending, self.count = [], [], 0
        bad = ~torch.isfinite(losses)
        if not bool(bad.any()):
            return {}
        return {r: (first + int(bad[:, r].nonzero()[0, 0]), "loss is not finite")
                for r in bad.any(0).nonzero().flatten().tolist()}


EXPLODED = 100.0  # evaluation losses this many times the run's first one, twice running: diverged, though finite


def _row_problem(row: dict[str, float | None], step: int, data: DataSplits,
                 evals: list[dict[str, float]]) -> tuple[int, str] | None:
    """An evaluation loss that is not finite (on a split that has examples) is divergence too, and so is one
    that exploded: over EXPLODED times the same split's loss at the run's first evaluation, at this evaluation
    and at the one before (a network at chance has a cross-entropy near log(classes); training that keeps it a
    hundredfold above that has gone wrong, NaN or not). Twice, because one evaluation right after the start can
    be far off while the batch-norm running statistics settle (measured: ResNet-110 after 2 SGD steps, 4.9 ->
    1851), and such a run recovers. Emptiness is read from the data, not from a NaN accuracy: a regression task
    has no accuracy on any split."""
    for split, examples in (("val", len(data.val_x)), ("test", len(data.test_x))):
        loss = row[f"{split}_loss"]
        name = "validation" if split == "val" else "test"
        if loss is None or not examples:
            continue
        if not math.isfinite(loss):
            return step, f"{name} loss is not finite"
        first = evals[0].get(f"{split}_loss") if evals else None
        before = evals[-1].get(f"{split}_loss") if len(evals) > 1 else None
        if first is not None and before is not None and first > 0 and min(loss, before) > EXPLODED * first:
            return step, (f"{name} loss exploded: {before:.4g} at step {evals[-1]['step']} and {loss:.4g} now, over "
                          f"{EXPLODED:g} times its {first:.4g} at step {evals[0]['step']}")
    return None


@dataclass
class Checkpointing:
    path: Path
    every: int = 1000  # steps; checked at evaluation points


@dataclass
class Hooks:
    """Where a data pipeline or a caller joins the loop without changing it (methods are MaskPolicies)."""

    at_step: dict[int, Callable[[nn.Module], None]] = field(default_factory=dict)  # before the update of step s
    progress: Callable[[int, int], None] | None = None  # (step, last step)
    # (inputs, labels, step) -> (inputs, labels) of step s's batch, e.g. augmentation. It must be a function
    # of the step (and seeds it holds), never of hidden state, so a resumed run sees the same batches.
    batch_transform: Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]] | None = None
    # (model, result) once training is over, before the result is returned: methods whose result is a
    # learned mask or other state read it from the trained model here.
    at_end: Callable[[nn.Module, "TrainResult"], None] | None = None


class Trainee(Protocol):
    """Networks the loop trains side by side: `rows` of them (1 for `train`; a stacked population in
    training/population.py). Row r is a network; the loop keeps each row's evaluations, best weights and
    divergence, and tells the trainee which rows are left when some diverge."""

    rows: int
    optimizer: torch.optim.Optimizer
    policy: MaskPolicy

    def loss(self, step: int) -> torch.Tensor: ...  # step's training loss: a scalar (one row) or [rows]
    def after_backward(self, step: int) -> None: ...
    def after_step(self, step: int) -> None: ...
    def nonfinite(self, step: int) -> dict[int, str]: ...  # rows whose weights or buffers are not finite now
    def evaluate(self, step: int, test: bool) -> list[dict[str, float | None]]: ...  # one row each
    def snapshot(self, row: int) -> dict[str, torch.Tensor]: ...  # weights to test later (best val loss)
    def save(self, row: int, step: int, evals: list[dict], best: dict | None) -> None: ...  # its checkpoint
    def keep(self, rows: list[int]) -> None: ...  # only these rows go on (the others diverged)
    def progress(self, step: int) -> None: ...
    def finish(self, row: int, result: TrainResult, best: dict | None) -> None: ...  # final checks, best test


def run_loop(t: Trainee, data: DataSplits, hp: TrainingHparams, step: int, evals: list[list[dict]],
             best: list[dict | None], checkpoint_every: int | None) -> list[TrainResult | Diverged]:
    """The one training loop: from `step` to hp.train_steps, every row of `t` alike. The evaluation schedule
    (every eval_every steps and at the end; the test split every test_every), early stopping (minimum
    validation loss; its weights kept when the test split is not evaluated there), divergence per row, and
    checkpoints every `checkpoint_every` steps (at evaluation points) are written here once.

    Returns one entry per row: its TrainResult, or its Diverged (the row then left the others)."""
    results: list[TrainResult | Diverged | None] = [None] * t.rows
    alive = list(range(t.rows))  # the row index (into evals, best, results) of each row t holds now
    test_every = hp.test_every or hp.eval_every
    last_saved = step
    losses = _LossLog()
    lr = None
    while alive:
        if (step % hp.eval_every == 0 or step == hp.train_steps) and not (evals[alive[0]] and
                                                                          evals[alive[0]][-1]["step"] == step):
            bad = losses.first_bad(step)
            for r, why in t.nonfinite(step).items():
                bad.setdefault(r, (step, why))
            rows = t.evaluate(step, step % test_every == 0 or step == hp.train_steps) if len(bad) < len(alive) \
                else []
            keep = []
            for r, i in enumerate(alive):
                why = bad.get(r) or _row_problem(rows[r], step, data, evals[i])
                if why is not None:
                    results[i] = Diverged(why[0], why[1], evals[i])
                    continue
                row = rows[r]
                if not t.policy.settled(step):  # not this method's subnetwork yet: no early stop here
                    row["mask_settled"] = False
                elif row["val_loss"] < min((e["val_loss"] for e in evals[i] if e.get("mask_settled", True)),
                                           default=float("inf")):
                    best[i] = None if row["test_loss"] is not None else t.snapshot(r)
                evals[i].append(row)
                keep.append(r)
            if len(keep) < len(alive):
                alive = [alive[r] for r in keep]
                if not alive:
                    break
                t.keep(keep)
            if checkpoint_every and step - last_saved >= checkpoint_every and step < hp.train_steps:
                for r, i in enumerate(alive):
                    t.save(r, step, evals[i], best[i])
                last_saved = step
        if step == hp.train_steps:
            break
        if lr != (new_lr := t.policy.lr(hp, step)):
            lr = new_lr
            for group in t.optimizer.param_groups:
                group["lr"] = lr
        loss = t.loss(step)
        losses.add(loss)
        t.optimizer.zero_grad(set_to_none=False)
        (loss if loss.dim() == 0 else loss.sum()).backward()  # a sum of rows: each row's gradient is its own
        t.after_backward(step)
        if not t.policy.skips_step(step):
            t.optimizer.step()
        t.after_step(step)
        step += 1
        t.progress(step)
    for r, i in enumerate(alive):
        result = _result(evals[i])
        t.finish(r, result, best[i])
        results[i] = result
    return results  # type: ignore[return-value]


class _Single:
    """One network as the loop's trainee: `policy.network(model)` called on its batches."""

    rows = 1

    def __init__(self, model: nn.Module, data: DataSplits, hp: TrainingHparams, policy: MaskPolicy,
                 data_seed: int, hooks: Hooks, checkpoint: Checkpointing | None):
        self.model, self.data, self.hp, self.policy, self.hooks = model, data, hp, policy, hooks
        self.data_seed, self.checkpoint = data_seed, checkpoint
        self.net = policy.network(model)
        self.optimizer = policy.optimizer(self.net, hp)
        self.order = BatchOrder(len(data.train_x), hp.batch_size, data_seed, data.train_x.device)

    def loss(self, step: int) -> torch.Tensor:
        if step in self.hooks.at_step:
            self.hooks.at_step[step](self.model)
        idx = self.order.indices(step)
        x, y = self.data.train_x[idx], self.data.train_y[idx]
        if self.data.augment is not None:  # the data set's augmentation: a function of (data seed, step)
            x = self.data.augment(x, self.data_seed, step)
        if self.hooks.batch_transform:
            x, y = self.hooks.batch_transform(x, y, step)
        self.policy.before_forward(step, self.net)
        return training_loss(self.hp.loss, self.net(x), y)  # cross-entropy, or mse for regression (hp.loss)

    def after_backward(self, step: int) -> None:
        self.policy.after_backward(step, self.net)

    def after_step(self, step: int) -> None:
        self.policy.after_step(step, self.net, self.optimizer)

    def nonfinite(self, step: int) -> dict[int, str]:
        state = self.net.state_dict()
        tensors = [t for t in state.values() if t.is_floating_point()]
        if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            bad = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
            return {0: f"weights are not finite ({', '.join(bad)})"}
        return {}

    def evaluate(self, step: int, test: bool) -> list[dict[str, float | None]]:
        return [_evaluate(self.policy.evaluation(self.net), self.data, step, test)]

    def snapshot(self, row: int) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.net.state_dict().items()}

    def save(self, row: int, step: int, evals: list[dict], best: dict | None) -> None:
        state = {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "rng": torch.get_rng_state(), "step": step, "evals": evals, "best": best}
        if policy_state := self.policy.state_dict():
            state["policy"] = policy_state
        save_checkpoint(self.checkpoint.path, state)

    def keep(self, rows: list[int]) -> None:  # one row: it stops when it diverges; nothing to drop
        pass

    def progress(self, step: int) -> None:
        if self.hooks.progress:
            self.hooks.progress(step, self.hp.train_steps)

    def finish(self, row: int, result: TrainResult, best: dict | None) -> None:
        self.policy.finish(self.net, self.optimizer, result)
        if result.early_stop is not None and result.early_stop["test_loss"] is None and best is not None:
            _test_best_weights(self.net, best, self.data, result.early_stop, self.policy.evaluation)
        if self.hooks.at_end:
            self.hooks.at_end(self.model, result)


def train(model: nn.Module, data: DataSplits, hp: TrainingHparams, mask: Mask | None = None, *, data_seed: int,
          start_step: int = 0, checkpoint: Checkpointing | None = None, hooks: Hooks | None = None,
          policy: MaskPolicy | None = None) -> TrainResult:
    """Train `model` (already holding its starting weights) from `start_step` to hp.train_steps under `policy`
    (a fixed `mask` is StaticMask(mask); neither: dense). Resumes from `checkpoint` when it holds one.

    Raises Diverged (a TicketlabError) when a training loss, the weights or an evaluation loss stop being
    finite; the model then holds the non-finite weights and no checkpoint of them is written."""
    if policy is None:
        policy = StaticMask(mask) if mask is not None else MaskPolicy()
    elif mask is not None:
        raise ValueError("train: give a mask or a policy, not both")
    t = _Single(model, data, hp, policy, data_seed, hooks or Hooks(), checkpoint)
    torch.manual_seed(data_seed)  # dropout and any other stochastic layer
    step, evals, best = start_step, [], None
    state = load_checkpoint(checkpoint.path) if checkpoint else None
    if state is not None:
        policy.load_checkpoint(t.net, state)
        t.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        step, evals, best = state["step"], state["evals"], state.get("best")  # none in older strong checkpoints
    policy.start(t.net, t.optimizer)
    t.net.train()
    (result,) = run_loop(t, data, hp, step, [evals], [best], checkpoint.every if checkpoint else None)
    if isinstance(result, Diverged):
        raise result
    return result


def _test_best_weights(net: nn.Module, best: dict[str, torch.Tensor], data: DataSplits, row: dict,
                       evaluation: Callable[[nn.Module], nn.Module] = lambda net: net) -> None:
    """Fill the early-stopping row's test figures from the weights kept at that step (`evaluation`: the
    module a policy evaluates for `net`)."""
    final = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best)
    row["test_loss"], row["test_accuracy"] = evaluate(evaluation(net), data.test_x, data.test_y)
    net.load_state_dict(final)


def _evaluate(model: nn.Module, data: DataSplits, step: int, test: bool = True) -> dict[str, float | None]:
    val_loss, val_acc = evaluate(model, data.val_x, data.val_y)
    test_loss, test_acc = evaluate(model, data.test_x, data.test_y) if test else (None, None)
    return {"step": step, "val_loss": val_loss, "val_accuracy": val_acc,
            "test_loss": test_loss, "test_accuracy": test_acc}


def _result(evals: list[dict[str, float]]) -> TrainResult:
    # NaN when there is no validation set; rows before a changing mask settled are not the method's subnetwork
    with_val = [e for e in evals if e["val_loss"] == e["val_loss"] and e.get("mask_settled", True)]
    early = min(with_val, key=lambda e: e["val_loss"]) if with_val else None  # first minimum on ties
    return TrainResult(evals=evals, early_stop=early, final=evals[-1])
