"""Pruning as four swappable axes (after jaxpruner), each one signature and one registry:

- scorers.py    which weights are worth keeping: (model, batch, mask, generator) -> scores   SCORERS
- allocation.py how many survive per group of layers at a density: -> Budget                ALLOCATIONS
- schedules.py  the densities of successive rounds: (start, target, rounds) -> [density]      SCHEDULES
- structure.py  scores + budget -> mask: exact top-k, deterministic ties, never revives

`prune` (prune.py) composes them. IMP level L: prune(model holding level L-1's final weights, its mask,
density=ladder_density(layers_of(model), hp, L), scorer="magnitude", allocation=hp.strategy, hp=hp).
"""

from .allocation import (ALLOCATIONS, REVISIONS, Allocation, Budget, LayerInfo, budget_counts, kept_count,
                         ladder_density, layer_rates, layers_of, openlth_remaining, register_allocation,
                         round_half_up)
from .prune import budget_for, prune
from .schedules import SCHEDULES, Schedule, imp_ladder, register_schedule
from .scorers import SCORERS, Batch, Scorer, register_scorer
from .structure import apply_budget, budget_met, keep_top_k
from . import grasp, snip, synflow  # noqa: F401,E402  (registration of the pruning-at-initialisation scorers)

__all__ = ["prune", "budget_for", "apply_budget", "budget_met", "keep_top_k", "round_half_up", "kept_count",
           "layer_rates", "ladder_density", "openlth_remaining", "REVISIONS", "imp_ladder", "LayerInfo", "layers_of",
           "budget_counts", "SCORERS", "ALLOCATIONS", "SCHEDULES", "register_scorer", "register_allocation",
           "register_schedule", "Scorer", "Allocation", "Schedule", "Budget", "Batch"]
