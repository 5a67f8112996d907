"""`report`, `export` and `verify`: commands that read the run store and never train."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import TicketlabError
from .flags import at_least_one
from .tables import print_files


def add_parsers(sub: Any) -> None:
    rep = sub.add_parser("report", help="HTML/Markdown report, figures and tables from stored runs")
    rep.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="experiment folders or their seed_<s> folders")
    rep.add_argument("--out", help="report folder, outside the run store (default ./report_<experiment>)")
    rep.add_argument("--spread", choices=["minmax", "std"], default="minmax", help="error bars (default min/max)")
    rep.add_argument("--title")
    rep.add_argument("--partial", action="store_true", help="exit 0 when some jobs could not be read (damaged, "
                     "unfinished, a broken link); they are named at the top of the report either way")
    fmt = rep.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="also print the aggregated table as CSV")
    fmt.add_argument("--json", action="store_true", help="also print the aggregated table as JSON")
    rep.set_defaults(handler=report)
    ex = sub.add_parser("export", help="write a ticket (one level of a run) as a portable file")
    ex.add_argument("run_dir", metavar="RUN", help="a replicate folder (.../seed_<s>) or an experiment folder "
                    "with one replicate")
    ex.add_argument("--level", type=int, required=True)
    ex.add_argument("--format", choices=["safetensors", "dense", "torch-prune", "sparse"], default="safetensors")
    ex.add_argument("--out", help="file or folder, outside the run store (default: ./ticket_level_<L>.<ext> "
                    "in the current folder)")
    ex.add_argument("--batch-size", type=at_least_one, default=256,
                    help="sparse: the inference batch to optimise for")
    ex.set_defaults(handler=export)
    vf = sub.add_parser("verify", help="check a run store: damaged or missing files, leftovers, dangling links")
    vf.add_argument("path", metavar="PATH", help="a store root, experiment, replicate or job folder")
    vf.add_argument("--json", action="store_true", help="print the problems as a JSON list")
    vf.set_defaults(handler=verify)


def report(args: argparse.Namespace) -> int:
    from ..report.aggregate import experiment_dirs
    from ..report.html import write_report

    out = args.out or f"report_{experiment_dirs(args.run_dirs)[0][0].name}"  # never inside the run store
    unread: list[str] = []
    files = write_report(args.run_dirs, out, spread=args.spread, title=args.title, unread=unread)
    if args.json:
        print(Path(files["json"]).read_text())
    elif args.csv:
        sys.stdout.write(Path(files["csv"]).read_text())
    else:
        print_files(files)
    if unread and not args.partial:
        raise TicketlabError(f"{len(unread)} job(s) could not be read and are left out (named at the top of the "
                             f"report; first: {unread[0]}): rerun the command that made them, or pass --partial")
    return 0


def export(args: argparse.Namespace) -> int:
    from .. import store
    from ..export import export_ticket

    run_dir = Path(args.run_dir)
    if store.is_experiment(run_dir):  # an experiment folder: its only replicate
        seeds = store.seed_dirs(run_dir)
        if len(seeds) != 1:
            raise TicketlabError(f"{run_dir} holds {len(seeds)} replicates; name one: {run_dir}/seed_<s>")
        run_dir = seeds[0]
    path = export_ticket(run_dir, args.level, args.format, args.out or Path("."),  # never inside the run store
                         batch_size=args.batch_size)
    print(path)
    return 0


def verify(args: argparse.Namespace) -> int:
    from ..store import verify as verify_store

    problems = verify_store(Path(args.path))
    if args.json:
        print(json.dumps(problems))
    elif problems:
        print("\n".join(problems))
        print(f"{len(problems)} problem(s) found")
    else:
        print(f"{args.path}: no problems found")
    return 1 if problems else 0
