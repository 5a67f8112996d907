"""Experiment kinds as registered slices, and the one driver that runs them all.

An experiment kind (lottery, ticket, compare, strong, seek, stability, sweep, reproduce, or a user's own) is
one `Experiment`: its typed spec (a dataclass), how it is checked, the jobs it plans and how its result is
read back from the store, with its table and JSON. `drive` does what every kind needs, in one place:

    validate the spec -> the runtime (options, data, each config checked against the data and model
    registries before anything is written) -> plan the jobs -> execute them (in this process, in worker
    processes or on Ray) -> read the result back from the store.

A kind registers itself with `register_experiment`; the CLI generates a command for every registered kind
that has no hand-written one (cli/registered.py: a flag per field of the spec, one call to `drive`), so a new
kind is one module (see tests/test_new_experiment.py, which registers one in the test file).

Below every kind (they import it), above the job machinery (jobs, executors, configure).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from .. import store
from ..config import RunConfig
from ..configure import check_data_size, check_model
from ..data import DataSplits
from ..errors import TicketlabError
from ..executors import EXECUTORS, make_executor, parse_population
from ..jobs import Job, Progress, RunOptions, Runtime


@dataclass
class Planned:
    """What a kind planned: its jobs (listed once each, dependencies first) and what its read-back needs to
    find their results (the replicates, the experiments' folders, ...)."""

    jobs: list[Job]
    layout: Any = None
    notes: list[str] = field(default_factory=list)  # jobs not run, and why (kinds with partial=True)


def _nothing(spec: Any) -> None:
    return None


def _one_config(spec: Any) -> list[RunConfig]:
    return [spec.config]


def _no_levels(spec: Any) -> int:
    return 0


def _plain_json(result: Any) -> Any:
    return json.loads(json.dumps(result, default=str))


def _json_table(result: Any) -> str:
    return json.dumps(_plain_json(result), indent=1)


@dataclass(frozen=True)
class Experiment:
    name: str  # the experiment kind, and its command's name
    help: str  # one line: what it computes
    spec: type  # its typed settings: a dataclass (fields declared with settings.setting for a generated command)
    plan: Callable[[Any, Runtime], Planned]  # spec, runtime -> its jobs (writes its experiments' config.json)
    read_back: Callable[[Any, Planned, Runtime], Any]  # -> its result, read from the store
    validate: Callable[[Any], None] = _nothing  # a bad spec raises TicketlabError before anything is written
    configs: Callable[[Any], list[RunConfig]] = _one_config  # the configs checked against data and model
    levels: Callable[[Any], int] = _no_levels  # the deepest pruning level the model must survive
    table: Callable[[Any], str] = _json_table  # the result as the command prints it
    to_json: Callable[[Any], Any] = _plain_json  # the result as `--json` prints it
    # True: a job that fails (a collapsed or diverged level) leaves the other jobs' results to read back; its
    # message goes into the planned notes. False: it stops the experiment.
    partial: bool = False
    command: str | None = None  # the hand-written command that runs it; None: generated from the spec


EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(experiment: Experiment) -> Experiment:
    """Add a kind (its name must be new: two kinds of one name would shadow each other's results)."""
    if experiment.name in EXPERIMENTS and EXPERIMENTS[experiment.name] is not experiment:
        raise ValueError(f"an experiment kind named {experiment.name!r} is already registered")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def drive(experiment: Experiment, spec: Any, *, options: RunOptions | None = None, workers: int = 1,
          executor: str = "local", address: str | None = None, progress: Progress | None = None,
          data: DataSplits | None = None, **run_options: Any) -> Any:
    """Run (or resume, or read back) `spec` of `experiment`. The options every job sees: `options`, or
    `run_options`' keywords (those of `make_options`: root, data_dir, device, threads, download,
    checkpoint_every, model_fn, population). `data`: the data set's tensors, used in this process in place of
    loading the config's data set (workers load it by name).

    workers > 1: independent jobs run in that many processes (the local executor); 1: in this process.
    executor="ray": one Ray task per job on the cluster at `address` ("auto", "HOST:PORT"; its nodes must see
    the store's root at the same path), or with address None on a Ray instance started here with `workers` CPUs.
    """
    if options is not None and run_options:
        raise TypeError(f"give options or their keywords ({', '.join(run_options)}), not both")
    if not isinstance(spec, experiment.spec):
        raise TypeError(f"{experiment.name} takes a {experiment.spec.__name__}, got {type(spec).__name__}")
    experiment.validate(spec)
    options = options or make_options(**run_options)
    check_executor(executor, address, options.population, workers)
    if executor == "ray":  # each job trains alone there: no population in any identity
        options = dataclasses.replace(options, population="off")
    runtime = Runtime(options, progress)
    for config in experiment.configs(spec):
        if data is not None:
            runtime.add_data(config.dataset, data)
        check_before_planning(config, experiment.levels(spec), runtime, data_given=data is not None)
    planned = experiment.plan(spec, runtime)
    unique: dict[str, Job] = {}
    for job in planned.jobs:  # a job two parts of the plan need (a shared dense run) runs once, first in order
        unique.setdefault(job.folder, job)
    try:
        execute_all(list(unique.values()), runtime, workers, executor, address)
    except TicketlabError as e:  # e.g. IMP collapsed at some level: its deeper levels are not run, the rest is
        if not experiment.partial or not any(runtime.done(j.folder) for j in planned.jobs):
            raise
        planned.notes.append(str(e))
    return experiment.read_back(spec, planned, runtime)


def make_options(root: Path | str = store.DEFAULT_ROOT, data_dir: str | Path | None = None, device: str = "cpu",
                 threads: int = 1, download: bool = True, checkpoint_every: int = 1000,
                 model_fn: Callable[[], nn.Module] | None = None, population: str | int = "auto") -> RunOptions:
    """RunOptions from the keywords every run_* function takes."""
    return RunOptions(root=str(root), data_dir=str(data_dir) if data_dir else None, device=device, threads=threads,
                      download=download, checkpoint_every=checkpoint_every, model_fn=model_fn,
                      population=parse_population(population))


def check_executor(executor: str, address: str | None, population: str | int, workers: int | None = 1) -> None:
    """Executor settings that contradict each other, said before anything is planned or written."""
    if executor not in EXECUTORS:
        raise TicketlabError(f"unknown executor {executor!r} (use {' or '.join(EXECUTORS)})")
    if executor == "local" and address is not None:
        raise TicketlabError("--address is for the ray executor (use --executor ray)")
    if executor == "ray" and address is not None:  # before a folder is made for a run that cannot start
        from ..executors.ray import check_reachable

        check_reachable(address)
    if executor == "ray" and population not in ("auto", "off"):
        raise TicketlabError(f"--population {population} groups jobs in this process (the local executor); the ray "
                             "executor trains each job alone: use --executor local, or leave --population out")
    if executor == "local" and population not in ("auto", "off") and workers and workers > 1:
        raise TicketlabError(f"--population {population} trains in this process, so --workers {workers} would be "
                             "unused: give one of them")


def check_before_planning(config: RunConfig, levels: int, runtime: Runtime, data_given: bool) -> None:
    """What only the data registry and the network can tell, said before anything is loaded or written: the
    split and batch fit the registered data set (unless the caller gave its own tensors), and the registry's
    model builds and keeps some weight after `levels` (configure.check_data_size, check_model)."""
    if not data_given:
        check_data_size(config)
    if runtime.options.model_fn is None:
        check_model(config, levels)


def execute_all(jobs: list[Job], runtime: Runtime, workers: int, executor: str = "local",
                address: str | None = None) -> None:
    """executor "local": worker processes for workers > 1, else this process (its loaded data reused);
    "ray": Ray tasks on the cluster at `address` (None: a Ray instance started here with `workers` CPUs)."""
    make_executor(executor, workers, address, runtime, runtime.options.population).run(jobs, runtime.options)


def check_replicates(replicates: int) -> None:
    if replicates < 1:
        raise TicketlabError(f"replicates must be at least 1, got {replicates}")


def check_densities(densities: list[float], what: str = "densities") -> None:
    """Each in (0, 1), each once (a density given twice would count one job as two replicates)."""
    for d in densities:
        if not 0 < d < 1:
            raise TicketlabError(f"{what} must be in (0, 1), got {d}")
    check_once(densities, what)


def check_once(values: list[Any], what: str) -> None:
    twice = sorted({v for v in values if values.count(v) > 1}, key=str)
    if twice:
        raise TicketlabError(f"{what}: {', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in twice)} "
                             "given twice (each is one job per seed)")
