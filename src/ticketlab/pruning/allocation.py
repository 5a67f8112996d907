"""Allocation: how many weights survive, per group of layers, at a target density.

An allocation maps (layers, density, hparams) to a Budget: group of layer names -> survivors among them.
A group of one layer is cut by its own ranking (layer-wise); a group of several is cut by one ranking
across them (global). The density is the fraction of ALL prunable weights kept, ignored layers included.

Layer-wise pruning keeps the paper's per-layer rates at any density: it solves for the real level L
with sum_l n_l (1 - r_l)^L = density * N, so the densities of IMP's ladder give exactly the closed-form
counts round(n_l (1 - r_l)^L) of integer levels (LeNet 20/20/10%: 51.3% after 3 levels, 3.6% after 15).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..config import PruningHparams
from ..errors import TicketlabError
from ..masks import Mask, layer_kind, prunable
from .registry import Registry


@dataclass(frozen=True)
class LayerInfo:
    size: int  # number of weights
    shape: tuple[int, ...]
    kind: str  # 'linear' | 'conv'


Budget = dict[tuple[str, ...], int]  # group of layer names -> survivors among them
Allocation = Callable[[dict[str, LayerInfo], float, PruningHparams], Budget]
ALLOCATIONS: Registry = Registry("allocation")
register_allocation = ALLOCATIONS.register


def layers_of(source: nn.Module | Mask) -> dict[str, LayerInfo]:
    """name -> LayerInfo of each prunable weight, in registration order (last = output layer).
    A Mask works too: its tensors have the weights' shapes (kind by dimension, as `layer_kind`)."""
    if isinstance(source, Mask):
        return {k: LayerInfo(t.numel(), tuple(t.shape), "linear" if t.dim() == 2 else "conv")
                for k, t in source.tensors.items()}
    kinds = layer_kind(source)
    return {k: LayerInfo(p.numel(), tuple(p.shape), kinds[k]) for k, p in prunable(source).items()}


def round_half_up(x: float) -> int:
    """Nearest integer, halves up; a value a few ulps under a half (float error of an exact half) counts as
    the half, so e.g. 0.37 * N computed two ways rounds the same way."""
    return math.floor(x + 0.5 + max(1e-9, 1e-12 * abs(x)))


def check_density(density: float) -> None:
    if not 0 < density <= 1:  # also refuses NaN
        raise TicketlabError(f"density must be in (0, 1] (the fraction of prunable weights kept), got {density}")


def layer_rates(hp: PruningHparams, kinds: dict[str, str]) -> dict[str, float]:
    """The pruning rate of each prunable weight: override > output layer > conv > default; ignored: 0."""
    names = list(kinds)
    unknown = [n for n, _ in hp.layer_rates if n not in kinds] + [n for n in hp.ignore if n not in kinds]
    if unknown:
        raise TicketlabError(f"pruning names unknown layer(s) {', '.join(unknown)}; prunable: {', '.join(names)}")
    rates = {}
    for name in names:
        rate = hp.conv_rate if kinds[name] == "conv" and hp.conv_rate is not None else hp.rate
        if name == names[-1] and hp.output_rate is not None:
            rate = hp.output_rate
        rates[name] = rate
    rates.update(dict(hp.layer_rates))
    rates.update({name: 0.0 for name in hp.ignore})
    return rates


def _rates(layers: dict[str, LayerInfo], hp: PruningHparams) -> dict[str, float]:
    return layer_rates(hp, {k: info.kind for k, info in layers.items()})


def _kept(layers: dict[str, LayerInfo], rates: dict[str, float], level: float) -> float:
    """sum_l n_l (1 - r_l)^level: IMP's survivors after `level` rounds, unrounded."""
    return math.fsum(info.size * (1 - rates[k]) ** level for k, info in layers.items())


def ladder_density(layers: dict[str, LayerInfo], hp: PruningHparams, level: float) -> float:
    """IMP's density after `level` rounds at hp's rates, unrounded. Layer-wise: each layer at its own rate
    (`layer_rates`); any other allocation (global, uniform, a user's): one rate `hp.rate` over the pooled
    layers, ignored layers kept."""
    total = sum(info.size for info in layers.values())
    rates = _rates(layers, hp)  # also checks the layer names the config gives
    if hp.strategy != "layerwise":
        rates = {k: 0.0 if k in hp.ignore else hp.rate for k in layers}
    return _kept(layers, rates, level) / total


def _solve_level(layers: dict[str, LayerInfo], rates: dict[str, float], target: float) -> float:
    """The real L >= 0 with _kept(L) = target (decreasing in L), by bisection; snapped to an integer within
    1e-9 so that ladder densities reproduce integer levels exactly."""
    lo, hi = 0.0, 1.0
    while _kept(layers, rates, hi) > target:
        lo, hi = hi, 2 * hi
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if _kept(layers, rates, mid) > target else (lo, mid)
    level = (lo + hi) / 2
    return round(level) if abs(level - round(level)) < 1e-9 else level


@register_allocation("layerwise")
def layerwise(layers: dict[str, LayerInfo], density: float, hp: PruningHparams) -> Budget:
    """One group per layer; layer l keeps round(n_l (1 - r_l)^L), L solved so the total is density * N."""
    check_density(density)
    rates = _rates(layers, hp)
    total = sum(info.size for info in layers.values())
    fixed = sum(info.size for k, info in layers.items() if 1 - rates[k] == 1.0)  # rate 0 or ignored
    if density < 1 and density * total <= fixed:
        raise TicketlabError(f"density {density} is out of reach of layer-wise pruning at these rates: the layers "
                             f"with rate 0 or ignored keep {fixed / total:.4g} of the weights")
    level = 0 if density == 1 else _solve_level(layers, rates, density * total)
    return {(k,): round_half_up(info.size * (1 - rates[k]) ** level) for k, info in layers.items()}


def _pooled_share(layers: dict[str, LayerInfo], density: float, hp: PruningHparams) -> tuple[list[str], float]:
    """(the non-ignored layers, how many of their weights survive, unrounded) when ignored layers keep all."""
    check_density(density)
    _rates(layers, hp)  # checks the names hp gives
    pooled = [k for k in layers if k not in hp.ignore]
    total = sum(info.size for info in layers.values())
    kept = density * total - sum(layers[k].size for k in hp.ignore)
    if kept < -1e-9 * total or (not pooled and density < 1):
        raise TicketlabError(f"density {density} is below the share of the ignored layers "
                             f"({', '.join(hp.ignore)}), which keep all their weights")
    return pooled, max(kept, 0.0)


def _ignored(layers: dict[str, LayerInfo], hp: PruningHparams) -> Budget:
    return {(k,): layers[k].size for k in hp.ignore}


@register_allocation("global")
def global_(layers: dict[str, LayerInfo], density: float, hp: PruningHparams) -> Budget:
    """One group of all non-ignored layers, ranked together; each ignored layer kept whole. Rates unused."""
    pooled, kept = _pooled_share(layers, density, hp)
    size = sum(layers[k].size for k in pooled)
    return {**({tuple(pooled): min(round_half_up(kept), size)} if pooled else {}), **_ignored(layers, hp)}


@register_allocation("uniform")
def uniform(layers: dict[str, LayerInfo], density: float, hp: PruningHparams) -> Budget:
    """One group per layer, every non-ignored layer at the same density; ignored layers kept whole."""
    pooled, kept = _pooled_share(layers, density, hp)
    share = kept / sum(layers[k].size for k in pooled) if pooled else 1.0
    return {**{(k,): min(round_half_up(layers[k].size * share), layers[k].size) for k in pooled},
            **_ignored(layers, hp)}


# ---- Layer densities of random masks (Liu et al. 2022, "The unreasonable effectiveness of random pruning";
# REFERENCE.md 4.5). Each gives the non-ignored layers densities d_l with sum d_l n_l = the kept share; a
# layer whose formula asks for more than all of its weights keeps all, and the rest is shared again. A new
# one is one function with the signature above and @register_allocation("name").


def _capped(pooled: list[str], layers: dict[str, LayerInfo], kept: float, share) -> dict[str, float]:  # noqa: ANN001
    """Densities d_l = share(free layers, weights left)[l] capped at 1, re-solved for the layers left free
    until none is over: the total is `kept` whenever it is reachable."""
    dense: set[str] = set()
    while True:
        free = [k for k in pooled if k not in dense]
        left = kept - sum(layers[k].size for k in dense)
        density = share(free, left) if free else {}
        over = [k for k in free if density[k] > 1]
        if not over:
            return {**density, **dict.fromkeys(dense, 1.0)}
        dense.update(over)


def _budget_from(layers: dict[str, LayerInfo], hp: PruningHparams, densities: dict[str, float]) -> Budget:
    return {**{(k,): min(round_half_up(layers[k].size * d), layers[k].size) for k, d in densities.items()},
            **_ignored(layers, hp)}


@register_allocation("erk")
def erk(layers: dict[str, LayerInfo], density: float, hp: PruningHparams) -> Budget:
    """Erdos-Renyi-Kernel: d_l proportional to sum(shape) / prod(shape) (e.g. (c_out + c_in + k_h + k_w) /
    (c_out c_in k_h k_w)): small layers denser, large ones sparser."""
    pooled, kept = _pooled_share(layers, density, hp)
    raw = {k: sum(layers[k].shape) / layers[k].size for k in pooled}

    def share(free: list[str], left: float) -> dict[str, float]:
        scale = left / sum(raw[k] * layers[k].size for k in free)
        return {k: scale * raw[k] for k in free}

    return _budget_from(layers, hp, _capped(pooled, layers, kept, share))


@register_allocation("balanced")
def balanced(layers: dict[str, LayerInfo], density: float, hp: PruningHparams) -> Budget:
    """Every layer keeps the same number of weights, X = kept / L (a layer smaller than X keeps all)."""
    pooled, kept = _pooled_share(layers, density, hp)
    return _budget_from(layers, hp, _capped(pooled, layers, kept,
                                            lambda free, left: {k: left / len(free) / layers[k].size for k in free}))


@register_allocation("pyramidal")
def pyramidal(layers: dict[str, LayerInfo], density: float, hp: PruningHparams) -> Budget:
    """d_l = r^l for the l-th non-ignored layer (l = 1, 2, ...: deeper layers sparser), with r in (0, 1]
    solving sum_l n_l r^l = kept (bisection)."""
    pooled, kept = _pooled_share(layers, density, hp)

    def total(r: float) -> float:
        return math.fsum(layers[k].size * r ** (i + 1) for i, k in enumerate(pooled))

    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if total(mid) < kept else (lo, mid)
    r = (lo + hi) / 2
    return _budget_from(layers, hp, {k: r ** (i + 1) for i, k in enumerate(pooled)})


def budget_counts(budget: Budget) -> dict[str, int]:
    """The Budget as per-layer counts: single-layer groups by name, the one pooled group (if any) under '*'
    (the form `experiments.job.self_checks` compares a mask's counts with)."""
    pooled = [group for group in budget if len(group) > 1]
    if len(pooled) > 1:
        raise ValueError(f"{len(pooled)} pooled groups cannot share the '*' key")
    return {(group[0] if len(group) == 1 else "*"): n for group, n in budget.items()}
