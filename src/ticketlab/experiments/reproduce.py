"""Paper reproductions in one call: a named recipe -> a study plan, its run, and a report.

`lth-lenet`: Frankle & Carbin 2019, LeNet-300-100 (REFERENCE.md 1.1-1.5): Adam 1.2e-3, batch 60, 50K
steps, layer-wise pruning 20% per level with the output layer at 10%, rewinding to initialisation, 5,000
validation examples, evaluation every 100 steps, 5 replicates with 3 random re-initialisations each (the
paper's 15) and 3 random prunings each, 20 levels (down to 1.2% of the weights).

The quick budget keeps the protocol but trains 1,500 steps per level, 3 replicates with one control draw
each, and prunes two paper levels at a time (36% per level, output 19%), so its 8 levels land exactly on
the paper's even ladder points (100, 64.1, 41.1, 26.3, 16.9, 10.8, 6.9, 4.4%). The report says so.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import merge
from ..configure import build_config
from ..errors import TicketlabError
from ..store import read_json, write_json
from .controls import Control
from ..jobs import Runtime
from .registry import Experiment, Planned, drive, register_experiment
from .study import LOTTERY, StudyPlan, StudyResult

BUDGETS = ("quick", "full")


@dataclass(frozen=True)
class Recipe:
    plan: StudyPlan
    notes: tuple[str, ...]


def lth_lenet(dataset: str, budget: str, overrides: dict[str, Any]) -> Recipe:
    base: dict[str, Any] = {"kind": "lottery", "model": {"name": "lenet_300_100"}, "dataset": {"name": dataset}}
    if budget == "full":
        config = build_config(merge(base, {"lottery": {"levels": 20}}, overrides))
        controls = tuple(Control(n, i) for n in ("reinit", "random_prune") for i in range(3))
        notes = ("Full protocol of Frankle & Carbin 2019 (camera-ready): 5 replicates, 15 random "
                 "re-initialisations (3 per replicate), 15 random prunings, 20 levels.",)
        return Recipe(StudyPlan(config, replicates=5, controls=controls), notes)
    quick = {"training": {"train_steps": 1500}, "pruning": {"rate": 0.36, "output_rate": 0.19},
             "lottery": {"levels": 7}}
    config = build_config(merge(base, quick, overrides))
    notes = ("QUICK BUDGET, not the paper's protocol: 1,500 training steps per level instead of 50,000; "
             "3 replicates with 1 re-initialisation and 1 random pruning each (paper: 5 replicates, 15 "
             "re-initialisations); pruning 36% per level (output 19%), i.e. two of the paper's 20% levels at a "
             "time, so the densities are the paper's even ladder points. Accuracies are lower than at 50K "
             "steps; compare the variants with each other, not with the paper's numbers.",)
    return Recipe(StudyPlan(config, replicates=3, controls=(Control("reinit"), Control("random_prune"))), notes)


RECIPES = {"lth-lenet": lth_lenet}


@dataclass(frozen=True)
class ReproducePlan:
    name: str  # a recipe of RECIPES
    dataset: str = "fashion_mnist"
    budget: str = "quick"  # BUDGETS
    report_dir: str | Path | None = None  # default ./report_<experiment>/, never inside the run store
    overrides: dict[str, Any] | None = None  # config sections changing the recipe's settings (listed in its notes)

    @functools.cached_property
    def recipe(self) -> Recipe:
        recipe = RECIPES[self.name](self.dataset, self.budget, self.overrides or {})
        if self.overrides:
            recipe = Recipe(recipe.plan, recipe.notes + (f"Settings changed from the recipe: {self.overrides}",))
        return recipe


def _validate(plan: ReproducePlan) -> None:
    from ..report.html import check_report_dir

    if plan.name not in RECIPES:
        raise TicketlabError(f"unknown reproduction {plan.name!r}; choose one of: {', '.join(RECIPES)}")
    if plan.budget not in BUDGETS:
        raise TicketlabError(f"unknown budget {plan.budget!r}; choose one of: {', '.join(BUDGETS)}")
    # said before hours of training, not after: the default folder lies in the current one
    check_report_dir(Path(plan.report_dir) if plan.report_dir else Path.cwd() / "report_")
    LOTTERY.validate(plan.recipe.plan)


def _read(plan: ReproducePlan, planned: Planned, runtime: Runtime) -> tuple[StudyResult, dict[str, Path]]:
    """The study, its config.json annotated with the recipe's notes, and the report written."""
    from ..report.html import write_report

    result = LOTTERY.read_back(plan.recipe.plan, planned, runtime)
    config_file = result.experiment_dir / "config.json"
    write_json(config_file, {**read_json(config_file), "notes": list(plan.recipe.notes),
                             "recipe": f"{plan.name} ({plan.budget})"})
    out = Path(plan.report_dir) if plan.report_dir else Path(f"report_{result.experiment_dir.name}")
    seeds = [r["run_dir"] for r in result.replicates.values()]
    files = write_report(seeds, out, title=f"{plan.name}: {plan.dataset}, {plan.budget} budget")
    return result, files


REPRODUCE = register_experiment(Experiment(
    "reproduce", "a paper's experiment from a named recipe, with its report", ReproducePlan,
    lambda plan, runtime: LOTTERY.plan(plan.recipe.plan, runtime), _read, validate=_validate,
    configs=lambda plan: [plan.recipe.plan.config], levels=lambda plan: LOTTERY.levels(plan.recipe.plan),
    command="reproduce"))


def reproduce(name: str, *, dataset: str = "fashion_mnist", budget: str = "quick", report_dir: str | Path | None = None,
              overrides: dict[str, Any] | None = None, **keywords: Any) -> tuple[StudyResult, dict[str, Path]]:
    """Run recipe `name` (resuming whatever is stored) and write its report; returns (study, report files).

    `overrides` (config sections, as for `build_config`) change the recipe's settings; the report then
    lists them among its notes, so a changed protocol never passes for the recipe's own. The report goes to
    `report_dir`, by default `./report_<experiment>/`: never into the run store, which reports only read.
    Keyword arguments as for run_study."""
    return drive(REPRODUCE, ReproducePlan(name, dataset, budget, report_dir, overrides), **keywords)
