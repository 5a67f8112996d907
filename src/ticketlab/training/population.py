"""Populations: N networks of one architecture and one recipe trained as one model.

Each member has its own initial weights, mask, data seed (batch order) and checkpoint; the members share the
architecture, the TrainingHparams and the start step. Their parameters are stacked ([N, ...] per tensor,
`torch.func.stack_module_state`) and the forward pass is `torch.vmap` over `torch.func.functional_call` of
the member's module, so any nn.Module works; the losses of the members (each its own mean over its own batch)
are summed, so each member's gradient is exactly its own. Adam and SGD are elementwise, so one fused optimizer
over the stacked tensors makes each member's update its own run's. Masks, evaluation, early stopping,
divergence and checkpoints are per member: the population is a trainee of the one training loop
(training.loop.run_loop), which runs it exactly as it runs one network under `train`; the only difference from N separate runs is the last bits of the batched products (results agree within float
tolerance, not bit for bit).

Batch norm is per member: its running statistics are stacked buffers that the vmapped forward pass updates in
place, row by row, as each member's own run would; evaluation runs in eval mode. Augmentation is per member too:
each member's batch is augmented from its own data seed and the step, as in its own run.

Not grouped (`eligible` says why; the caller trains those alone with `train`): losses other than
cross-entropy, regression (floating-point) targets, models with dropout (p > 0: a separate run draws its dropout
masks from its own seeded RNG, which vmap cannot reproduce per member, so a member would not equal its own run),
and runs with hooks other than `progress` (at_step, batch_transform, at_end act on one module).

Divergence: a member whose loss, weights or evaluation loss stops being finite gets its own `Diverged` (same
step and reason as its separate run would report) and leaves the population; the others continue.

Checkpoints: each member's checkpoint is written in its own file in exactly the format of `train`'s (weights,
a torch optimizer state dict, RNG state, step, evaluations, best weights), at the same steps; a killed population
resumes from them bit-identically (CPU), and a single run (`--population off`) can resume them too.

Who trains: `trainer()` is what `experiments/job.py: run_training` calls; it is `train` unless an executor
installed another with `using_trainer` (executors/population.py collects requests and trains them here).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..config import TrainingHparams
from ..data import BatchOrder, DataSplits
from ..masks import Mask, prunable
from ..store import save_checkpoint
from .evaluate import eval_batch_size
from .loop import Checkpointing, Diverged, Hooks, TrainResult, _test_best_weights, run_loop, train
from .optim import build_optimizer
from .policy import MaskPolicy

TrainFn = Callable[..., TrainResult]
_TRAINER: contextvars.ContextVar[TrainFn | None] = contextvars.ContextVar("ticketlab_trainer", default=None)


def trainer() -> TrainFn:
    """The function that trains one run (train's signature): `train` unless `using_trainer` set another."""
    return _TRAINER.get() or train


@contextlib.contextmanager
def using_trainer(fn: TrainFn) -> Iterator[None]:
    token = _TRAINER.set(fn)
    try:
        yield
    finally:
        _TRAINER.reset(token)


def eligible(model: nn.Module, hp: TrainingHparams, hooks: Hooks | None, data: DataSplits | None = None
             ) -> str | None:
    """None if `model` trained under `hp` with `hooks` (on `data`, when given) can be a population member, else
    why not (one phrase)."""
    if getattr(hp, "loss", "cross_entropy") != "cross_entropy":
        return f"loss {hp.loss!r}"
    # the population's loss and evaluation are cross-entropy only; alone, the loop trains regression with mse
    # or refuses the loss/target mismatch in one line
    if data is not None and data.train_y.is_floating_point():
        return "regression targets"
    if hooks is not None and (hooks.at_step or hooks.batch_transform or hooks.at_end):
        return "training hooks"
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
            return "dropout"
    names = set(dict(model.named_parameters())) | set(dict(model.named_buffers()))
    if set(model.state_dict()) != names:
        return "state outside parameters and buffers"
    return None


def signature(model: nn.Module) -> str:
    """What must be equal for modules to share one forward function: class, structure, tensors' shapes."""
    tensors = [(k, tuple(v.shape), str(v.dtype), str(v.device)) for k, v in model.state_dict().items()]
    return f"{type(model).__module__}.{type(model).__qualname__}|{model!r}|{tensors}"


@dataclass
class Member:
    model: nn.Module  # holds the member's starting weights (masked); receives its final weights
    mask: Mask
    data_seed: int
    checkpoint: Checkpointing | None = None
    hooks: Hooks | None = None
    state: dict[str, Any] | None = None  # its checkpoint, already loaded (None: start afresh)


def bytes_per_member(model: nn.Module, hp: TrainingHparams) -> int:
    """A generous estimate of one member's memory: weights, gradient, optimizer state, mask, best weights, and
    the activations of a training batch and an evaluation chunk."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    widths = sum(m.weight.shape[0] for m in prunable(model).values())
    activations = 4 * widths * (3 * hp.batch_size + eval_batch_size(model))
    return 7 * params + activations


def auto_size(model: nn.Module, hp: TrainingHparams, device: torch.device, cap: int = 1024) -> int:
    """Members per population on `device`: 1 on a CPU (measured, bench/population.py: the CPU is already busy
    with the arithmetic, so stacking is no faster there), else as many as fit half the free memory, <= cap."""
    if device.type != "cuda":
        return 1
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(cap, int(free * 0.5) // max(1, bytes_per_member(model, hp))))


class _Stack:
    """The members' tensors stacked: parameters (leaves the optimizer updates), buffers, float masks."""

    def __init__(self, models: list[nn.Module], masks: list[Mask]):
        params, buffers = torch.func.stack_module_state(models)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        names = list(prunable(models[0]))
        self.masks = {k: torch.stack([m[k].to(self.params[k].device, self.params[k].dtype) for m in masks])
                      for k in names}

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        return {**{k: v[i].detach().clone() for k, v in self.params.items()},
                **{k: v[i].clone() for k, v in self.buffers.items()}}


def train_population(members: list[Member], data: DataSplits, hp: TrainingHparams, *,
                     start_step: int = 0) -> list[TrainResult | Diverged]:
    """Train every member from `start_step` (or its checkpoint's step) to hp.train_steps; one result per member:
    its TrainResult (its model then holds its final weights) or its Diverged. Members must be eligible and
    share `signature` and their checkpoints' step."""
    if not members:
        return []
    for m in members:
        why = eligible(m.model, hp, m.hooks, data)
        if why:
            raise ValueError(f"not a population member: {why}")
        if signature(m.model) != signature(members[0].model):
            raise ValueError("population members must share one architecture")
    steps = {m.state["step"] if m.state is not None else start_step for m in members}
    if len(steps) != 1:
        raise ValueError(f"population members resume from different steps {sorted(steps)}")
    step = steps.pop()
    for m in members:
        m.mask.check_matches(m.model)
        if m.state is not None:
            m.model.load_state_dict(m.state["model"])
    names = [k for k, p in members[0].model.named_parameters() if p.requires_grad]
    stack = _Stack([m.model for m in members], [m.mask for m in members])
    optimizer = _stacked_optimizer(stack, names, hp)
    if any(m.state is not None for m in members):
        _load_optimizer_states(optimizer, stack, names, members, hp)
    _apply(stack, grads=False)
    for k in names:  # the loop installs the mask on the optimizer state too
        for value in optimizer.state.get(stack.params[k], {}).values():
            if torch.is_tensor(value) and value.shape == stack.params[k].shape and k in stack.masks:
                value.mul_(stack.masks[k])

    evals: list[list[dict]] = [list(m.state["evals"]) if m.state else [] for m in members]
    best: list[dict | None] = [m.state["best"] if m.state else None for m in members]
    every = min((m.checkpoint.every for m in members if m.checkpoint), default=None)
    return run_loop(_Population(members, stack, optimizer, names, data, hp), data, hp, step, evals, best, every)


class _Population:
    """The members' stack as the one loop's trainee (training.loop.Trainee): row r of every stacked tensor is
    a member; the loop keeps each row's evaluations, best weights and divergence."""

    policy = MaskPolicy()  # the LR schedule of weight training; masks are applied to the stack below

    def __init__(self, members: list[Member], stack: _Stack, optimizer: torch.optim.Optimizer, names: list[str],
                 data: DataSplits, hp: TrainingHparams):
        self.members, self.stack, self.optimizer, self.names, self.data, self.hp = (members, stack, optimizer,
                                                                                    names, data, hp)
        self.alive = list(range(len(members)))  # member index of each stacked row
        self.base = copy.deepcopy(members[0].model).to("meta")
        self.base.train()
        self.loss_fn = torch.func.vmap(_member_loss(self.base))
        self.orders = [BatchOrder(len(data.train_x), hp.batch_size, m.data_seed, data.train_x.device)
                       for m in members]

    @property
    def rows(self) -> int:
        return len(self.alive)

    def loss(self, step: int) -> torch.Tensor:
        idx = torch.stack([self.orders[i].indices(step) for i in self.alive])
        x = self.data.train_x[idx]
        if self.data.augment is not None:  # each member's batch augmented from its own data seed, as alone
            x = torch.stack([self.data.augment(x[r], self.members[i].data_seed, step)
                             for r, i in enumerate(self.alive)])
        return self.loss_fn(self.stack.params, self.stack.buffers, x, self.data.train_y[idx])  # [rows]

    def after_backward(self, step: int) -> None:
        _apply(self.stack, grads=True)

    def after_step(self, step: int) -> None:
        _apply(self.stack, grads=False)

    def nonfinite(self, step: int) -> dict[int, str]:
        tensors = {**self.stack.params, **self.stack.buffers}
        finite = {k: torch.isfinite(v.detach().flatten(1)).all(1) for k, v in tensors.items()
                  if v.is_floating_point()}
        if not finite or bool(torch.stack(list(finite.values())).all()):
            return {}
        out = {}
        for r in range(self.rows):
            if bad := [k for k, ok in finite.items() if not bool(ok[r])]:
                out[r] = f"weights are not finite ({', '.join(bad)})"
        return out

    def evaluate(self, step: int, test: bool) -> list[dict[str, float | None]]:
        return _evaluate_all(self.base, self.stack, self.data, step, test)

    def snapshot(self, row: int) -> dict[str, torch.Tensor]:
        return self.stack.member_state(row)

    def save(self, row: int, step: int, evals: list[dict], best: dict | None) -> None:
        _save_member(self.members[self.alive[row]], self.stack, self.optimizer, self.names, row, self.hp,
                     self.optimizer.param_groups[0]["lr"], step, evals, best)

    def keep(self, rows: list[int]) -> None:
        self.alive = [self.alive[r] for r in rows]
        self.stack, self.optimizer = _keep(self.stack, self.optimizer, self.names, rows, self.hp)

    def progress(self, step: int) -> None:
        if step % self.hp.eval_every == 0 or step == self.hp.train_steps:
            for i in self.alive:
                if self.members[i].hooks and self.members[i].hooks.progress:
                    self.members[i].hooks.progress(step, self.hp.train_steps)

    def finish(self, row: int, result: TrainResult, best: dict | None) -> None:
        m = self.members[self.alive[row]]
        m.model.load_state_dict(self.stack.member_state(row))
        result.checks = _pruned_magnitudes(self.stack, self.optimizer, row)
        if result.early_stop is not None and result.early_stop["test_loss"] is None and best is not None:
            _test_best_weights(m.model, best, self.data, result.early_stop)


def _member_loss(base: nn.Module) -> Callable:
    def loss(params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(torch.func.functional_call(base, (params, buffers), (x,)), y)
    return loss


def _apply(stack: _Stack, grads: bool) -> None:
    """Masks on the weights (grads=False) or on their gradients: one fused multiply for every member."""
    keys = list(stack.masks)
    if grads:
        keys = [k for k in keys if stack.params[k].grad is not None]
        if keys:
            torch._foreach_mul_([stack.params[k].grad for k in keys], [stack.masks[k] for k in keys])
    elif keys:
        with torch.no_grad():
            torch._foreach_mul_([stack.params[k] for k in keys], [stack.masks[k] for k in keys])


def _stacked_optimizer(stack: _Stack, names: list[str], hp: TrainingHparams) -> torch.optim.Optimizer:
    holder = nn.Module()  # build_optimizer takes a module: one parameter per stacked tensor, in the loop's order
    for j, k in enumerate(names):
        holder.register_parameter(f"p{j}", nn.Parameter(stack.params[k], requires_grad=True))
    opt = build_optimizer(holder, hp)
    # nn.Parameter(t) shares t's storage; point the stack at the parameters the optimizer holds
    for j, k in enumerate(names):
        stack.params[k] = getattr(holder, f"p{j}")
    return opt


def _member_optimizer(model: nn.Module, hp: TrainingHparams) -> torch.optim.Optimizer:
    return build_optimizer(model, hp)


def _save_member(member: Member, stack: _Stack, optimizer: torch.optim.Optimizer, names: list[str], r: int,
                 hp: TrainingHparams, lr: float | None, step: int, evals: list[dict], best: dict | None) -> None:
    """Member r's checkpoint in exactly `train`'s format (its own torch optimizer's state dict)."""
    if member.checkpoint is None:
        return
    member.model.load_state_dict(stack.member_state(r))
    opt = _member_optimizer(member.model, hp)
    params = [p for p in member.model.parameters() if p.requires_grad]
    for p, k in zip(params, names):
        stacked = stack.params[k]
        state = optimizer.state.get(stacked, {})
        opt.state[p] = {n: (v[r].clone() if torch.is_tensor(v) and v.shape == stacked.shape else
                            v.clone() if torch.is_tensor(v) else v) for n, v in state.items()}
    if lr is not None:
        for group in opt.param_groups:
            group["lr"] = lr
    rng = torch.Generator().manual_seed(member.data_seed).get_state()  # train's RNG: seeded, never drawn from
    save_checkpoint(member.checkpoint.path, {"model": member.model.state_dict(), "optimizer": opt.state_dict(),
                                             "rng": rng, "step": step, "evals": evals, "best": best})


def _load_optimizer_states(optimizer: torch.optim.Optimizer, stack: _Stack, names: list[str],
                           members: list[Member], hp: TrainingHparams) -> None:
    """The members' checkpointed optimizer states, stacked into the population's optimizer."""
    per_member = []
    for m in members:
        opt = _member_optimizer(m.model, hp)
        opt.load_state_dict(m.state["optimizer"])
        per_member.append([opt.state.get(p, {}) for p in m.model.parameters() if p.requires_grad])
    for j, k in enumerate(names):
        stacked = stack.params[k]
        states = [s[j] for s in per_member]
        if not states[0]:
            continue
        optimizer.state[stacked] = {
            n: (torch.stack([s[n] for s in states]).to(stacked.device)
                if torch.is_tensor(v) and v.shape == stacked.shape[1:] else
                v.clone().to(v.device) if torch.is_tensor(v) else v)
            for n, v in states[0].items()}


def _keep(stack: _Stack, optimizer: torch.optim.Optimizer, names: list[str], rows: list[int],
          hp: TrainingHparams) -> tuple[_Stack, torch.optim.Optimizer]:
    """The stack without the members that left (diverged): rows `rows` of every tensor and optimizer state."""
    index = torch.tensor(rows, device=next(iter(stack.params.values())).device)
    old_state = {k: optimizer.state.get(stack.params[k], {}) for k in names}
    old_shapes = {k: stack.params[k].shape for k in names}
    stack.params = {k: v.detach().index_select(0, index).clone() for k, v in stack.params.items()}
    stack.buffers = {k: v.index_select(0, index).clone() for k, v in stack.buffers.items()}
    stack.masks = {k: v.index_select(0, index).clone() for k, v in stack.masks.items()}
    new = _stacked_optimizer(stack, names, hp)
    for group, old_group in zip(new.param_groups, optimizer.param_groups):
        group["lr"] = old_group["lr"]
    for k in names:
        if old_state[k]:
            new.state[stack.params[k]] = {n: (v.index_select(0, index).clone()
                                              if torch.is_tensor(v) and v.shape == old_shapes[k] else
                                              v.clone() if torch.is_tensor(v) else v)
                                          for n, v in old_state[k].items()}
    return stack, new


@torch.inference_mode()
def evaluate_all(base: nn.Module, params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor
                 ) -> tuple[list[float], list[float]]:
    """(mean cross-entropy, accuracy) of every stacked member on (x, y), all members at once per chunk."""
    n = len(next(iter(params.values())))
    if len(x) == 0:
        return [float("nan")] * n, [float("nan")] * n
    chunk = max(64, eval_batch_size(base) * 16 // max(16, n))
    forward = torch.func.vmap(lambda p, b, xc: torch.func.functional_call(base, (p, b), (xc,)), in_dims=(0, 0, None))
    was_training = base.training
    base.eval()
    loss_sum = torch.zeros(n, device=x.device)
    correct = torch.zeros(n, device=x.device, dtype=torch.int64)
    for i in range(0, len(x), chunk):
        out = forward(params, buffers, x[i:i + chunk])  # [n, b, classes]
        target = y[i:i + chunk]
        loss_sum += nn.functional.cross_entropy(out.transpose(1, 2), target.expand(n, -1), reduction="none").sum(1)
        correct += (out.argmax(2) == target).sum(1)
    base.train(was_training)
    # divided in Python, as `evaluate` does, so equal sums give equal figures
    return [v / len(x) for v in loss_sum.tolist()], [c / len(x) for c in correct.tolist()]


def _evaluate_all(base: nn.Module, stack: _Stack, data: DataSplits, step: int, test: bool) -> list[dict]:
    params = {k: v.detach() for k, v in stack.params.items()}
    val_loss, val_acc = evaluate_all(base, params, stack.buffers, data.val_x, data.val_y)
    n = len(val_loss)
    test_loss, test_acc = (evaluate_all(base, params, stack.buffers, data.test_x, data.test_y) if test
                           else ([None] * n, [None] * n))
    return [{"step": step, "val_loss": val_loss[r], "val_accuracy": val_acc[r], "test_loss": test_loss[r],
             "test_accuracy": test_acc[r]} for r in range(n)]


def _pruned_magnitudes(stack: _Stack, optimizer: torch.optim.Optimizer, r: int) -> dict[str, float]:
    """MaskApplier.pruned_magnitudes for member row r: largest |weight|, |grad|, |state| where it is pruned."""
    out = {"weight": 0.0, "grad": 0.0, "optimizer_state": 0.0}
    with torch.no_grad():
        for k, masks in stack.masks.items():
            pruned = masks[r] == 0
            if not bool(pruned.any()):
                continue
            p = stack.params[k]
            out["weight"] = max(out["weight"], p[r][pruned].abs().max().item())
            if p.grad is not None:
                out["grad"] = max(out["grad"], p.grad[r][pruned].abs().max().item())
            for value in optimizer.state.get(p, {}).values():
                if torch.is_tensor(value) and value.shape == p.shape:
                    out["optimizer_state"] = max(out["optimizer_state"], value[r][pruned].abs().max().item())
    return out
