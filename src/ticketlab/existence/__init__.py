"""Strong lottery tickets by construction: the subnetwork an existence proof promises, built and measured.

    targets.py        a target MLP (nn.Linear + ReLU, a planted target, a state dict) as float64 layers
    source.py         the random source network the theorem assumes (uniform on [-1, 1], seeded)
    subset_sum.py     subset-sum problems: enumeration where small, scipy.optimize.milp (HiGHS) otherwise
    constructions.py  subset-sum, 2L layers (Pensia et al. 2020)
    measure.py        sup-norm error on the input box, the bound from the per-weight errors

`build(module_or_layers, eps, seed)` is the whole thing on any MLP, without the store; the experiment kind
`construct` (experiments/construct.py, `ticketlab construct`) stores it as a run.
"""

from __future__ import annotations

import math
import time
from typing import Any

from torch import nn

from .constructions import CONSTRUCTIONS, Construction, construct  # noqa: F401  (this API)
from .measure import sample_inputs, sup_error
from .subset_sum import SOLVERS, solve  # noqa: F401  (this API)
from .targets import Layer, layers_of

VERSION = 1  # in every construction's identity: a change that changes results bumps it


def report(target: list[Layer], built: Construction, samples: int, seconds: float) -> dict[str, Any]:
    """The measured figures of a construction against its target and the theorem (plain JSON)."""
    x = sample_inputs(target[0].weight.shape[1], samples, built.seed)
    error = sup_error(target, built.subnetwork(), x)
    widths = [target[0].weight.shape[1]] + [w.shape[0] for w, _ in target]
    d, depth = max(widths), len(target)
    log_term = math.log2(d * depth / built.eps)  # Pensia et al.'s width factor is O(log(d l / eps))
    return {"construction": built.construction, "eps": built.eps, "seed": built.seed,
            "width_factor": built.width_factor, "per_weight_tolerance": built.tolerance,
            "bound": built.bound, "sup_error": error, "measured_inputs": int(x.shape[0]),
            "within_eps": error <= built.eps, "bound_within_eps": built.bound <= built.eps,
            "error_within_bound": error <= built.bound * (1 + 1e-9) + 1e-12,
            "worst_weight_error": max(float(e.max()) for e in built.weight_errors),
            "kept": built.kept(), "source_weights": built.total(),
            "target_weights": int(sum(w.size for w, _ in target)), "target_widths": widths,
            "source_widths": [widths[0]] + [w.shape[0] for w, _ in built.source],
            "log2_dl_over_eps": log_term, "width_factor_over_log": built.width_factor / log_term,
            "solves": built.solves, "tries": built.tries, "seconds": seconds}


def build(target: nn.Module | list[Layer], eps: float, seed: int = 0, construction: str = "subset-sum",
          samples: int = 10_000, **options: Any) -> tuple[Construction, dict[str, Any]]:
    """Construct `target` (an MLP module or its layers) to sup-norm error eps on [-1, 1]^d; the construction
    and its report. options: width_factor, solver, time_limit, max_width_factor (constructions.py)."""
    layers = layers_of(target) if isinstance(target, nn.Module) else target
    start = time.perf_counter()
    built = construct(layers, construction, eps, seed, **options)
    return built, report(layers, built, samples, time.perf_counter() - start)
