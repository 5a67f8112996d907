"""A study: replicates (seeds) x IMP levels x controls, run one replicate after another.

Within a replicate the levels are ordered (each prunes the one before) and its controls follow the levels
they branch from. Everything lands in the run store, so a study that is rerun, extended (more seeds, more
levels, more controls) or interrupted only trains what is missing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..store import experiment_dir
from .controls import Control, run_control
from .lottery import prepare, run_levels


@dataclass(frozen=True)
class StudyPlan:
    config: RunConfig  # its seed is the first replicate's
    replicates: int = 1
    controls: tuple[Control, ...] = ()
    control_levels: tuple[int, ...] | None = None  # None: every level

    @property
    def seeds(self) -> list[int]:
        return [self.config.seed + r for r in range(self.replicates)]

    def levels_for_controls(self) -> list[int]:
        every = range(self.config.lottery.levels + 1) if self.config.kind == "lottery" else range(1)
        chosen = every if self.control_levels is None else [lvl for lvl in self.control_levels if lvl in every]
        return list(chosen)


@dataclass
class StudyResult:
    experiment_dir: Path
    replicates: dict[int, dict[str, Any]] = field(default_factory=dict)  # seed -> {"levels", "controls"}


def plan_jobs(plan: StudyPlan, **prepare_kwargs: Any) -> list[Any]:
    """Every job of the plan as a plain description, levels before the controls that branch from them."""
    from ..executors import JobSpec, options_from

    options = options_from(prepare_kwargs)
    jobs = []
    levels = plan.config.lottery.levels if plan.config.kind == "lottery" else 0
    for seed in plan.seeds:
        config = dataclasses.replace(plan.config, seed=seed)
        jobs += [JobSpec(config, level, None, options) for level in range(levels + 1)]
        jobs += [JobSpec(config, level, c, options) for level in plan.levels_for_controls() for c in plan.controls
                 if c.applies_to(level)]
    return jobs


def run_study(plan: StudyPlan, *, workers: int = 1, **prepare_kwargs: Any) -> StudyResult:
    """Run (or resume, or read back) every job of `plan`; keyword arguments are those of `prepare`.

    workers > 1: independent jobs run in that many processes (the local executor), then everything is
    read back from the store; workers = 1: one job after another in this process.
    """
    if workers > 1:
        from ..executors import LocalExecutor

        LocalExecutor(workers).run(plan_jobs(plan, **prepare_kwargs))
    result = StudyResult(experiment_dir(plan.config, prepare_kwargs.get("root", "runs")))
    for seed in plan.seeds:
        rep = prepare(dataclasses.replace(plan.config, seed=seed), **prepare_kwargs)
        prepare_kwargs["data"] = rep.data  # load once
        levels = run_levels(rep).levels
        controls = [run_control(rep, level, c) for level in plan.levels_for_controls() for c in plan.controls
                    if c.applies_to(level)]
        result.replicates[seed] = {"levels": levels, "controls": controls}
    return result


def parse_controls(spec: str, reps: int = 1,
                   noise_scales: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)) -> tuple[Control, ...]:
    """'reinit,random_prune,noise' -> Control objects, `reps` draws each (noise: each scale)."""
    out = []
    for name in [s.strip() for s in spec.split(",") if s.strip()]:
        scales = noise_scales if name == "noise" else (0.0,)
        out += [Control(name, index=i, scale=s) for s in scales for i in range(reps)]
    return tuple(out)
