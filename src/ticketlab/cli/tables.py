"""Printing a report's head and the files written (the text tables themselves: report/tables.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def print_report(files: dict[str, Path], as_json: bool, cut: str) -> None:
    """A report's JSON, or the head of its Markdown (up to `cut`) and the files written."""
    if as_json:
        print(files["json"].read_text())
        return
    print(files["md"].read_text().split(cut)[0].strip())
    print_files(files)


def print_files(files: dict[str, Any]) -> None:
    for kind, path in files.items():
        print(f"{kind}: {path}")
