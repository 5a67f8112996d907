"""Subset-sum problems: pick a subset S of candidate values a_1..a_m whose sum is closest to a target z,

    min over S of |z - sum_{j in S} a_j|,

solved exactly by enumeration of all 2^m subsets where m is small, and by a mixed-integer program otherwise
(SciPy's `milp`, the HiGHS solver): binary s_j, continuous t >= 0,

    min t  subject to  -t <= z - sum_j a_j s_j <= t,

with a time limit per problem. The achieved error is always recomputed from the returned subset (never the
solver's objective), so a time-limited answer records the error it really has.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from ..errors import TicketlabError

SOLVERS = ("auto", "enumerate", "milp")
ENUMERATE_UP_TO = 16  # "auto" enumerates up to 2^16 = 65,536 subsets (about a millisecond); above, the MILP


@dataclass(frozen=True)
class Solution:
    chosen: np.ndarray  # bool [m]: the subset
    error: float  # |z - sum of the chosen values|, recomputed from `chosen`
    solver: str  # "enumerate" or "milp"
    seconds: float
    optimal: bool  # True: optimal, or (MILP with a tolerance) within it; False: stopped at the time limit


def solve(values: np.ndarray, target: float, solver: str = "auto", time_limit: float = 10.0,
          tolerance: float = 0.0) -> Solution:
    """The subset of `values` whose sum is closest to `target`. `tolerance`: the MILP may stop once its
    subset is within it (enumeration is exact anyway)."""
    values = np.asarray(values, dtype=np.float64)
    if solver not in SOLVERS:
        raise TicketlabError(f"unknown subset-sum solver {solver!r} (use {', '.join(SOLVERS)})")
    start = time.perf_counter()
    use = solver if solver != "auto" else ("enumerate" if values.size <= ENUMERATE_UP_TO else "milp")
    if use == "enumerate":
        if values.size > 24:  # 2^24 sums: memory and time out of proportion
            raise TicketlabError(f"enumeration of 2^{values.size} subsets is too large (at most 2^24): use milp")
        chosen, optimal = _enumerate(values, target), True
    else:
        chosen, optimal = _milp(values, target, time_limit, tolerance)
    error = abs(float(target) - float(values[chosen].sum()))
    return Solution(chosen, error, use, time.perf_counter() - start, optimal)


def _enumerate(values: np.ndarray, target: float) -> np.ndarray:
    """Every subset's sum, built by doubling (sums of subsets of the first j values, then with value j added);
    the first subset with the least error (subset index in binary: bit j = value j chosen)."""
    sums = np.zeros(1)
    for v in values:
        sums = np.concatenate([sums, sums + v])
    best = int(np.argmin(np.abs(target - sums)))
    return np.array([(best >> j) & 1 == 1 for j in range(values.size)], dtype=bool)


def _milp(values: np.ndarray, target: float, time_limit: float, tolerance: float) -> tuple[np.ndarray, bool]:
    """With tolerance > 0, first a feasibility problem (t <= tolerance, objective 0: HiGHS stops at the first
    subset within it, which is what the construction needs); if none is found, the minimisation of t."""
    m = values.size
    if m == 0:
        return np.zeros(0, dtype=bool), True
    start = time.perf_counter()
    if tolerance > 0:
        chosen, status = _milp_run(values, target, time_limit, t_max=tolerance, objective=0.0)
        if chosen is not None and status == 0:
            return chosen, True
    left = max(time_limit - (time.perf_counter() - start), 0.01)
    chosen, status = _milp_run(values, target, left, t_max=np.inf, objective=1.0)
    if chosen is None:  # no incumbent within the time limit: the empty subset is a valid answer
        return np.zeros(m, dtype=bool), False
    return chosen, status == 0


def _milp_run(values: np.ndarray, target: float, time_limit: float, t_max: float,
              objective: float) -> tuple[np.ndarray | None, int]:
    m = values.size
    cost = np.zeros(m + 1)
    cost[-1] = objective  # minimise t (objective 1) or find any subset with t <= t_max (objective 0)
    # z - a.s <= t  <=>  a.s + t >= z ;  a.s - z <= t  <=>  a.s - t <= z
    rows = np.vstack([np.append(values, 1.0), np.append(values, -1.0)])
    constraint = LinearConstraint(rows, [target, -np.inf], [np.inf, target])
    integrality = np.append(np.ones(m), 0)
    bounds = Bounds(np.zeros(m + 1), np.append(np.ones(m), t_max))
    # mip_rel_gap 0: stop only when optimal, not at HiGHS' default relative gap of 1e-4
    options = {"time_limit": float(time_limit), "mip_rel_gap": 0.0, "disp": False}
    result = milp(cost, constraints=constraint, integrality=integrality, bounds=bounds, options=options)
    if result.x is None:
        return None, int(result.status)
    return result.x[:m] > 0.5, int(result.status)
