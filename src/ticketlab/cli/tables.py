"""Printing a report's head and the files written (the text tables themselves: report/tables.py)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

PRINTED = ("What was run", "Summary of verdicts", "Tables")  # a report page's sections a command prints
UNSHOWN = {"handler", "command", "json", "quiet"}  # not flags, or flags that change only what is printed


def print_report(files: dict[str, Path], as_json: bool, cut: str | None = None) -> None:
    """A report's JSON, or the head of its page (its title, what was run, the verdicts and the tables; an older
    page without these sections: its Markdown up to `cut`) and the files written."""
    if as_json:
        print(files["json"].read_text())
        return
    text = files["md"].read_text()
    parts = text.split("\n## ")
    if any(p.startswith(PRINTED) for p in parts[1:]):
        print("\n\n## ".join([parts[0].strip()] + [p.strip() for p in parts[1:] if p.startswith(PRINTED)]))
    else:
        print(text.split(cut)[0].strip() if cut else text.strip())
    print_files(files)


def print_files(files: dict[str, Any]) -> None:
    for kind, path in files.items():
        print(f"{kind}: {path}")


def command_of(args: Any) -> str:
    """The command line that made a report, for its Reproduce section: as typed when this process is that
    command, else rebuilt from the parsed flags (every flag that holds a value, defaults included)."""
    if sys.argv[1:2] == [getattr(args, "command", None)]:
        return "ticketlab " + shlex.join(sys.argv[1:])
    words = [args.command]
    for name, value in vars(args).items():
        if name in UNSHOWN or name.startswith("_") or value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        for v in value if isinstance(value, list) else [value]:
            words += [flag] if v is True else [flag, str(v)]
    return "ticketlab " + shlex.join(words)
