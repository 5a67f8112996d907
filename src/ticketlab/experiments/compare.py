"""`compare`: IMP, pruning at initialisation and random masks trained with one recipe, seeds and data order,
at the same densities, each with its sanity checks; every result read back as one row.

IMP comes from the lottery runs of the same config at the ladder levels nearest each requested density
(reused from the store, trained if missing); its sanity checks are the shuffle and reinit controls of those
levels. The other methods are `pai` jobs (experiments/pai.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import store
from ..config import RunConfig
from ..errors import TicketlabError
from ..jobs import Runtime
from ..pruning import ladder_density, layers_of
from ..seeds import streams
from .controls import Control, control_jobs
from .lottery import level_jobs
from .pai import CHECKS, method, pai_jobs
from .plan import resolve
from .registry import Experiment, Planned, check_densities, check_replicates, drive, register_experiment

MAX_LEVELS = 200


@dataclass
class Comparison:
    rows: list[dict[str, Any]]  # one per trained job: method, variant, seed, density, requested_density, ...
    experiments: dict[str, Path]  # method -> its experiment folder
    dense: list[dict[str, Any]]  # the dense runs' summaries (one per seed)


def nearest_levels(config: RunConfig, layers: dict, densities: list[float]) -> dict[float, int]:
    """The IMP level whose ladder density is nearest each requested density (on a log scale)."""
    ladder = [ladder_density(layers, config.pruning, level) for level in range(MAX_LEVELS + 1)]
    out = {}
    for d in densities:
        level = min(range(1, MAX_LEVELS + 1), key=lambda lvl: abs(math.log(ladder[lvl]) - math.log(d)))
        if level == MAX_LEVELS:
            raise TicketlabError(f"density {d} is beyond {MAX_LEVELS} IMP levels at these rates")
        out[d] = level
    return out


@dataclass(frozen=True)
class ComparePlan:
    config: RunConfig  # its seed is the first replicate's
    methods: tuple[str, ...]  # imp and the pai methods (pai.METHODS)
    densities: tuple[float, ...]  # fractions of the weights kept
    replicates: int = 1
    checks: tuple[str, ...] = CHECKS  # sanity checks of each method's masks


def _validate(plan: ComparePlan) -> None:
    """Said before anything is planned or written."""
    if not plan.methods:
        raise TicketlabError("compare needs at least one method")
    for name in plan.methods:
        if name != "imp":
            method(name)
    check_densities(list(plan.densities))
    check_replicates(plan.replicates)


def _plan(plan: ComparePlan, runtime: Runtime) -> Planned:
    config = dataclasses.replace(plan.config, kind="lottery")
    reps = resolve(config, [config.seed + r for r in range(plan.replicates)], runtime)
    jobs, imp_levels = [], {}
    if "imp" in plan.methods:
        loaded = runtime.data(config.dataset)
        layers = layers_of(runtime.model(config, loaded, streams(config.seed)["init"]))
        imp_levels = nearest_levels(config, layers, list(plan.densities))
        for rep in reps:
            jobs += level_jobs(rep, max(imp_levels.values()))
            jobs += [j for level in sorted(set(imp_levels.values())) for c in plan.checks if c != "invert"
                     for j in control_jobs(rep, level, Control(c))]
    else:
        jobs += [j for rep in reps for j in level_jobs(rep, 0)]  # the dense baseline
    folders, pai = pai_jobs(config, [m for m in plan.methods if m != "imp"], list(plan.densities), reps, runtime,
                            plan.checks)
    return Planned(jobs + pai, (reps, imp_levels, folders, pai))


def _read(plan: ComparePlan, planned: Planned, runtime: Runtime) -> Comparison:
    reps, imp_levels, folders, pai = planned.layout
    rows = []
    for rep in reps:
        for d, level in imp_levels.items():
            ticket = runtime.path(rep.level(level))
            rows.append(_row("imp", d, store.read_summary(ticket)))
            for c in plan.checks:
                if c != "invert":
                    rows.append(_row("imp", d, store.read_summary(store.control_dir(ticket, c, 0)), f"check_{c}"))
    rows += [_row(j.params["method"], j.params["density"], store.read_summary(runtime.path(j.folder))) for j in pai]
    dense = [store.read_summary(runtime.path(rep.level(0))) for rep in reps]
    experiments = dict(folders)
    if reps[0].lottery:
        experiments["imp"] = runtime.path(reps[0].lottery).parent
    return Comparison(rows, experiments, dense)


COMPARE = register_experiment(Experiment(
    "compare", "IMP, pruning at init and random masks at the same densities, each with its sanity checks",
    ComparePlan, _plan, _read, validate=_validate, command="compare"))


def run_compare(config: RunConfig, methods: list[str], densities: list[float], *, replicates: int = 1,
                checks: tuple[str, ...] = CHECKS, **keywords: Any) -> Comparison:
    """Plan, run (or read back) and collect the comparison; keyword arguments as for run_study."""
    return drive(COMPARE, ComparePlan(config, tuple(methods), tuple(densities), replicates, tuple(checks)),
                 **keywords)


def _row(method: str, requested: float, summary: dict[str, Any], variant: str | None = None) -> dict[str, Any]:
    return {"method": method, "variant": variant or summary.get("variant", "ticket"), "seed": summary["seed"],
            "requested_density": requested, "density": summary["density"],
            "status": summary.get("status", "ok"), "collapsed": summary.get("status") == "collapsed",
            "early_stop_test_accuracy": summary.get("early_stop_test_accuracy"),
            "final_test_accuracy": summary.get("final_test_accuracy"),
            "layer_density": summary.get("layer_density")}
