"""Executors: how a list of jobs is run. Same jobs, same run store, whichever executor runs them.

Executors know jobs only as data (ticketlab.jobs): they order them by their dependencies and call
`execute`; they never import an experiment module. The Ray executor (executors/ray.py) is loaded only when
asked for, so Ray (an optional extra) is never imported otherwise."""

from __future__ import annotations

from typing import Any

from ..errors import TicketlabError
from ..jobs import Runtime
from .local import LocalExecutor, SerialExecutor, ready_order
from .population import PopulationExecutor, parse_population, population_wanted, trained_as

EXECUTORS = ("local", "ray")


def make_executor(kind: str = "local", workers: int | None = 1, address: str | None = None,
                  runtime: Runtime | None = None, population: str | int = "auto") -> Any:
    """"local": `workers` processes on this machine (workers > 1), else this process (`runtime`'s loaded data
    reused). "ray": a Ray cluster at `address` ("auto", "HOST:PORT"), or with address None a Ray instance
    started here with `workers` CPUs (None: all). Either has `run(jobs, options) -> folders`.
    `population` ("auto", "off", N; executors/population.py): with the local executor, ready jobs of one
    architecture and recipe train as one population of up to N in this process (auto: on CUDA only)."""
    size = parse_population(population)
    if kind == "local":
        if address is not None:
            raise TicketlabError("--address is for the ray executor (use --executor ray)")
        if population_wanted(size, runtime.options.device if runtime else "cpu"):
            return PopulationExecutor(runtime, size)
        return LocalExecutor(workers) if workers and workers > 1 else SerialExecutor(runtime)
    if kind == "ray":
        from .ray import RayExecutor

        return RayExecutor(address=address, num_cpus=workers if address is None else None)
    raise TicketlabError(f"unknown executor {kind!r} (use {' or '.join(EXECUTORS)})")


def __getattr__(name: str) -> Any:  # `from ticketlab.executors import RayExecutor`, loaded on first use
    if name == "RayExecutor":
        from .ray import RayExecutor

        return RayExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# RayExecutor: lazy (module __getattr__)
__all__ = ["EXECUTORS", "LocalExecutor", "PopulationExecutor", "SerialExecutor", "make_executor", "parse_population",
           "population_wanted", "ready_order", "trained_as"]
