"""Masks that change while the network trains: dynamic sparse training and gradual pruning, as mask
policies of the one training loop (training/policy.py). REFERENCE.md sections 11 and 13 give the published
rules; where the references differ, the choice is a named field of `DynamicSpec`.

    set            SET (Mocanu et al. 2018): of each layer, drop the fraction zeta of its positive weights
                   closest to zero and of its negative weights closest to zero; regrow as many at random
    set-magnitude  SET as RigL's and jaxpruner's baselines implement it: drop the smallest |w|, regrow at random
    rigl           RigL (Evci et al. 2020): drop the smallest |w|, grow the largest |dense gradient| (the
                   gradient of the loss with respect to w * m on the update step's batch), drop fraction
                   alpha/2 (1 + cos(pi t / T_end)); the optimizer step is skipped on update steps
    gmp            gradual magnitude pruning (Zhu & Gupta 2017): dense start, sparsity
                   s_t = s_f + (s_i - s_f)(1 - (t - t0)/(t_end - t0))^3, pruning every `every` steps
    deepr          DEEP R (Bellec et al. 2018): each weight w = s * theta with a fixed sign s (the initial
                   weight's); after each optimizer step, active theta get theta -= lr * l1 and
                   theta += lr * noise * N(0, 1) (temperature T = lr * noise^2 / 2); a theta at or below 0
                   goes dormant (w = 0), and as many random dormant ones wake at theta = 1e-12, so each layer
                   keeps exactly K active after every step

Every update keeps each layer's active count exactly (set, rigl; gmp follows its schedule to the weight),
sets the weights, gradients and optimizer moments of inactive weights to exactly 0 (a grown weight starts at 0
with zero moments; a weight dropped and regrown in one update, allowed only with regrow_dropped, keeps both),
and is a function of the step alone (random growth draws from a generator seeded by the step and layer), so
the masks in the checkpoint are all a killed run needs to resume bit-identically. Ties are broken by the lower
flat index (a stable sort), as jaxpruner does (google-research/rigl adds 1e-5 noise instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import TicketlabError
from ..masks import Mask, MaskApplier, prunable, top_k as top
from ..seeds import derive_seed
from .cost import dense_counts, forward_flops, uses_per_example
from .policy import StaticMask, register_policy

SCHEDULES = ("cosine", "constant")
COUNTINGS = ("floor", "round")  # google-research/rigl's floor(f * active); jaxpruner's float32 round-half-even


@dataclass(frozen=True)
class DynamicSpec:
    method: str  # METHODS
    every: int = 100  # steps between mask updates (Delta T; gmp: Delta t)
    fraction: float = 0.3  # drop fraction at t = 0 (alpha, SET's zeta)
    schedule: str = "cosine"  # of the drop fraction: cosine to 0 at `end`, or constant
    begin: float = 0.0  # fraction of training before the first update (gmp's t0)
    end: float = 0.75  # fraction of training after which the masks stay as they are (T_end; gmp's t_end)
    counting: str = "floor"  # COUNTINGS
    regrow_dropped: bool = False  # may a weight dropped in an update be regrown in it (both references: yes)
    skip_update_step: bool = False  # no optimizer step on an update step (RigL in both references)
    l1: float = 1e-5  # DEEP R's alpha (its code's default)
    noise: float = 1e-5  # DEEP R's gdnoise sigma_n: the noise added is lr * sigma_n * N(0, 1)

    def check(self) -> None:
        if self.method not in METHODS:
            raise TicketlabError(f"unknown dynamic sparse method {self.method!r}; choose from: {', '.join(METHODS)}")
        if self.every < 1:
            raise TicketlabError(f"the mask update interval must be >= 1 step, got {self.every}")
        if not 0 <= self.fraction < 1:
            raise TicketlabError(f"the drop fraction must be in [0, 1), got {self.fraction}")
        if self.schedule not in SCHEDULES or self.counting not in COUNTINGS:
            raise TicketlabError(f"schedule must be one of {SCHEDULES}, counting one of {COUNTINGS}")
        if not 0 <= self.begin <= self.end <= 1:
            raise TicketlabError(f"need 0 <= begin <= end <= 1, got begin {self.begin}, end {self.end}")
        if self.method == "deepr" and (self.every, self.begin, self.end) != (1, 0.0, 1.0):
            raise TicketlabError("DEEP R rewires after every step of training (every 1, begin 0, end 1): a step "
                                 "that crosses zero must make its link dormant at once, or a sign would flip")
        if not (0 <= self.l1 < math.inf and 0 <= self.noise < math.inf):
            raise TicketlabError(f"DEEP R's l1 and noise must be >= 0 and finite, got {self.l1}, {self.noise}")


# Each method's published defaults (REFERENCE.md 11, 13); SET's zeta = 0.3 with a constant fraction.
METHODS: dict[str, DynamicSpec] = {
    "set": DynamicSpec("set", schedule="constant"),
    "set-magnitude": DynamicSpec("set-magnitude", schedule="constant"),
    "rigl": DynamicSpec("rigl", skip_update_step=True),
    "gmp": DynamicSpec("gmp", every=100, begin=0.0, end=0.75),
    "deepr": DynamicSpec("deepr", every=1, fraction=0.0, schedule="constant", end=1.0),
}
WAKE = 1e-12  # DEEP R's theta of a link that wakes


def drop_fraction(spec: DynamicSpec, step: int, end_step: int) -> float:
    if spec.schedule == "constant":
        return spec.fraction
    return spec.fraction / 2 * (1 + math.cos(math.pi * min(step, end_step) / max(end_step, 1)))


def gmp_sparsity(final: float, step: int, begin_step: int, end_step: int) -> float:
    """Zhu & Gupta's cubic schedule from s_i = 0 at begin_step to `final` at end_step."""
    if step <= begin_step:
        return 0.0
    progress = min(1.0, (step - begin_step) / max(end_step - begin_step, 1))
    return final * (1 - (1 - progress) ** 3)


def drop_count(spec: DynamicSpec, fraction: float, active: int, size: int) -> int:
    """How many of a layer's `active` weights (of `size`) an update drops."""
    if spec.counting == "floor":
        return int(math.floor(fraction * active))
    density = np.float32(active / size)
    keep = np.rint(np.float32(size) * (np.float32(1) - (np.float32(1) - density * (np.float32(1) -
                                                                                   np.float32(fraction)))))
    return max(0, active - int(keep))


def draw_dormant(active: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n distinct flat positions drawn uniformly among those not `active` (there must be at least n): the
    first n distinct inactive ones of a seeded uniform sequence, so no full permutation of a layer per step."""
    chosen: dict[int, None] = {}
    size = active.numel()
    while len(chosen) < n:
        draws = torch.randint(size, (4 * (n - len(chosen)) + 16,), generator=generator)
        for i in draws[~active[draws.to(active.device)].cpu()].tolist():
            chosen.setdefault(i, None)
            if len(chosen) == n:
                break
    return torch.tensor(list(chosen), dtype=torch.long)


@register_policy("dynamic")
class DynamicMask(StaticMask):
    """A mask changed every `spec.every` steps. `mask`: the starting mask (set, rigl: a random mask at the
    target densities; gmp: all ones) and `targets`: each layer's final active count. Counts training FLOPs
    as it goes (training/cost.py): `flops` after training."""

    name = "dynamic"

    def __init__(self, mask: Mask, spec: DynamicSpec, targets: dict[str, int], train_steps: int, seed: int,
                 input_shape: tuple[int, ...], batch_size: int):
        spec.check()
        super().__init__(Mask({k: v.clone() for k, v in mask.tensors.items()}))
        self.spec, self.targets, self.seed = spec, targets, seed
        self.input_shape, self.batch_size = input_shape, batch_size
        self.begin_step = int(spec.begin * train_steps)
        self.end_step = int(spec.end * train_steps)
        if spec.method == "gmp":  # t_end = t0 + n * Delta t: the last pruning step reaches the final sparsity
            self.end_step = self.begin_step + (self.end_step - self.begin_step) // spec.every * spec.every
        self.flops = 0
        self.updates = 0
        self.grads: dict[str, torch.Tensor] = {}
        self.last: dict[str, Any] = {}  # the latest update, per layer: dropped, grown (tests read it)

    # ---- the loop's points ---------------------------------------------------------------------------------

    def network(self, model: nn.Module) -> nn.Module:
        self.net = model
        self.params = prunable(model)
        self.uses = uses_per_example(model, self.input_shape)
        self.dense_f = forward_flops(self.uses, dense_counts(model))
        # DEEP R's fixed signs: the initial weights' (random, symmetric)
        self.signs = {k: self._sign(k, p.detach()) for k, p in self.params.items()} if self.spec.method == "deepr" \
            else {}
        self._install(model)
        self.applier.weights()
        return model

    def _sign(self, name: str, w: torch.Tensor) -> torch.Tensor:
        """The initial weight's sign; a weight that starts at 0 (outside the starting mask) draws one, seeded."""
        g = torch.Generator().manual_seed(derive_seed(self.seed, "sign", name))
        drawn = torch.where(torch.rand(w.shape, generator=g) < 0.5, -1.0, 1.0).to(w.device, w.dtype)
        return torch.where(w < 0, -1.0, torch.where(w > 0, 1.0, drawn)).to(w.dtype)

    def updates_at(self, step: int) -> bool:
        return step % self.spec.every == 0 and self.begin_step <= step <= self.end_step

    def settled(self, step: int) -> bool:
        """set, rigl: every mask holds the target counts; gmp: only after its last pruning step."""
        return self.spec.method != "gmp" or step > self.end_step

    def skips_step(self, step: int) -> bool:
        return self.spec.skip_update_step and self.updates_at(step)

    def after_backward(self, step: int, net: nn.Module) -> None:
        if self.spec.method == "rigl" and self.updates_at(step):
            # the gradient with respect to w * m: the weights hold w * m (inactive ones are 0), so it is
            # p.grad before the gradients are masked (after, it is 0 where inactive and cannot rank growth)
            self.grads = {k: p.grad.detach().clone() for k, p in self.params.items()}
        self.applier.grads()

    def after_step(self, step: int, net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.applier.weights()
        f = self.forward_f  # of the mask this step trained with (recomputed only when the mask changes)
        self.flops += (2 * f + self.dense_f if self.skips_step(step) else 3 * f) * self.batch_size
        if self.updates_at(step):
            if self.spec.method == "deepr":
                self.rewire(step, optimizer.param_groups[0]["lr"])
            else:
                self.update(step)
            self.applier.weights()
            self.applier.grads()
            self.applier.optimizer_state(optimizer)
            self.grads = {}

    # ---- the update ----------------------------------------------------------------------------------------

    def update(self, step: int) -> None:
        """Drop and grow (set, rigl) or prune to the schedule's sparsity (gmp), layer by layer."""
        self.updates += 1
        self.last = {}
        with torch.no_grad():
            for name, p in self.params.items():
                old = self.mask.tensors[name]
                new = self._gmp(name, p, old, step) if self.spec.method == "gmp" else self._drop_grow(name, p, old,
                                                                                                    step)
                self.last[name] = {"dropped": old & ~new, "grown": new & ~old}
                self.mask.tensors[name] = new
        self._install(self.net)

    def rewire(self, step: int, lr: float) -> None:
        """DEEP R after the optimizer's step: L1 and noise on the active theta = s * w, dormant where theta <= 0
        (a step that crossed zero ends there too: a sign never flips), then random dormant links (a link that
        died in this step among them, as in DEEP R's code) wake until each layer has its K again."""
        self.updates += 1
        self.last = {}
        changed = False
        with torch.no_grad():
            for name, p in self.params.items():
                old, s = self.mask.tensors[name], self.signs[name]
                g = torch.Generator(device=p.device).manual_seed(derive_seed(self.seed, "noise", step, name))
                theta = s * p - lr * self.spec.l1 + lr * self.spec.noise * torch.randn(p.shape, generator=g,
                                                                                        device=p.device, dtype=p.dtype)
                alive = old & (theta > 0)
                missing = self.targets[name] - int(alive.sum())
                if missing > 0:  # wake `missing` links drawn uniformly among the dormant ones (as DEEP R's code)
                    g = torch.Generator().manual_seed(derive_seed(self.seed, "wake", step, name))
                    woken = torch.zeros(p.numel(), dtype=torch.bool, device=p.device)
                    woken[draw_dormant(alive.flatten(), missing, g).to(p.device)] = True
                    woken = woken.view_as(p)
                    theta = torch.where(woken, torch.full_like(theta, WAKE), theta)
                    new = alive | woken
                    changed = True
                else:
                    new, woken = alive, torch.zeros_like(alive)
                p.copy_(torch.where(new, s * theta, torch.zeros_like(p)))
                self.last[name] = {"dropped": old & ~new, "grown": woken}
                self.mask.tensors[name] = new
        if changed:
            self._install(self.net)

    def _gmp(self, name: str, p: torch.Tensor, old: torch.Tensor, step: int) -> torch.Tensor:
        size = p.numel()
        final = 1 - self.targets[name] / size
        keep = int(round(size * (1 - gmp_sparsity(final, step, self.begin_step, self.end_step))))
        if step == self.end_step:
            keep = self.targets[name]  # the schedule's end: the budget exactly (not a float's rounding of it)
        keep = min(keep, int(old.sum()))  # pruned weights never come back
        return top(torch.where(old, p.abs(), -torch.inf), keep)

    def _drop_grow(self, name: str, p: torch.Tensor, old: torch.Tensor, step: int) -> torch.Tensor:
        active, size = int(old.sum()), p.numel()
        fraction = drop_fraction(self.spec, step, self.end_step)
        if self.spec.method == "set":  # positive and negative weights closest to zero, each its own fraction
            positive, negative = old & (p >= 0), old & (p < 0)
            n_pos = drop_count(self.spec, fraction, int(positive.sum()), size)
            n_neg = drop_count(self.spec, fraction, int(negative.sum()), size)
            if n_pos + n_neg > (room := self._room(n_pos + n_neg, active, size)):
                n_pos = n_pos * room // (n_pos + n_neg)
                n_neg = room - n_pos
            dropped = top(torch.where(positive, -p, -torch.inf), n_pos) | top(torch.where(negative, p, -torch.inf),
                                                                              n_neg)
        else:
            n_drop = self._room(drop_count(self.spec, fraction, active, size), active, size)
            dropped = old & ~top(torch.where(old, p.abs(), -torch.inf), active - n_drop)
        n = int(dropped.sum())
        kept = old & ~dropped
        candidates = ~kept if self.spec.regrow_dropped else ~old
        if self.spec.method == "rigl":
            score = self.grads[name].abs()
        else:
            g = torch.Generator().manual_seed(derive_seed(self.seed, "grow", step, name))
            score = torch.rand(p.shape, generator=g).to(p.device)
        grown = top(torch.where(candidates, score, -torch.inf), n)
        return kept | grown

    def _room(self, n: int, active: int, size: int) -> int:
        """Without regrow_dropped, growth chooses among the weights inactive before the update, so an update
        drops at most that many (a layer denser than 1 / (1 + fraction) drops fewer than the fraction)."""
        return n if self.spec.regrow_dropped else min(n, size - active)

    def _install(self, model: nn.Module) -> None:
        self.mask = Mask({k: v.to(self.params[k].device) for k, v in self.mask.tensors.items()})
        self.applier = MaskApplier(model, self.mask)
        self.forward_f = forward_flops(self.uses, self.mask.counts())

    # ---- resume --------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        # DEEP R's signs are the initial weights': rebuilt from them on resume, never stored
        return {"masks": {k: v.cpu() for k, v in self.mask.tensors.items()}, "flops": self.flops,
                "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.mask = Mask(state["masks"])
        self.flops, self.updates = int(state["flops"]), int(state["updates"])
        self._install(self.net)
