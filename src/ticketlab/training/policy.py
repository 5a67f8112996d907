"""Mask policies: what a pruning method adds to the one training loop (training/loop.py).

The loop owns everything every method needs alike: the batches (and their augmentation), the LR schedule's
application, evaluation on its schedule, early stopping, divergence checks, checkpoints and exact resume. A
method differs only in what it does at these fixed points (after jaxpruner's updaters: a method is an
object the loop calls, never a copy of the loop):

    net = policy.network(model)            the module the loop calls: the model itself, or a wrapper that
                                           applies scores (edge-popup) to frozen weights
    optimizer = policy.optimizer(net, hp)  over the tensors this method trains (weights, or scores)
    policy.start(net, optimizer)           once the starting or resumed state is in place
    each step s:
        policy.before_forward(s, net)      e.g. draw this step's Bernoulli mask (supermask)
        forward -> loss -> backward
        policy.after_backward(s, net)      mask the gradients (RigL first keeps the dense gradient)
        optimizer.step()                   unless policy.skips_step(s) (RigL's update steps)
        policy.after_step(s, net, opt)     re-apply masks; drop-and-grow every N steps; zero moments
    policy.evaluation(net)                 the module evaluated (its deterministic mask)
    policy.settled(s)                      whether an evaluation at s may be the early-stopping point
    policy.finish(net, optimizer, result)  the method's own checks into result.checks

A policy that changes masks during training keeps them in its own state: `state_dict`/`load_state_dict`
go into the loop's checkpoint, so a killed run resumes bit-identically. A new method is one policy class
and one registration (`register_policy`).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..config import TrainingHparams
from ..masks import Mask, MaskApplier
from .optim import build_optimizer, lr_at


class MaskPolicy:
    """Dense training: the model trains as it is. Subclasses override the points they act at."""

    name = "dense"

    def network(self, model: nn.Module) -> nn.Module:
        return model

    def optimizer(self, net: nn.Module, hp: TrainingHparams) -> torch.optim.Optimizer:
        return build_optimizer(net, hp)

    def lr(self, hp: TrainingHparams, step: int) -> float:
        """The LR of the update made at `step` (a pure function of the step: resume needs no scheduler)."""
        return lr_at(hp, step)

    def start(self, net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        pass

    def before_forward(self, step: int, net: nn.Module) -> None:
        pass

    def after_backward(self, step: int, net: nn.Module) -> None:
        pass

    def skips_step(self, step: int) -> bool:
        """True: no optimizer step at `step` (the gradients are only read, e.g. by a mask update)."""
        return False

    def after_step(self, step: int, net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        pass

    def evaluation(self, net: nn.Module) -> nn.Module:
        return net

    def settled(self, step: int) -> bool:
        """False while the mask is still on its way to the method's subnetwork (gradual pruning before its last
        update): evaluations then are recorded ("mask_settled": false) but never chosen for early stopping."""
        return True

    def finish(self, net: nn.Module, optimizer: torch.optim.Optimizer, result: Any) -> None:
        pass

    def load_checkpoint(self, net: nn.Module, state: dict[str, Any]) -> None:
        """Put a checkpoint's network (and this policy's own state) back; the loop restores the rest."""
        net.load_state_dict(state["model"])
        self.load_state_dict(state.get("policy", {}))

    def state_dict(self) -> dict[str, Any]:
        """What the policy changes while training (a mask that moves), saved in the loop's checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class StaticMask(MaskPolicy):
    """A fixed mask (IMP levels, controls, pruning at init, a ticket file): pruned weights, their gradients
    and their optimizer state (Adam moments, momentum) are exactly 0 at every step; `finish` measures it."""

    name = "static"

    def __init__(self, mask: Mask):
        self.mask = mask
        self.applier: MaskApplier | None = None

    def network(self, model: nn.Module) -> nn.Module:
        self.applier = MaskApplier(model, self.mask)
        self.applier.weights()
        return model

    def start(self, net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.applier.optimizer_state(optimizer)

    def after_backward(self, step: int, net: nn.Module) -> None:
        self.applier.grads()

    def after_step(self, step: int, net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.applier.weights()

    def finish(self, net: nn.Module, optimizer: torch.optim.Optimizer, result: Any) -> None:
        result.checks = self.applier.pruned_magnitudes(optimizer)


POLICIES: dict[str, Callable[..., MaskPolicy]] = {"dense": MaskPolicy, "static": StaticMask}


def register_policy(name: str) -> Callable:
    """Decorator: `@register_policy("rigl") class RigL(MaskPolicy): ...`; one name per class."""
    def add(cls: Callable[..., MaskPolicy]) -> Callable[..., MaskPolicy]:
        if name in POLICIES and POLICIES[name] is not cls:
            raise ValueError(f"mask policy {name!r} is registered twice")
        POLICIES[name] = cls
        return cls
    return add
