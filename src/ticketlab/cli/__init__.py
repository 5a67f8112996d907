"""The `ticketlab` command: parse -> typed objects -> one library call -> print.

    flags.py       flags generated from the config dataclasses and specs (settings.setting), runtime flags
    runtime.py     the runtime flags as RunOptions and a Launch, checked once (the one place --device is read)
    lifecycle.py   SIGTERM like Ctrl-C, exit codes, an OSError as one line
    tables.py      a report's head and its files, printed
    study.py       lottery, train, stability, reproduce
    methods.py     compare, sweep, strong, plant, seek
    stored.py      report, export, verify
    registered.py  a command per registered experiment kind without a hand-written one
"""

from __future__ import annotations

import argparse
import sys

from . import construct, methods, registered, stored, study
from .lifecycle import Terminated, one_line, run_command  # noqa: F401  (Terminated: this API)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not a usage dump
        command = " ".join(self.prog.split()[1:])  # "" for `ticketlab` itself, else its subcommand
        hint = " ".join(["ticketlab", command]).strip()
        self.exit(2, f"ticketlab: error: {one_line(message)} (see {hint} --help)\n")


def parser() -> argparse.ArgumentParser:
    """Built on each call, so the help lists every model, data set and experiment registered by then."""
    p = _Parser(prog="ticketlab", description="Find, check and study lottery tickets.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    study.add_parsers(sub)
    methods.add_parsers(sub)
    stored.add_parsers(sub)
    construct.add_parsers(sub)
    registered.add_parsers(sub, taken=set(sub.choices))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for name, value in vars(args).items():  # argparse turns `--flag=--` into [] (a CPython bug): one line
        if isinstance(value, list) and name not in ("run_dirs", "over") and not name.startswith("_"):
            flag = "--" + name.replace("_", "-")
            sys.stderr.write(f"ticketlab: error: argument {flag}: expected one argument (see ticketlab "
                             f"{args.command} --help)\n")
            return 2
    return run_command(args.handler, args)
