"""Schedules: the density after each round when pruning from one density to another in several rounds.

A schedule maps (start density, target density, rounds) to the list of densities after rounds 1..T; its
last entry is the target exactly, so a schedule never changes where pruning ends, only the path to it.
A round's density becomes counts by the allocation, rounded by hp.rounding (allocation.kept_count). IMP's
own path, level by level at hp's rates (and hp.counting), is `imp_ladder`.
"""

from __future__ import annotations

from typing import Callable

from ..config import PruningHparams
from ..errors import TicketlabError
from .allocation import LayerInfo, ladder_density
from .registry import Registry

Schedule = Callable[[float, float, int], list[float]]
SCHEDULES: Registry = Registry("schedule")
register_schedule = SCHEDULES.register


def _check_rounds(rounds: int) -> None:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise TicketlabError(f"rounds must be a whole number >= 1, got {rounds!r}")


@register_schedule("oneshot")
def oneshot(start: float, target: float, rounds: int) -> list[float]:
    """Straight to the target in one round, whatever `rounds` says."""
    _check_rounds(rounds)
    return [target]


@register_schedule("exponential")
def exponential(start: float, target: float, rounds: int) -> list[float]:
    """start * (target / start)^(t / T), t = 1..T: the same fraction pruned each round (SynFlow's; from
    start 1, d^(t / T) bit for bit as Synaptic-Flow's prune_loop computes it)."""
    _check_rounds(rounds)
    if start <= 0:
        raise TicketlabError(f"an exponential schedule needs a start density > 0, got {start}")
    return [start * (target / start) ** (t / rounds) for t in range(1, rounds)] + [target]


@register_schedule("linear")
def linear(start: float, target: float, rounds: int) -> list[float]:
    """The same number of weights pruned each round."""
    _check_rounds(rounds)
    return [start + (target - start) * t / rounds for t in range(1, rounds)] + [target]


def imp_ladder(layers: dict[str, LayerInfo], hp: PruningHparams, levels: int) -> list[float]:
    """IMP's densities after levels 1..`levels` at hp's rates (see `ladder_density`)."""
    return [ladder_density(layers, hp, level) for level in range(1, levels + 1)]
