"""`prune`: one call that composes the four axes of pruning (after jaxpruner).

For each density of the schedule (from the mask's density to the target, in `rounds` rounds):
    scores = scorer(model, batch, mask, generator)      # which weights are worth keeping
    budget = allocation(layers, density, hp)            # how many survive, per group of layers
    mask   = apply_budget(scores, mask, budget)         # exact top-k; pruned weights never revive
Each axis takes a registered name or a callable. IMP level L is one call: the model holding level L-1's
final weights, its mask, density=ladder_density(layers, hp, L), scorer "magnitude", allocation hp.strategy.
Every round's counts are rounded by one rule, hp.rounding (allocation.kept_count): nearest by default, or
synaptic-flow, Synaptic-Flow's n - int((1 - d) n) at each round's density (its 100 SynFlow rounds included).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..config import PruningHparams
from ..errors import TicketlabError
from ..masks import Mask
from .allocation import ALLOCATIONS, Allocation, Budget, LayerInfo, check_density, layers_of
from .schedules import SCHEDULES, Schedule
from .scorers import SCORERS, Batch, Scorer
from .structure import apply_budget


def prune(model: nn.Module, mask: Mask | None = None, *, density: float, scorer: str | Scorer = "magnitude",
          allocation: str | Allocation = "global", hp: PruningHparams = PruningHparams(),
          batch: Batch | None = None, schedule: str | Schedule = "oneshot", rounds: int = 1,
          generator: torch.Generator | None = None) -> Mask:
    """The mask at `density` (fraction of all prunable weights kept), pruned from `mask` (None: all kept).
    `allocation` defaults to one global ranking, as `compare` prunes at initialisation and as Synaptic-Flow
    does; IMP's levels pass their config's strategy (the LTH paper's is layer-wise). `generator` feeds random
    scorers (None: a CPU generator seeded 0, so a call is reproducible)."""
    mask = Mask.ones(model) if mask is None else mask
    mask.check_matches(model)
    check_density(density)
    score, allocate, path = SCORERS.resolve(scorer), ALLOCATIONS.resolve(allocation), SCHEDULES.resolve(schedule)
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    layers = layers_of(model)
    for step_density in path(mask.density(), density, rounds):
        budget = allocate(layers, step_density, hp)  # before scoring: a bad density fails fast
        scores = _checked_scores(score, SCORERS.name_of(scorer), model, batch, mask, generator)
        mask = apply_budget(scores, mask, budget)
    return mask


def budget_for(source: nn.Module | Mask | dict[str, LayerInfo], density: float,
               allocation: str | Allocation = "layerwise", hp: PruningHparams = PruningHparams()) -> Budget:
    """The Budget `prune` would cut to at `density` (for callers that record the requested counts)."""
    layers = source if isinstance(source, dict) else layers_of(source)
    return ALLOCATIONS.resolve(allocation)(layers, density, hp)


def _checked_scores(score: Callable, name: str, model: nn.Module, batch: Batch | None, mask: Mask,
                    generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The scorer's scores, after checking it left the model as it was and scored every prunable weight."""
    before = _snapshot(model)
    scores = score(model, batch, mask, generator)
    changed = _changes(before, _snapshot(model))
    if changed:
        raise RuntimeError(f"scorer {name!r} changed the model ({'; '.join(changed)}): a scorer must leave "
                           "weights, buffers, train/eval mode, gradients and the global RNG as it found them")
    shapes = {k: tuple(v.shape) for k, v in scores.items()} if isinstance(scores, dict) else None
    if shapes != {k: tuple(t.shape) for k, t in mask.tensors.items()}:
        raise TicketlabError(f"scorer {name!r} must return one score tensor per prunable weight, of its shape; "
                             f"got {shapes}")
    return scores


def _snapshot(model: nn.Module) -> dict[str, Any]:
    rng = [torch.get_rng_state()]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng += torch.cuda.get_rng_state_all()
    return {"state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "mode": [m.training for m in model.modules()],
            "grads": {k: None if p.grad is None else p.grad.detach().clone() for k, p in model.named_parameters()},
            "rng": rng}


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Bit-for-bit equal values, NaN equal to NaN."""
    if a is None or b is None:
        return a is b
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.is_floating_point() or a.is_complex():
        return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
    return torch.equal(a, b)


def _changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two snapshots, in words."""
    out = []
    for what in ("state", "grads"):
        keys = sorted(set(before[what]) | set(after[what]))
        diff = [k for k in keys if k not in before[what] or k not in after[what]
                or not _same(before[what][k], after[what][k])]
        if diff:
            out.append(f"{'weights/buffers' if what == 'state' else 'gradients'} of {', '.join(diff)}")
    if before["mode"] != after["mode"]:
        out.append("train/eval mode")
    if len(before["rng"]) != len(after["rng"]) or not all(map(torch.equal, before["rng"], after["rng"])):
        out.append("global RNG state")
    return out
