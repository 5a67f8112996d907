"""Measuring a constructed subnetwork against its target and against the bound.

Sup-norm error. On inputs x with ||x||_inf <= R (the box [-R, R]^d; R = 1 as in Pensia et al., who take
||x|| <= 1), the error of the construction, ||g(x) - f(x)||_inf, is measured on seeded uniform samples of the
box plus its 2^d corners (d <= 12).

The bound from the per-weight errors (an explicit version of the proof's error propagation, valid for any
weight scale). Block l computes, for output k, sum_i (A_ki relu(x_i) - B_ki relu(-x_i)) + beta_k where A_ki
and B_ki are the two subset sums approximating W_ki and beta_k the one approximating b_k. With
delta_ki = max(|A_ki - W_ki|, |B_ki - W_ki|) and since relu is 1-Lipschitz, the error e_l = sup ||g_l - f_l||_inf
after layer l obeys

    e_l <= ||W_l||_inf e_{l-1} + ||Delta_l||_inf (F_{l-1} + e_{l-1}) + max_k |beta_k - b_k|,   e_0 = 0,

with ||.||_inf the largest absolute row sum and F_l = ||W_l||_inf F_{l-1} + max |b_l| (F_0 = R) a bound on the
target's activations. `per_weight_tolerance` is the largest tau such that every per-weight (and per-bias)
error <= tau keeps e_L <= eps: the share of eps each subset-sum problem gets.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..seeds import derive_seed
from .targets import Layer, evaluate


def row_norm(m: np.ndarray) -> float:
    return float(np.abs(m).sum(axis=1).max()) if m.size else 0.0


def error_bound(target: list[Layer], weight_errors: list[np.ndarray], bias_errors: list[np.ndarray],
                radius: float = 1.0) -> float:
    e, activations = 0.0, radius
    for (w, b), delta, beta in zip(target, weight_errors, bias_errors):
        w_norm, d_norm = row_norm(w), row_norm(delta)
        e = w_norm * e + d_norm * (activations + e) + (float(np.max(beta)) if beta.size else 0.0)
        activations = w_norm * activations + float(np.abs(b).max())
    return e


def per_weight_tolerance(target: list[Layer], eps: float, radius: float = 1.0) -> float:
    """The largest tau (to 1e-9 relative, by bisection in log space: the bound grows with tau) whose uniform
    per-weight errors keep the bound <= eps."""
    biased = any(np.any(b != 0) for _, b in target)

    def bound(tau: float) -> float:
        deltas = [np.full(w.shape, tau) for w, _ in target]
        betas = [np.full(b.shape, tau if biased else 0.0) for _, b in target]
        return error_bound(target, deltas, betas, radius)

    lo, hi = 1e-300, eps
    while bound(hi) <= eps:  # a single-layer target with tiny weights: tau may exceed eps
        lo, hi = hi, hi * 2
    for _ in range(200):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if bound(mid) <= eps else (lo, mid)
        if hi / lo < 1 + 1e-9:
            break
    return float(lo)


def sample_inputs(d: int, samples: int, seed: int, radius: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(derive_seed(seed, "existence-inputs"))
    x = rng.uniform(-radius, radius, size=(samples, d))
    if d <= 12:  # the box's corners, where |x| is largest
        x = np.vstack([x, radius * np.array(list(itertools.product((-1.0, 1.0), repeat=d)))])
    return x


def sup_error(target: list[Layer], network: list[Layer], x: np.ndarray) -> float:
    return float(np.abs(evaluate(network, x) - evaluate(target, x)).max())
