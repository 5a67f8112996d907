"""`construct`: a strong lottery ticket built by an existence proof's construction (experiments/construct.py),
its flags generated from ConstructPlan's fields."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..store import DEFAULT_ROOT
from .flags import add_setting_flags, spec_from_args
from .runtime import check_out


def add_parsers(sub: Any) -> None:
    from ..experiments.construct import CONSTRUCT, ConstructPlan

    p = sub.add_parser("construct", help=CONSTRUCT.help)
    add_setting_flags(p, ConstructPlan)
    p.add_argument("--out", default=None, help="run store root (default ./runs or $TICKETLAB_RUNS)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    p.set_defaults(handler=construct)


def construct(args: argparse.Namespace) -> int:
    from ..experiments.construct import CONSTRUCT, ConstructPlan
    from ..experiments.registry import drive

    root = args.out or DEFAULT_ROOT
    check_out(root)
    plan = spec_from_args(ConstructPlan, args)
    result = drive(CONSTRUCT, plan, root=root)  # one job, in this process
    print(json.dumps(CONSTRUCT.to_json(result)) if args.json else CONSTRUCT.table(result))
    return 0
