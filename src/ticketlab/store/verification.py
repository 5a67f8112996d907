"""`verify`: every problem under a folder of a run store, one line each, changing nothing.

A finished job whose summary was written before summaries recorded their own hash is not a problem (it is
accepted as it is), but its summary's content cannot be checked: verify says how many such jobs it found,
in a note, apart from the problems."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import TicketlabError
from ..files import is_tmp
from .done import SUMMARY_HASH, _problems
from .formats import _Damaged, _read_checkpoint, _reason, _say
from .layout import CHECKPOINT, CONFIG, SUMMARY, seed_of
from .records import config_problem


def verify(path: Path | str, notes: list[str] | None = None) -> list[str]:
    """Every problem found under `path` (a store root, an experiment, a replicate or a job folder), one line
    each, changing nothing: finished jobs' damaged or missing files, unreadable summaries, configs and
    checkpoints, inputs recomputed with other results, links to nothing, temporary files left by killed
    writers, checkpoints left in finished jobs, summaries that do not match their own hash, configs of
    another shape. A lottery's level 0 is checked through its link. What is not a problem but could not be
    checked (summaries without their own hash) is appended to `notes`, or said in one line on stderr when
    no `notes` list is given."""
    top = Path(path)
    if not top.is_dir():
        raise TicketlabError(f"{top} is not a folder")
    problems: list[str] = []
    seen: set[str] = set()
    unhashed: list[Path] = []  # finished jobs whose summary records no hash of itself

    def visit(folder: Path) -> None:
        if (real := os.path.realpath(folder)) in seen:
            return
        seen.add(real)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            problems.append(f"{folder}: cannot be read ({e.strerror or _reason(e)})")
            return
        names = {e.name for e in entries}
        if SUMMARY in names:
            found, summary = _problems(folder)
            problems.extend(f"{folder}: {p}" for p in found)
            if not found and SUMMARY_HASH not in summary:
                unhashed.append(folder)
            if CHECKPOINT in names:
                problems.append(f"{folder}: {CHECKPOINT} is left over from the finished job")
        elif CHECKPOINT in names:
            try:
                _read_checkpoint(folder / CHECKPOINT)
            except _Damaged as e:
                problems.append(f"{folder / CHECKPOINT} is damaged ({e})")
            except OSError as e:
                problems.append(f"{folder / CHECKPOINT} cannot be read ({e.strerror or _reason(e)})")
        if CONFIG in names:
            try:
                if (problem := config_problem(json.loads((folder / CONFIG).read_text()))) is not None:
                    problems.append(f"{folder / CONFIG} is {problem}")
            except (OSError, ValueError) as e:
                problems.append(f"{folder / CONFIG} is unreadable ({_reason(e)})")
        elif any(seed_of(folder / n) is not None for n in names):
            problems.append(f"{folder}: {CONFIG} is missing")
        for e in entries:
            p = folder / e.name
            if e.is_symlink():
                if not p.exists():
                    problems.append(f"{p} links to {os.readlink(p)}, which does not exist")
                elif p.is_dir():
                    visit(p)
            elif e.is_dir():
                visit(p)
            elif is_tmp(e.name):
                problems.append(f"{p}: a temporary file left by a killed writer")

    visit(top)
    if unhashed:
        note = (f"{len(unhashed)} finished job(s) under {top} (first: {unhashed[0]}) were written before summaries "
                f"recorded their own hash: their {SUMMARY} content is not checked (their other files are)")
        if notes is None:
            _say(note)
        else:
            notes.append(note)
    return problems
