"""Constructions: the subnetwork of a random source network that an existence proof describes.

subset-sum (2L layers; Pensia, Rajput, Nagle, Vishwakarma & Papailiopoulos 2020, "Optimal lottery tickets
via SubsetSum: logarithmic over-parameterization is sufficient"). Each target layer x -> W x (+ b) becomes a
block of two source layers (source.py: A_l, then B_l). Intermediate neuron j of input i keeps only its
weight u_ij from input i, so it outputs relu(u_ij x_i) = u_ij relu(x_i) if u_ij > 0 and |u_ij| relu(-x_i) if
u_ij < 0. Output k then sees, through the kept weights v_kj of B_l,

    sum_{j in S+} v_kj u_ij relu(x_i) - sum_{j in S-} v_kj u_ij relu(-x_i),

so with both subset sums sum_{S+} u_ij v_kj and sum_{S-} u_ij v_kj close to W_ki it computes W_ki (relu(x_i) -
relu(-x_i)) = W_ki x_i: the ReLU identity trick. Choosing S+ (among the neurons with u_ij > 0) and S- (among
u_ij < 0) is one subset-sum problem each over the products u_ij v_kj (subset_sum.py). A target bias b_k is one
more problem over the products a_j v_kj of the constant neurons (a_j > 0, source.py). Lueker's theorem (used by
Pensia et al.) says n = O(log(1 / tau)) random values suffice to approximate every z in [-1, 1] within tau
with high probability, which with tau ~ eps / (d l) gives the paper's width factor n = O(log(d l / eps))
(Theorem 1; its constant is not given as a number). Here tau is computed for the target from the explicit
bound of measure.py, and n is either given or the smallest even n >= 2 whose construction meets the bound.

What is kept: A_l's weight u_ij where some output uses neuron (i, j); B_l's weights v_kj of the chosen
subsets; the constant neurons' biases where used; no other bias.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TicketlabError
from .measure import error_bound, per_weight_tolerance
from .source import draw_source
from .subset_sum import solve
from .targets import Layer

CONSTRUCTIONS = ("subset-sum",)  # planned: "l-plus-1" (Burkholz 2022), see docs/existence/README.md


@dataclass
class Construction:
    construction: str
    eps: float
    seed: int
    width_factor: int
    tolerance: float  # the per-weight error each subset-sum problem was asked for
    source: list[Layer]  # the dense random source network (2L layers)
    masks: list[tuple[np.ndarray, np.ndarray]]  # per source layer: (weight mask, bias mask), bool
    weight_errors: list[np.ndarray]  # per target layer: delta [out, in]
    bias_errors: list[np.ndarray]  # per target layer: |beta - b| [out]
    bound: float  # error_bound of the per-weight errors (measure.py)
    solves: dict[str, Any] = field(default_factory=dict)  # counts, solvers used, not optimal, seconds
    tries: list[dict[str, Any]] = field(default_factory=list)  # width factors tried (search), met or not

    def subnetwork(self) -> list[Layer]:
        """The ticket: the source's weights times its masks."""
        return [Layer(w * mw, b * mb) for (w, b), (mw, mb) in zip(self.source, self.masks)]

    def kept(self) -> int:
        return int(sum(mw.sum() + mb.sum() for mw, mb in self.masks))

    def total(self) -> int:
        return int(sum(w.size + (b.size if np.any(b != 0) else 0) for w, b in self.source))


class _TooFar(Exception):
    """A subset-sum problem missed its tolerance (the width search tries the next width)."""


def subset_sum_2l(target: list[Layer], eps: float, seed: int, width_factor: int | None = None,
                  solver: str = "auto", time_limit: float = 10.0, radius: float = 1.0,
                  max_width_factor: int = 64) -> Construction:
    """Pensia et al.'s construction of `target` to sup-norm error eps on ||x||_inf <= radius (see the module's
    docstring). width_factor None: the smallest even n in 2..max_width_factor whose construction meets the
    bound (a failed try stops at its first problem over the tolerance); given: that n, met or not."""
    if not eps > 0:
        raise TicketlabError(f"eps must be positive, got {eps}")
    tolerance = per_weight_tolerance(target, eps, radius)
    if width_factor is not None:
        if width_factor < 1:
            raise TicketlabError(f"the width factor must be at least 1, got {width_factor}")
        return _build(target, eps, seed, width_factor, tolerance, solver, time_limit, radius, early_stop=False)
    tries = []
    for n in range(2, max_width_factor + 1, 2):
        start = time.perf_counter()
        try:
            built = _build(target, eps, seed, n, tolerance, solver, time_limit, radius, early_stop=True)
        except _TooFar:
            tries.append({"width_factor": n, "met": False, "seconds": time.perf_counter() - start})
            continue
        if built.bound <= eps:
            built.tries = tries + [{"width_factor": n, "met": True, "seconds": time.perf_counter() - start}]
            return built
        tries.append({"width_factor": n, "met": False, "seconds": time.perf_counter() - start})
    built = _build(target, eps, seed, max_width_factor, tolerance, solver, time_limit, radius, early_stop=False)
    built.tries = tries
    return built


def _build(target: list[Layer], eps: float, seed: int, n: int, tolerance: float, solver: str, time_limit: float,
           radius: float, early_stop: bool) -> Construction:
    biased = any(np.any(b != 0) for _, b in target)
    source = draw_source(target, n, seed, biased)
    masks, deltas, betas = [], [], []
    stats = {"problems": 0, "enumerate": 0, "milp": 0, "not_optimal": 0, "seconds": 0.0, "worst": 0.0}

    def pick(values: np.ndarray, z: float) -> tuple[np.ndarray, float]:
        s = solve(values, z, solver, time_limit, tolerance)
        stats["problems"] += 1
        stats[s.solver] += 1
        stats["not_optimal"] += 0 if s.optimal else 1
        stats["seconds"] += s.seconds
        stats["worst"] = max(stats["worst"], s.error)
        if early_stop and s.error > tolerance:
            raise _TooFar
        return s.chosen, s.error

    for l, (w, b) in enumerate(target):
        (a, a_bias), (v, _) = source[2 * l], source[2 * l + 1]
        d_out, d_in = w.shape
        mask_a, mask_a_bias = np.zeros(a.shape, bool), np.zeros(a_bias.shape, bool)
        mask_v, mask_v_bias = np.zeros(v.shape, bool), np.zeros(d_out, bool)
        delta, beta = np.zeros(w.shape), np.zeros(d_out)
        for i in range(d_in):
            group = np.arange(i * n, (i + 1) * n)
            u = a[group, i]
            for k in range(d_out):
                products = u * v[k, group]
                errors = []
                for half in (group[u > 0], group[u < 0]):  # S+ serves relu(x_i), S- serves relu(-x_i)
                    chosen, error = pick(products[half - i * n], w[k, i])
                    mask_v[k, half[chosen]] = True
                    errors.append(error)
                delta[k, i] = max(errors)
            used = group[mask_v[:, group].any(axis=0)]
            mask_a[used, i] = True
        if biased:  # the constant neurons: incoming weights pruned, bias a_j > 0 kept where used
            group = np.arange(d_in * n, (d_in + 1) * n)
            live = group[a_bias[group] > 0]
            for k in range(d_out):
                chosen, beta[k] = pick(a_bias[live] * v[k, live], b[k])
                mask_v[k, live[chosen]] = True
            mask_a_bias[live[mask_v[:, live].any(axis=0)]] = True
        masks += [(mask_a, mask_a_bias), (mask_v, mask_v_bias)]
        deltas.append(delta)
        betas.append(beta)
    return Construction("subset-sum", eps, seed, n, tolerance, source, masks, deltas, betas,
                        error_bound(target, deltas, betas, radius), stats)


def construct(target: list[Layer], construction: str, eps: float, seed: int, **options: Any) -> Construction:
    if construction not in CONSTRUCTIONS:
        raise TicketlabError(f"unknown construction {construction!r} (built: {', '.join(CONSTRUCTIONS)})")
    return subset_sum_2l(target, eps, seed, **options)
