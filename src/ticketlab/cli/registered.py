"""A command for every registered experiment kind (experiments/registry.py) that has no hand-written one:
the runtime flags and a flag per field of its spec; build the spec, one call to the driver, print."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..experiments.registry import EXPERIMENTS, drive
from .flags import add_runtime_flags, add_setting_flags, spec_from_args
from .runtime import launch_from_args


def add_parsers(sub: Any, taken: set[str]) -> None:
    """Read when the parser is built, so after every registration (a user's module, a test's)."""
    for name, experiment in EXPERIMENTS.items():
        if experiment.command is not None or name in taken:  # its hand-written command runs it
            continue
        p = sub.add_parser(name, help=experiment.help)
        add_setting_flags(p, experiment.spec)
        add_runtime_flags(p)
        p.set_defaults(handler=run_registered, _experiment=name)


def run_registered(args: argparse.Namespace) -> int:
    experiment = EXPERIMENTS[args._experiment]
    launch = launch_from_args(args)
    spec = spec_from_args(experiment.spec, args)
    result = drive(experiment, spec, options=launch.options, workers=launch.workers_for(True),
                   executor=launch.executor, address=launch.address, progress=launch.progress)
    print(json.dumps(experiment.to_json(result)) if args.json else experiment.table(result))
    return 0
