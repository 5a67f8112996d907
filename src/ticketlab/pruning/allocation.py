"""Allocation: how many weights survive, per group of layers, at a target density.

An allocation maps (layers, density, hparams) to a Budget: group of layer names -> survivors among them.
A group of one layer is cut by its own ranking (layer-wise); a group of several is cut by one ranking
across them (global). The density is the fraction of ALL prunable weights kept, ignored layers included.

Layer-wise pruning keeps the paper's per-layer rates at any density: it solves for the real level L
with sum_l n_l (1 - r_l)^L = density * N, so the densities of IMP's ladder give exactly the closed-form
counts round(n_l (1 - r_l)^L) of integer levels (LeNet 20/20/10%: 51.3% after 3 levels, 3.6% after 15).

One rounding rule turns every group's unrounded share into a count (`kept_count`, hp.rounding): nearest
(round half up, the default) or synaptic-flow (n - int((1 - d) n), Synaptic-Flow's and sparse_to_sparse's).
IMP's pooled levels count as hp.counting says (`ladder_density`): ticketlab's closed form or OpenLTH's.
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


def _whole_part(x: float) -> int:
    """int(x) for x >= 0, a value a few ulps under a whole number (float error of an exact one) counting as
    it, as in round_half_up: 80% of 1,000 prunes 200, although float64 makes (1 - 0.8) * 1000 199.99..."""
    return math.floor(x + max(1e-9, 1e-12 * abs(x)))


def kept_count(size: int, kept: float, pruned: float, rounding: str) -> int:
    """Survivors of a group of `size` weights whose unrounded share is `kept` (= size - `pruned`), by the
    rounding rule (PruningHparams.rounding): nearest, round(kept) halves up; synaptic-flow, size - int(pruned)
    with pruned = (1 - d) n as Synaptic-Flow's and sparse_to_sparse's masks compute k for torch.kthvalue (they
    prune the k scores <= the k-th; ties beyond k are kept here). Within [0, size]."""
    if rounding == "nearest":
        count = round_half_up(kept)
    elif rounding == "synaptic-flow":
        count = size - _whole_part(max(pruned, 0.0))
    else:
        raise TicketlabError(f"unknown rounding {rounding!r}; choose from: {', '.join(PruningHparams.ROUNDINGS)}")
    return min(max(count, 0), size)


def _count(size: int, density: float, hp: PruningHparams) -> int:
    """kept_count of a layer of `size` at `density`: d n kept, (1 - d) n pruned."""
    return kept_count(size, size * density, (1 - density) * size, hp.rounding)


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
    """IMP's density after `level` rounds at hp's rates. Layer-wise: each layer at its own rate
    (`layer_rates`), unrounded. Any other allocation (global, uniform, a user's) pools the non-ignored layers
    at one rate `hp.rate`, ignored layers kept, counted as `hp.counting` says: ticketlab, the closed form
    sum n_l (1 - rate)^L (unrounded; the allocation rounds it); openlth, OpenLTH's recurrence
    (`openlth_remaining`, whole counts)."""
    total = sum(info.size for info in layers.values())
    rates = _rates(layers, hp)  # also checks the layer names the config gives
    if hp.strategy == "layerwise":
        return _kept(layers, rates, level) / total
    if hp.counting == "openlth":
        return openlth_remaining(layers, hp, level) / total
    rates = {k: 0.0 if k in hp.ignore else hp.rate for k in layers}
    return _kept(layers, rates, level) / total


def openlth_remaining(layers: dict[str, LayerInfo], hp: PruningHparams, level: float) -> int:
    """Prunable weights left after `level` levels of OpenLTH's sparse_global (pruning/sparse_global.py): each
    level prunes ceil(rate x R), R = every remaining prunable weight, ignored layers included, then one more,
    as its threshold is the sorted survivors' |w| at that index and it keeps |w| > threshold (ties beyond are
    kept here). Only the non-ignored layers lose weights; once they have too few (where OpenLTH's index runs
    off its array) they keep none. Depends on the counts only, so a level's density needs no weights."""
    if level < 0 or level != int(level):
        raise TicketlabError(f"OpenLTH's counting has whole levels only, got level {level}")
    remaining = sum(info.size for info in layers.values())
    ignored = sum(layers[k].size for k in hp.ignore)
    for _ in range(int(level)):
        # float64 product and ceil, as NumPy computes np.ceil(fraction * remaining)
        pruned = math.ceil(hp.rate * remaining) + 1
        remaining -= min(pruned, remaining - ignored)
    return remaining


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
    """One group per layer; layer l keeps n_l (1 - r_l)^L rounded by hp.rounding, L solved so the total is
    density * N."""
    check_density(density)
    rates = _rates(layers, hp)
    total = sum(info.size for info in layers.values())
    fixed = sum(info.size for k, info in layers.items() if 1 - rates[k] == 1.0)  # rate 0 or ignored
    if density < 1 and density * total <= fixed:
        raise TicketlabError(f"density {density} is out of reach of layer-wise pruning at these rates: the layers "
                             f"with rate 0 or ignored keep {fixed / total:.4g} of the weights")
    level = 0 if density == 1 else _solve_level(layers, rates, density * total)
    return {(k,): _count(info.size, (1 - rates[k]) ** level, hp) for k, info in layers.items()}


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
    """One group of all non-ignored layers, ranked together; each ignored layer kept whole. Rates unused.
    Rounded by hp.rounding, synaptic-flow's pruned count being (1 - d) N over every prunable weight (the
    ignored ones rank first): Synaptic-Flow's k when nothing is ignored."""
    pooled, kept = _pooled_share(layers, density, hp)
    size = sum(layers[k].size for k in pooled)
    total = sum(info.size for info in layers.values())
    count = kept_count(size, kept, (1 - density) * total, hp.rounding)
    return {**({tuple(pooled): count} if pooled else {}), **_ignored(layers, hp)}


@register_allocation("uniform")
def uniform(layers: dict[str, LayerInfo], density: float, hp: PruningHparams) -> Budget:
    """One group per layer, every non-ignored layer at the same density; ignored layers kept whole."""
    pooled, kept = _pooled_share(layers, density, hp)
    share = kept / sum(layers[k].size for k in pooled) if pooled else 1.0
    return {**{(k,): _count(layers[k].size, share, hp) for k in pooled}, **_ignored(layers, hp)}


# ---- Layer densities of random masks (Liu et al. 2022, "The unreasonable effectiveness of random pruning";
# Gadhikar et al. 2023, REFERENCE.md 4.5). Each gives the non-ignored layers densities d_l, counts rounded by
# hp.rounding. A formula may ask a layer for more than all of its weights: the reference rules (erk-gadhikar,
# balanced) clamp it at dense and the total falls short of the density; the re-sharing ones (erk, RigL's, and
# balanced-reshared) share what it could not take among the other layers again, so sum d_l n_l = the kept share
# whenever it is reachable. A new one is one function with the signature above and @register_allocation("name").

# Allocations whose name once computed something else: name -> what tells the new meaning apart, entered in the
# identity of stored results that use them (experiments/pai.py), so a result of the old meaning is never found
# under the new one. `balanced` re-shared clamped layers' budget until Gadhikar et al.'s rule replaced it.
REVISIONS: dict[str, str] = {"balanced": "not-reshared"}


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


def _clamped(pooled: list[str], kept: float, share) -> dict[str, float]:  # noqa: ANN001
    """Densities d_l = min(1, share(all pooled layers, kept)[l]): nothing re-shared."""
    return {k: min(1.0, d) for k, d in share(pooled, kept).items()} if pooled else {}


def _budget_from(layers: dict[str, LayerInfo], hp: PruningHparams, densities: dict[str, float]) -> Budget:
    return {**{(k,): _count(layers[k].size, d, hp) for k, d in densities.items()}, **_ignored(layers, hp)}


def _erk_share(layers: dict[str, LayerInfo], pooled: list[str]):  # noqa: ANN202
    """ERK's d_l = eps sum(shape) / prod(shape), eps scaled so the layers given share `left` weights."""
    raw = {k: sum(layers[k].shape) / layers[k].size for k in pooled}

    def share(free: list[str], left: float) -> dict[str, float]:
        scale = left / sum(raw[k] * layers[k].size for k in free)
        return {k: scale * raw[k] for k in free}

    return share


def _balanced_share(layers: dict[str, LayerInfo]):  # noqa: ANN202
    """Balanced: every layer given keeps X = left / (their number) weights, d_l = X / n_l."""
    return lambda free, left: {k: left / len(free) / layers[k].size for k in free}


@register_allocation("erk")
def erk(layers: dict[str, LayerInfo], density: float, hp: PruningHparams) -> Budget:
    """Erdos-Renyi-Kernel as RigL's sparse_utils: d_l proportional to sum(shape) / prod(shape) (e.g. (c_out +
    c_in + k_h + k_w) / (c_out c_in k_h k_w)), small layers denser, large ones sparser; a layer over 1 is made
    dense and eps solved again for the others (re-shared), so the total is the density."""
    pooled, kept = _pooled_share(layers, density, hp)
    return _budget_from(layers, hp, _capped(pooled, layers, kept, _erk_share(layers, pooled)))


@register_allocation("erk-gadhikar")
def erk_gadhikar(layers: dict[str, LayerInfo], density: float, hp: PruningHparams) -> Budget:
    """ERK as Gadhikar et al.'s sparse_to_sparse (STR/main.py, `ERK` and `prune_random_erk`): d_l =
    min(1, C sum(shape) / prod(shape)), C = kept / sum_l sum(shape_l); a clamped layer's excess is not
    re-shared, so the total falls short of the density where a layer is clamped."""
    pooled, kept = _pooled_share(layers, density, hp)
    return _budget_from(layers, hp, _clamped(pooled, kept, _erk_share(layers, pooled)))


@register_allocation("balanced")
def balanced(layers: dict[str, LayerInfo], density: float, hp: PruningHparams) -> Budget:
    """Gadhikar et al.'s balanced rule (sparse_to_sparse STR/main.py, `balanced`, `prune_random_balanced`):
    every layer is given X = kept / L weights, d_l = min(1, X / n_l); a layer smaller than X keeps all and the
    rest is not re-shared, so the total falls short (Conv-4 at 10%: 7.32%)."""
    pooled, kept = _pooled_share(layers, density, hp)
    return _budget_from(layers, hp, _clamped(pooled, kept, _balanced_share(layers)))


@register_allocation("balanced-reshared")
def balanced_reshared(layers: dict[str, LayerInfo], density: float, hp: PruningHparams) -> Budget:
    """Balanced with re-sharing (ticketlab's `balanced` before the reference rule took the name): every layer
    the same count X, a layer smaller than X keeps all and the others share the rest equally again, so the
    total is the density."""
    pooled, kept = _pooled_share(layers, density, hp)
    return _budget_from(layers, hp, _capped(pooled, layers, kept, _balanced_share(layers)))


@register_allocation("pyramidal")
def pyramidal(layers: dict[str, LayerInfo], density: float, hp: PruningHparams) -> Budget:
    """d_l = r^l for the l-th non-ignored layer (l = 1, 2, ...: deeper layers sparser), with r in (0, 1]
    solving sum_l n_l r^l = kept (bisection; the root sparse_to_sparse's np.roots finds). That code draws each
    weight Bernoulli(d_l); here the counts are exact, rounded by hp.rounding (LeNet-300-100 at 1%: its output
    layer's d n = 0.0014 keeps 0 weights at nearest, 1 at synaptic-flow)."""
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
