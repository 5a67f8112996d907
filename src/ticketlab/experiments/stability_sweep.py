"""The sweep of Frankle et al. 2020, section 5: instability and matching over rewind steps k and IMP levels.

Its own module so that the analysis (stability.py: the job kind, the error barrier) sits below the study that
plans it (study.py imports stability.py), and this sweep, which runs a study, sits above both: no circle.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import store
from ..config import RunConfig
from ..errors import TicketlabError
from ..jobs import Runtime
from ..matching import lowest_matching
from ..report.stability import sweep_figure, sweep_table
from ..report.tables import stability_table
from .stability import StabilitySpec
from .registry import Experiment, Planned, drive, register_experiment
from .study import LOTTERY, StudyPlan


@dataclass(frozen=True)
class StabilitySweepPlan:
    config: RunConfig  # its seed is the first replicate's
    steps: tuple[int, ...]  # rewind steps k
    levels: tuple[int, ...]  # IMP levels L
    replicates: int = 1
    points: int = 30
    threshold: float = 0.02
    train_eval_size: int = 10_000
    recompute_bn: bool = True
    out: str | Path | None = None  # the figures' folder (default ./stability_<experiment>, never in the store)

    def study(self) -> StudyPlan:
        """The study it runs: IMP with rewinding to each k (level 0 = the shared dense run) and the analyses."""
        specs = tuple(StabilitySpec(step=k, level=level, points=self.points, threshold=self.threshold,
                                    train_eval_size=self.train_eval_size, recompute_bn=self.recompute_bn)
                      for level in self.levels for k in self.steps)
        base = dataclasses.replace(self.config, kind="lottery",
                                   lottery=dataclasses.replace(self.config.lottery, levels=0))
        return StudyPlan(base, replicates=self.replicates, stability=specs)


def _validate(plan: StabilitySweepPlan) -> None:
    """Said before anything is written (the planner checks the analyses again)."""
    if plan.out is not None:
        _check_out(plan.out)
    study = plan.study()
    for spec in study.stability:
        spec.check(plan.config.training.train_steps)
    LOTTERY.validate(study)


def _plan(plan: StabilitySweepPlan, runtime: Runtime) -> Planned:
    return LOTTERY.plan(plan.study(), runtime)


def _read(plan: StabilitySweepPlan, planned: Planned, runtime: Runtime) -> dict[str, Any]:
    """The rows, and the figure, sweep.json and sweep.md written into plan.out."""
    result = LOTTERY.read_back(plan.study(), planned, runtime)
    results = [r for rep in result.replicates.values() for r in rep["stability"]]
    dense = [store.read_summary(rep["run_dir"] / "level_0") for rep in result.replicates.values()
             if store.is_done(rep["run_dir"] / "level_0")]
    rows, dense_acc = sweep_rows(results, dense, runtime.root)
    out = Path(plan.out) if plan.out is not None else Path(f"stability_{result.experiment_dir.name}")
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    name = result.experiment_dir.name
    drawn = sweep_figure(rows, dense_acc, plan.threshold, out, name)
    store.write_json(out / "sweep.json", {"experiment_dir": str(result.experiment_dir), "dense": dense_acc,
                                          "rows": rows, "results": results})
    (out / "sweep.md").write_text(sweep_table(rows, dense_acc))
    files = {"png": drawn.png, "svg": drawn.svg, "json": out / "sweep.json", "md": out / "sweep.md"}
    return {"experiment_dir": result.experiment_dir, "rows": rows, "results": results, "dense_accuracy": dense_acc,
            "files": files}


def sweep_text(sweep: dict[str, Any]) -> str:
    """Every analysis, the sweep's table, and where the folder and figure are (`ticketlab stability`)."""
    return (f"{stability_table(sweep['results'])}\n{sweep['files']['md'].read_text()}"
            f"run folder: {sweep['experiment_dir']}\nfigure: {sweep['files']['png']}")


def sweep_json(sweep: dict[str, Any]) -> dict[str, Any]:
    return {"experiment_dir": str(sweep["experiment_dir"]), "results": sweep["results"], "rows": sweep["rows"],
            "dense": sweep["dense_accuracy"]}


STABILITY = register_experiment(Experiment(
    "stability", "instability and matching over rewind steps k and IMP levels (Frankle et al. 2020)",
    StabilitySweepPlan, _plan, _read, validate=_validate, levels=lambda plan: LOTTERY.levels(plan.study()),
    table=sweep_text, to_json=sweep_json, command="stability"))


def stability_sweep(config: RunConfig, steps: list[int], levels: list[int], *, replicates: int = 1,
                    points: int = 30, threshold: float = 0.02, train_eval_size: int = 10_000,
                    recompute_bn: bool = True, out: str | Path | None = None, **keywords: Any) -> dict[str, Any]:
    """Every (k, L) of `steps` x `levels`: IMP with rewinding to k for L levels (one experiment per k, level 0
    = the shared dense run), two copies from theta_k masked by level L's mask, the error barrier between them;
    each subnetwork's accuracy against the dense network's ("matching"). Writes the figure (instability vs k
    per density; accuracy vs density per k), sweep.json and sweep.md into `out` (default
    ./stability_<experiment>, never inside the run store); returns {"experiment_dir", "rows", "results",
    "dense_accuracy", "files"}. Keyword arguments as for run_study."""
    plan = StabilitySweepPlan(config, tuple(steps), tuple(levels), replicates, points, threshold, train_eval_size,
                              recompute_bn, out)
    return drive(STABILITY, plan, **keywords)


def _check_out(out: str | Path) -> None:
    part = store.store_part(out)
    if part is not None:
        raise TicketlabError(f"--figure-dir {out} is inside the run store ({part}): write the figures elsewhere")


def sweep_rows(results: list[dict[str, Any]], dense: list[dict[str, Any]], root: Path,
               ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One row per (level, k): density, mean and spread of the test barrier over seeds, stable, the final test
    accuracy of the subnetwork trained from k (IMP's level L rewound to k; level 0: the dense run) and whether
    it matches the dense network (within max(one std over seeds, 0.2 pp) of its mean)."""
    accs = [s["final_test_accuracy"] for s in dense if s.get("final_test_accuracy") is not None]
    dense_acc = None
    if accs:
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        dense_acc = {"mean": statistics.fmean(accs), "std": std, "n": len(accs),
                     "matching_below": lowest_matching(statistics.fmean(accs), std)}  # ticketlab.matching
    rows = []
    for level, k in sorted({(r["level"], r["step"]) for r in results}):
        mine = [r for r in results if r["level"] == level and r["step"] == k]
        barriers = [r["test_barrier"] for r in mine]
        levels = [store.read_summary(root / r["mask_level"]) for r in mine
                  if store.is_done(root / r["mask_level"])] if level else []
        acc = [s["final_test_accuracy"] for s in levels if s.get("final_test_accuracy") is not None]
        if level == 0 and dense_acc:
            acc = accs
        mean_acc = statistics.fmean(acc) if acc else None
        rows.append({"level": level, "step": k, "density": mine[0]["density"], "seeds": len(mine),
                     "test_barrier": statistics.fmean(barriers), "test_barrier_min": min(barriers),
                     "test_barrier_max": max(barriers), "stable": statistics.fmean(barriers) < mine[0]["threshold"],
                     "test_accuracy": mean_acc,
                     "matching": None if mean_acc is None or dense_acc is None
                     else mean_acc >= dense_acc["matching_below"]})
    return rows, dense_acc
