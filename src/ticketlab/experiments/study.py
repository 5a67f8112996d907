"""Studies: what to compute (a plan: replicates x levels x controls x stability analyses) -> jobs ->
an executor -> the results read back from the store.

Everything lands in the run store under folders named by what determines them, so a study that is rerun,
extended (more seeds, levels, controls, analyses) or interrupted trains only what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import store
from ..config import RunConfig
from ..data import DataSplits
from ..jobs import Job, Progress, Runtime
from ..report.tables import level_table, study_table
from .controls import Control, control_jobs, parse_controls
from .lottery import level_jobs
from .plan import Replicate, resolve
from .registry import Experiment, Planned, check_replicates, drive, register_experiment
from .registry import make_options as options  # noqa: F401  (the name callers of run_study know)
from .stability import StabilitySpec, stability_jobs
from .tickets import ticket_jobs


@dataclass(frozen=True)
class StudyPlan:
    config: RunConfig  # its seed is the first replicate's
    replicates: int = 1
    controls: tuple[Control, ...] = ()
    control_levels: tuple[int, ...] | None = None  # None: every level
    stability: tuple[StabilitySpec, ...] = ()  # analyses per replicate (their masks' IMP levels are trained too)

    @property
    def seeds(self) -> list[int]:
        return [self.config.seed + r for r in range(self.replicates)]

    @property
    def levels(self) -> int | None:
        """Levels of the config's experiment to train; None for a plan of dense stability analyses alone, which
        need the dense state at k but not the trained dense network. An analysis at level L > 0 plans the
        levels it needs itself, in the IMP experiment with rewinding to its k (stability_jobs)."""
        if self.stability and not self.controls and all(s.level == 0 for s in self.stability) \
                and (self.config.kind != "lottery" or self.config.lottery.levels == 0):
            return None
        if self.config.kind != "lottery":
            return 0
        return self.config.lottery.levels

    def levels_for_controls(self) -> list[int]:
        every = range(self.config.lottery.levels + 1) if self.config.kind == "lottery" else range(1)
        chosen = every if self.control_levels is None else [lvl for lvl in self.control_levels if lvl in every]
        return list(chosen)


@dataclass
class StudyResult:
    experiment_dir: Path  # the lottery experiment (or the dense one for kind "train")
    replicates: dict[int, dict[str, Any]] = field(default_factory=dict)  # seed -> levels, controls, stability
    single: bool = True  # one replicate and no controls: its levels are the result (else their aggregate)


@dataclass
class LotteryResult:
    run_dir: Path  # the replicate's folder
    levels: list[dict[str, Any]]  # each level's summary.json


def plan_jobs(plan: StudyPlan, runtime: Runtime) -> tuple[list[Replicate], list[Job]]:
    """Every job of the plan, each listed once, in an order that respects the dependencies."""
    check_replicates(plan.replicates)
    reps = resolve(plan.config, plan.seeds, runtime)
    jobs: dict[str, Job] = {}
    for rep in reps:
        planned = level_jobs(rep, plan.levels) if plan.levels is not None else []
        for level in plan.levels_for_controls():
            for control in plan.controls:
                if control.applies_to(level):
                    planned += control_jobs(rep, level, control)
        for spec in plan.stability:
            planned += stability_jobs(rep, spec, runtime)
        for job in planned:
            jobs.setdefault(job.folder, job)  # e.g. one prefix run for rewinding and an analysis at the same k
    return reps, list(jobs.values())


def _levels(plan: StudyPlan) -> int:
    return max([plan.levels or 0, *(s.level for s in plan.stability)])


def _plan(plan: StudyPlan, runtime: Runtime) -> Planned:
    reps, jobs = plan_jobs(plan, runtime)
    return Planned(jobs, reps)


def _read(plan: StudyPlan, planned: Planned, runtime: Runtime) -> StudyResult:
    result = read_back(plan, planned.layout, planned.jobs, runtime.root)
    result.single = plan.replicates == 1 and not plan.controls
    return result


LEVEL_KEYS = ("level", "density", "layer_density", "status", "diverged_at_step", "early_stop_step",
              "early_stop_test_accuracy", "final_test_accuracy")


def study_json(result: StudyResult) -> dict[str, Any]:
    """The first replicate's levels; with more replicates or controls, the aggregated table and every
    replicate's summaries too (`ticketlab lottery --json`)."""
    first = next(iter(result.replicates.values()))
    out: dict[str, Any] = {"run_dir": str(first["run_dir"]),
                           "levels": [{k: s.get(k) for k in LEVEL_KEYS} for s in first["levels"]]}
    if not result.single:
        out |= {"experiment_dir": str(result.experiment_dir), "table": aggregated(result),
                "replicates": [{"seed": seed, "run_dir": str(r["run_dir"]), "levels": r["levels"],
                                "controls": r["controls"]} for seed, r in result.replicates.items()]}
    return out


def study_text(result: StudyResult) -> str:
    """The levels table (one replicate) or the aggregated one, and the folder (`ticketlab lottery`)."""
    first = next(iter(result.replicates.values()))
    if result.single:
        return f"{level_table(first['levels'])}\nrun folder: {first['run_dir']}"
    return f"{study_table(aggregated(result))}\nrun folder: {result.experiment_dir}"


def aggregated(result: StudyResult) -> list[dict[str, Any]]:
    from ..report.aggregate import aggregate, collect

    return aggregate(collect([r["run_dir"] for r in result.replicates.values()]))


LOTTERY = register_experiment(Experiment(
    "lottery", "IMP levels of a config (kind train: the dense run), with controls and stability analyses",
    StudyPlan, _plan, _read, validate=lambda plan: check_replicates(plan.replicates), levels=_levels,
    table=study_text, to_json=study_json, command="lottery"))


def run_study(plan: StudyPlan, *, workers: int = 1, data: DataSplits | None = None,
              progress: Progress | None = None, executor: str = "local", address: str | None = None,
              **run_options: Any) -> StudyResult:
    """Run (or resume, or read back) every job of `plan` (registry.drive). Keyword arguments: `options`'
    (root, data_dir, device, threads, download, checkpoint_every, model_fn, population: "auto" | "off" | N).
    `data`: the data set's tensors, used in this process in place of loading `plan.config.dataset` (workers
    load it by name).

    workers > 1: independent jobs run in that many processes (the local executor); 1: in this process.
    executor="ray": one Ray task per job on the cluster at `address` ("auto", "HOST:PORT"; its nodes must see
    `root` at the same path), or with address None on a Ray instance started here with `workers` CPUs.
    """
    return drive(LOTTERY, plan, workers=workers, data=data, progress=progress, executor=executor,
                 address=address, **run_options)


def read_back(plan: StudyPlan, reps: list[Replicate], jobs: list[Job], root: Path) -> StudyResult:
    home = (root / reps[0].home).parent
    result = StudyResult(home)
    for rep in reps:
        mine = [j for j in jobs if j.params.get("rep") == rep]
        result.replicates[rep.seed] = {
            "run_dir": root / rep.home,
            "levels": [] if plan.levels is None else [store.read_summary(root / rep.level(level))
                                                      for level in range(plan.levels + 1)],
            "controls": [store.read_summary(root / j.folder) for j in mine if j.kind == "control"],
            "stability": [store.read_json(root / j.folder / store.STABILITY) for j in jobs
                          if j.kind == "stability" and j.params["rep"].seed == rep.seed]}  # any rewind step's
    return result


@dataclass(frozen=True)
class TicketPlan:
    """A ticket file's mask trained under `config`'s recipe, one job per seed."""

    config: RunConfig  # its seed is the first replicate's
    path: str | Path  # the ticket file (export --format safetensors)
    replicates: int = 1
    start: str = "stored"  # "stored": the file's weights and start step; "own": this model's initial weights


def _ticket_plan(plan: TicketPlan, runtime: Runtime) -> Planned:
    folder, jobs = ticket_jobs(plan.config, plan.path, [plan.config.seed + r for r in range(plan.replicates)],
                               runtime, plan.start)
    return Planned(jobs, folder)


def _ticket_read(plan: TicketPlan, planned: Planned, runtime: Runtime) -> StudyResult:
    result = StudyResult(planned.layout, single=plan.replicates == 1)
    for job in planned.jobs:
        seed = job.params["config"].seed
        result.replicates[seed] = {"run_dir": runtime.path(job.folder).parent,
                                   "levels": [store.read_summary(runtime.path(job.folder))], "controls": [],
                                   "stability": []}
    return result


TICKET = register_experiment(Experiment(
    "ticket", "a ticket file's mask trained under a config's recipe", TicketPlan, _ticket_plan, _ticket_read,
    validate=lambda plan: check_replicates(plan.replicates), table=study_text, to_json=study_json, command="train"))


def train_ticket(config: RunConfig, path: str | Path, *, replicates: int = 1, start: str = "stored",
                 **keywords: Any) -> StudyResult:
    """Train the mask of a ticket file (export --format safetensors) under `config`'s recipe, one job per
    seed; `start` is "stored" (the file's weights and start step) or "own" (this model's initial weights).
    Keyword arguments as for run_study."""
    return drive(TICKET, TicketPlan(config, path, replicates, start), **keywords)


def run_lottery(config: RunConfig, **kwargs: Any) -> LotteryResult:
    """Run (or resume, or read back) every level of one replicate of `config` (kind "train": level 0 only).

    Keyword arguments are those of `run_study`. `model_fn` builds any nn.Module in place of the registry's
    model; it is called under torch.manual_seed(the replicate's init seed), and what it builds (class,
    parameter names and shapes) is part of the results' identity.
    """
    result = run_study(StudyPlan(config), **kwargs)
    rep = result.replicates[config.seed]
    return LotteryResult(run_dir=rep["run_dir"], levels=rep["levels"])


__all__ = ["LotteryResult", "StudyPlan", "StudyResult", "TicketPlan", "parse_controls", "plan_jobs", "run_lottery",
           "run_study", "train_ticket"]
