"""Sweeps: the cross product of settings (width, label noise, data size, any config field) x seeds, each
point an ordinary study (dense runs, or IMP levels when levels > 0) planned with study.plan_jobs, all run by
one executor, every result read back as one row.

Each point's config is built from the user's config layers as given (preset, TOML, flags; durations still
"2ep") plus the point's settings, so durations in epochs are resolved per point: a point with another
dataset.subsample, training.batch_size or dataset.val_size trains the same number of epochs, not the base's
step count. A caller that passes a built RunConfig instead gets its durations as step counts, unchanged at
every point (they were resolved once, for the base).

A level built on a collapsed or diverged level is not run; the sweep still reads back everything that
finished, gives each job that did not a "not run" row, and keeps the executor's message in `notes`.

Points are content-addressed like every other job, so a sweep that is rerun, extended (another width, more
seeds, more levels) or interrupted trains only what is missing; two sweeps that share a point share its runs.

A row is one trained job: the swept settings' values, seed, level, density, the parameter counts (`params`:
every parameter of the model; `weights`: the prunable ones; `surviving`: the prunable weights the mask
keeps) and the job's accuracies and losses: final test accuracy (clean test labels), early-stop test accuracy,
final training loss and accuracy on the (noisy) labels it was trained on, and on the clean ones.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .. import store
from ..config import SECTIONS, RunConfig, merge
from ..configure import NoEffect, build_config
from ..data import DataSplits
from ..errors import TicketlabError
from ..jobs import Job, Runtime
from ..masks import prunable
from ..models import construct
from ..pruning import ladder_density, layers_of
from .registry import Experiment, Planned, check_replicates, drive, register_experiment
from .study import StudyPlan, plan_jobs

MAX_POINTS = 10_000  # sane bound on the cross product: more is a typo
ROW_METRICS = ("final_test_accuracy", "early_stop_test_accuracy", "final_train_accuracy", "final_train_loss",
               "final_train_accuracy_clean", "final_val_accuracy")


@dataclass
class Sweep:
    axes: dict[str, list[Any]]  # setting -> its values, as the configs hold them, in the order given
    points: list[dict[str, Any]]  # one per combination: {setting: value}
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per trained job (point x seed x level)
    levels: int = 0
    base: RunConfig | None = None  # the config without the point's settings (kind and levels set)
    layers: dict[str, Any] | None = None  # the unresolved layers the points are built from (None: from `base`)
    notes: list[str] = field(default_factory=list)  # jobs not run, and why

    def config(self, point: dict[str, Any]) -> RunConfig:
        """The point's config: from the layers when the sweep has them (epochs resolved for the point)."""
        assert self.base is not None
        return point_config(self.layers if self.layers is not None else self.base, point, set())  # checked


def parse_over(specs: list[str]) -> dict[str, list[str]]:
    """['model.width=0.25,0.5,1', 'dataset.label_noise=0,0.2'] -> {setting: [values as text]}."""
    over: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not items:
            raise TicketlabError(f"--over: cannot read {spec!r} (use SECTION.FIELD=V1,V2,.., e.g. model.width=0.5,1,2)")
        if key in over:
            raise TicketlabError(f"--over: {key} is given twice")
        over[key] = items
    return over


def check_setting(key: str) -> tuple[str, str]:
    """'model.width' -> ('model', 'width'), or one line naming what exists."""
    section, _, name = key.partition(".")
    if section not in SECTIONS:
        raise TicketlabError(f"unknown setting {key!r} to sweep over: use SECTION.FIELD with a section among "
                             f"{', '.join(SECTIONS)} (e.g. model.width, dataset.label_noise)")
    known = [f.name for f in fields(SECTIONS[section])]
    if name not in known:
        raise TicketlabError(f"unknown setting {key!r} to sweep over: [{section}] has {', '.join(known)}")
    if (section, name) == ("lottery", "levels"):
        raise TicketlabError("lottery.levels is not swept: give --levels; every level is a point of its own "
                             "(the rows' density)")
    return section, name


def point_config(base: RunConfig | dict[str, Any], point: dict[str, Any],
                 without_effect: set[tuple[str, str]] | None = None,
                 only: set[tuple[str, str]] | None = None) -> RunConfig:
    """`base` with the point's settings, coerced and validated as a TOML file's would be.

    `base` as config layers (a dict, durations as the user gave them): built with build_config from the layers
    plus the point, so epochs ("2ep") become steps for the point's data size and batch size. `base` as a
    RunConfig: its durations are already step counts and stay so at every point (every field is given, so
    the model's preset changes nothing either). A setting given where it has no effect at this point (momentum
    at an adam point) is refused, or with `without_effect` reset and added to it; `only`: the settings the
    applies rule treats as given (default all)."""
    layers: dict[str, Any] = {}
    for key, value in point.items():
        section, name = check_setting(key)
        layers.setdefault(section, {})[name] = value
    merged = merge(base.to_dict() if isinstance(base, RunConfig) else base, layers)
    given = merge(merged)
    if only is not None:  # the user's word on these settings alone
        given = {k: {n: v for n, v in val.items() if (k, n) in only} for k, val in given.items()
                 if isinstance(val, dict)}
    while True:  # a setting that has no effect at this point (momentum at an adam point): reset here, noted
        try:
            return build_config(merged, given=given)
        except NoEffect as e:
            if without_effect is None or e.key[1] in layers.get(e.key[0], {}):  # a swept value: always said
                raise
            without_effect.add(e.key)
            given = {k: ({n: v for n, v in val.items() if (k, n) != e.key} if isinstance(val, dict) else val)
                     for k, val in given.items()}


def plan_sweep(base: RunConfig | dict[str, Any], over: dict[str, list[Any]], levels: int = 0) -> Sweep:
    """The points of the cross product of `over` on `base` (levels > 0: lottery runs to that level). `base`:
    config layers (a dict, as the CLI passes them: epochs resolved per point) or a RunConfig (durations are
    the step counts it holds, at every point)."""
    if not over:
        raise TicketlabError("a sweep needs at least one setting to vary (e.g. --over model.width=0.5,1,2)")
    if levels < 0:
        raise TicketlabError(f"levels must be >= 0, got {levels}")
    for key, values in over.items():
        check_setting(key)
        if not values:
            raise TicketlabError(f"{key}: no values to sweep over")
    count = 1
    for values in over.values():
        count *= len(values)
    if count > MAX_POINTS:
        raise TicketlabError(f"the sweep has {count:,} points, more than the {MAX_POINTS:,} allowed")
    kind = "lottery" if levels > 0 else "train"
    layers: dict[str, Any] | None = None
    if isinstance(base, RunConfig):
        base = dataclasses.replace(base, kind=kind, lottery=dataclasses.replace(base.lottery, levels=levels))
    elif isinstance(base, dict):
        for key in over:  # the point's value would replace it at every point: said, not dropped
            section, name = check_setting(key)
            if isinstance(base.get(section), dict) and name in base[section]:
                raise TicketlabError(f"{key} is swept (--over) and also set to {base[section][name]!r} (a flag or "
                                     "the config file): give it once")
        layers = merge(base, {"kind": kind, "lottery": {"levels": levels}})
        base = point_config(layers, {}, set())  # checked point by point below
    else:
        raise TicketlabError(f"a sweep's base must be a RunConfig or config layers (a dict), got {base!r}")
    points, axes = [], {k: [] for k in over}
    idle: list[set[tuple[str, str]]] = []  # per point: the given settings without effect there
    for combo in itertools.product(*over.values()):
        raw = dict(zip(over, combo))
        idle.append(set())
        config = point_config(layers if layers is not None else base, raw, idle[-1])
        point = {k: _value(config, k) for k in over}
        for k, v in point.items():
            if v not in axes[k]:
                axes[k].append(v)
        if point not in points:  # e.g. 0.5 and 0.50: one point
            points.append(point)
    if idle and (nowhere := set.intersection(*idle)):  # without effect at every point: the plain rule's line
        first = dict(zip(over, next(itertools.product(*over.values()))))
        point_config(layers if layers is not None else base, first, only=nowhere)
    return Sweep(axes, points, levels=levels, base=base, layers=layers)


def _value(config: RunConfig, key: str) -> Any:
    section, name = key.split(".", 1)
    value = getattr(getattr(config, section), name)
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class SweepPlan:
    base: RunConfig | dict[str, Any]  # as for plan_sweep: config layers (epochs per point) or a RunConfig
    over: dict[str, list[Any]]  # setting -> its values
    replicates: int = 1
    levels: int = 0  # > 0: IMP levels at every point

    @functools.cached_property
    def sweep(self) -> Sweep:
        """The points (built once: every point's config is checked when it is built)."""
        return plan_sweep(self.base, self.over, self.levels)


def _validate(plan: SweepPlan) -> None:
    check_replicates(plan.replicates)
    plan.sweep  # noqa: B018  (every point checked before anything is written)


def _plan(plan: SweepPlan, runtime: Runtime) -> Planned:
    jobs: list[Job] = []
    planned = []
    for point in plan.sweep.points:
        config = plan.sweep.config(point)
        reps, point_jobs = plan_jobs(StudyPlan(config, replicates=plan.replicates), runtime)
        planned.append((point, config, reps))
        jobs += point_jobs
    return Planned(jobs, planned)


def _read(plan: SweepPlan, planned: Planned, runtime: Runtime) -> Sweep:
    sweep, levels = dataclasses.replace(plan.sweep, rows=[], notes=list(planned.notes)), plan.levels
    for point, config, reps in planned.layout:
        counts = parameter_counts(config, runtime)
        done = {}
        for rep in reps:
            for level in range(levels + 1):
                folder = runtime.path(rep.level(level))
                if store.is_done(folder):
                    done[(rep.seed, level)] = row(point, store.read_summary(folder), counts, folder)
        for rep in reps:
            for level in range(levels + 1):
                if (rep.seed, level) not in done:
                    done[(rep.seed, level)] = not_run_row(point, rep.seed, level, config, counts,
                                                          runtime.path(rep.level(level)), done.values(), runtime)
                sweep.rows.append(done[(rep.seed, level)])
    return sweep


SWEEP = register_experiment(Experiment(
    "sweep", "the cross product of settings x seeds, each point a study; every result one row", SweepPlan,
    _plan, _read, validate=_validate, configs=lambda plan: [plan.sweep.config(p) for p in plan.sweep.points],
    levels=lambda plan: plan.levels, partial=True, command="sweep"))


def run_sweep(base: RunConfig | dict[str, Any], over: dict[str, list[Any]], *, replicates: int = 1, levels: int = 0,
              data: DataSplits | None = None, **keywords: Any) -> Sweep:
    """Run (or read back) every point of the sweep x `replicates` seeds; keyword arguments as run_study's.
    Every point is checked before anything is written. `base` as for plan_sweep: config layers resolve
    durations in epochs per point, a RunConfig keeps its step counts. Jobs that could not run (built on a
    collapsed or diverged level) are "not run" rows, and the executor's message is in the sweep's notes."""
    plan = SweepPlan(base, over, replicates, levels)
    _validate(plan)
    if data is not None and any(k.startswith("dataset.") for k in over):
        raise TicketlabError("a sweep given its data tensors cannot vary dataset settings (the tensors would be "
                             "used for every point): sweep a registered data set instead")
    return drive(SWEEP, plan, data=data, **keywords)


def parameter_counts(config: RunConfig, runtime: Runtime) -> dict[str, int]:
    """{'params': every parameter, 'weights': the prunable weights} of the point's model, built without
    memory (meta device) where it can be."""
    model = _model(config, runtime)
    return {"params": sum(p.numel() for p in model.parameters()),
            "weights": sum(p.numel() for p in prunable(model).values())}


def not_run_row(point: dict[str, Any], seed: int, level: int, config: RunConfig, counts: dict[str, int],
                folder: Path, finished: Any, runtime: Runtime) -> dict[str, Any]:
    """A job that did not run (it builds on a collapsed or diverged job): no metrics; its density is the one
    another seed of the point reached at that level, else the IMP ladder's, so it joins that level's line."""
    same = [r for r in finished if r["level"] == level and r["status"] != "not run"]
    if same:
        density = same[0]["density"]
    else:
        density = ladder_density(layers_of(_model(config, runtime)), config.pruning, level)
    return {**point, "seed": seed, "level": level, "density": density, "status": "not run", **counts,
            "surviving": round(density * counts["weights"]), **{m: None for m in ROW_METRICS},
            "train_labels_changed": 0, "job_dir": str(folder)}


def _model(config: RunConfig, runtime: Runtime) -> torch.nn.Module:
    data = runtime.data(config.dataset)
    if runtime.options.model_fn is not None:
        return runtime.model(config, data, 0)
    with torch.device("meta"):
        return construct(config.model, data.input_shape, data.num_classes)


def row(point: dict[str, Any], summary: dict[str, Any], counts: dict[str, int], folder: Path) -> dict[str, Any]:
    layer_counts = summary.get("layer_counts") or {}
    return {**point, "seed": summary["seed"], "level": summary.get("level", 0), "density": summary["density"],
            "status": summary.get("status", "ok"), **counts,
            "surviving": sum(layer_counts.values()) if layer_counts else round(summary["density"] * counts["weights"]),
            **{m: summary.get(m) for m in ROW_METRICS},
            "train_labels_changed": summary.get("train_labels_changed", 0), "job_dir": str(folder)}


__all__ = ["Sweep", "parse_over", "plan_sweep", "point_config", "run_sweep"]
