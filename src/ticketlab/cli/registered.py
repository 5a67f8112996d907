"""A command for every registered experiment kind (experiments/registry.py) that has no hand-written one:
the runtime flags and a flag per field of its spec; build the spec, one call to the driver, print.

The registry is optional here: where `ticketlab.experiments.registry` does not exist, there are no such
commands (the hand-written ones stand alone)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from typing import Any

from .flags import add_runtime_flags, add_setting_flags, spec_from_args
from .runtime import launch_from_args

REGISTRY = "ticketlab.experiments.registry"


def registered_experiments() -> dict[str, Any]:
    """name -> Experiment, read when the parser is built (after every registration); {} without a registry."""
    if importlib.util.find_spec(REGISTRY) is None:
        return {}
    return dict(importlib.import_module(REGISTRY).EXPERIMENTS)


def add_parsers(sub: Any, taken: set[str]) -> None:
    for name, experiment in registered_experiments().items():
        if name in taken:  # a hand-written command of that name stays
            continue
        p = sub.add_parser(name, help=experiment.help)
        add_setting_flags(p, experiment.spec)
        add_runtime_flags(p)
        p.set_defaults(handler=run_registered, _experiment=name)


def run_registered(args: argparse.Namespace) -> int:
    registry = importlib.import_module(REGISTRY)
    experiment = registry.EXPERIMENTS[args._experiment]
    launch = launch_from_args(args)
    spec = spec_from_args(experiment.spec, args)
    result = registry.drive(experiment, spec, options=launch.options, workers=launch.workers_for(True),
                            executor=launch.executor, address=launch.address, progress=launch.progress)
    print(json.dumps(experiment.to_json(result)) if args.json else experiment.table(result))
    return 0
