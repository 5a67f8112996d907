"""`compare`: IMP, pruning at initialisation, random masks and sparse-from-the-start training (dynamic sparse
training, gradual pruning) with one recipe, seeds and data order, at the same densities, each with its sanity
checks; every result read back as one row, with what it cost to train.

IMP comes from the lottery runs of the same config at the ladder levels nearest each requested density
(reused from the store, trained if missing); its sanity checks are the shuffle and reinit controls of those
levels. Pruning at init and random masks are `pai` jobs (experiments/pai.py); set, set-magnitude, rigl, deepr
and gmp are `sparse` jobs (experiments/sparse.py); early-bird tickets are a search and a ticket job
(experiments/early_bird.py), with their overlap (IoU) with IMP's mask at the same density when IMP runs too.
Training cost: FLOPs of every training a row took (IMP: each level up to its own, the dense run included;
early-bird: its dense search) relative to one dense run, and this session's seconds.
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
from ..jobs import Job, Runtime
from ..masks import Mask
from ..pruning import ladder_density, layers_of
from ..seeds import streams
from ..training.cost import dense_counts, training_flops, uses_per_example
from ..training.dynamic import METHODS as DYNAMIC
from .controls import Control, control_jobs
from .lottery import level_jobs
from .pai import CHECKS, METHODS, SCORE_MODES, pai_jobs
from .early_bird import VARIANT as EARLY_BIRDS, early_bird_jobs
from .sparse import sparse_jobs
from .plan import resolve
from .registry import (Experiment, Planned, check_densities, check_once, check_replicates, drive,
                       register_experiment)

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
    methods: tuple[str, ...]  # imp, pai.METHODS, training.dynamic.METHODS, early_bird.VARIANT's names
    densities: tuple[float, ...]  # fractions of the weights kept
    replicates: int = 1
    checks: tuple[str, ...] = CHECKS  # sanity checks of each method's masks
    score_mode: str = "eval"  # pai.SCORE_MODES: the module mode pruning at init scores in (Synaptic-Flow's: eval)


def _validate(plan: ComparePlan) -> None:
    """Said before anything is planned or written."""
    if not plan.methods:
        raise TicketlabError("compare needs at least one method")
    for name in plan.methods:
        if name != "imp" and name not in EARLY_BIRDS and name not in DYNAMIC and name not in METHODS:
            raise TicketlabError(f"unknown method {name!r}; choose from: imp, {', '.join(METHODS)}, "
                                 f"{', '.join(DYNAMIC)}, {', '.join(EARLY_BIRDS)}")
    if plan.score_mode not in SCORE_MODES:
        raise TicketlabError(f"unknown --score-mode {plan.score_mode!r}; choose from: {', '.join(SCORE_MODES)}")
    dynamic = [m for m in plan.methods if m in DYNAMIC]
    if plan.config.pruning.rounding != "nearest" and dynamic:  # their folders do not name a rounding
        raise TicketlabError(f"--prune-rounding {plan.config.pruning.rounding} applies to IMP, pruning at init "
                             f"and random masks; dynamic sparse training ({', '.join(dynamic)}) keeps its own counts: "
                             "compare it in a run without the flag")
    check_densities(list(plan.densities))
    check_once(list(plan.methods), "methods")
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
    folders, pai = pai_jobs(config, [m for m in plan.methods if m in METHODS], list(plan.densities), reps, runtime,
                            plan.checks, plan.score_mode)
    sparse_folders, sparse = sparse_jobs(config, [m for m in plan.methods if m in DYNAMIC], list(plan.densities),
                                         reps, runtime)
    folders.update(sparse_folders)
    early: list[Job] = []
    for name in [m for m in plan.methods if m in EARLY_BIRDS]:
        folders[name], jobs_of_name = early_bird_jobs(config, name, list(plan.densities), reps, runtime)
        early += jobs_of_name
    trained = pai + sparse + [j for j in early if j.kind == "early_bird"]
    return Planned(jobs + pai + sparse + early, (reps, imp_levels, folders, trained))


def _read(plan: ComparePlan, planned: Planned, runtime: Runtime) -> Comparison:
    reps, imp_levels, folders, trained = planned.layout
    cost = Cost.of(plan.config, runtime)
    rows, dense = [], []
    for rep in reps:
        levels = [store.read_summary(runtime.path(rep.level(level))) for level in range(max(imp_levels.values(),
                                                                                         default=0) + 1)]
        dense.append(levels[0])
        for d, level in imp_levels.items():
            ticket = runtime.path(rep.level(level))
            rows.append(_row("imp", d, levels[level], cost, levels[: level + 1]))  # every level it took
            for c in plan.checks:
                if c != "invert":
                    check = store.read_summary(store.control_dir(ticket, c, 0))
                    rows.append(_row("imp", d, check, cost, [check], f"check_{c}"))
    for j in trained:
        summary = store.read_summary(runtime.path(j.folder))
        runs = [summary, *(store.read_summary(runtime.path(d)) for d in j.deps)]  # early-bird: + its search
        row = _row(j.params["method"], j.params["density"], summary, cost, runs)
        if j.kind == "early_bird":
            row["drawn_at_step"], row["found"] = summary.get("early_bird_step"), summary.get("early_bird_found")
        if j.kind == "early_bird" and imp_levels:  # how much of IMP's mask at that density it found
            imp = Mask.load(runtime.path(j.params["rep"].level(imp_levels[j.params["density"]])) / store.MASK)
            row["iou_with_imp"] = iou(Mask.load(runtime.path(j.folder) / store.MASK), imp)
        rows.append(row)
    experiments = dict(folders)
    if reps[0].lottery:
        experiments["imp"] = runtime.path(reps[0].lottery).parent
    return Comparison(rows, experiments, dense)


def iou(a: Mask, b: Mask) -> float:
    """Intersection over union of the kept weights of two masks of one network."""
    both = sum(int((a[k] & b[k]).sum()) for k in a.keys())
    either = sum(int((a[k] | b[k]).sum()) for k in a.keys())
    return both / either if either else 1.0


@dataclass(frozen=True)
class Cost:
    """Training FLOPs from stored summaries (training/cost.py): a fixed mask's run costs 3 f(mask) per example
    per step; a mask that changed while training recorded its own count."""

    uses: dict[str, int]
    steps: int
    batch_size: int
    dense_run: int  # FLOPs of one dense training run of the recipe

    @classmethod
    def of(cls, config: RunConfig, runtime: Runtime) -> "Cost":
        data = runtime.data(config.dataset)
        model = runtime.model(config, data, streams(config.seed)["init"])
        uses = uses_per_example(model, data.input_shape)
        steps, batch = config.training.train_steps, config.training.batch_size
        return cls(uses, steps, batch, training_flops(uses, dense_counts(model), steps, batch))

    def of_run(self, summary: dict[str, Any]) -> int | None:
        if "train_flops" in summary:
            return int(summary["train_flops"])
        if summary.get("status") == "collapsed":  # never trained
            return 0
        counts = summary.get("layer_counts")
        if counts is None:
            return None
        return training_flops(self.uses, counts, self.steps - int(summary.get("start_step", 0)), self.batch_size)


COMPARE = register_experiment(Experiment(
    "compare", "IMP, pruning at init and random masks at the same densities, each with its sanity checks",
    ComparePlan, _plan, _read, validate=_validate, command="compare"))


def run_compare(config: RunConfig, methods: list[str], densities: list[float], *, replicates: int = 1,
                checks: tuple[str, ...] = CHECKS, score_mode: str = "eval", **keywords: Any) -> Comparison:
    """Plan, run (or read back) and collect the comparison; keyword arguments as for run_study."""
    return drive(COMPARE, ComparePlan(config, tuple(methods), tuple(densities), replicates, tuple(checks),
                                      score_mode), **keywords)


def _row(method: str, requested: float, summary: dict[str, Any], cost: Cost, runs: list[dict[str, Any]],
         variant: str | None = None) -> dict[str, Any]:
    """One trained job; `runs`: the summaries of every training it took (IMP: each level up to its own)."""
    flops = [cost.of_run(r) for r in runs]
    seconds = [r.get("train_seconds_this_session") for r in runs]
    return {"method": method, "variant": variant or summary.get("variant", "ticket"), "seed": summary["seed"],
            "requested_density": requested, "density": summary["density"],
            "status": summary.get("status", "ok"), "collapsed": summary.get("status") == "collapsed",
            "early_stop_test_accuracy": summary.get("early_stop_test_accuracy"),
            "final_test_accuracy": summary.get("final_test_accuracy"),
            "layer_density": summary.get("layer_density"),
            "train_flops": None if None in flops else sum(flops),
            "train_cost": None if None in flops else sum(flops) / cost.dense_run,
            # this session's seconds only: a run resumed or read back from the store counts what it spent here
            "train_seconds": None if None in seconds else sum(seconds)}
