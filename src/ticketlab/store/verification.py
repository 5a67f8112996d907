"""`verify`: every problem under a folder of a run store, one line each, changing nothing.

A finished job whose summary was written before summaries recorded their own hash is not a problem (it is
accepted as it is), but its summary's content cannot be checked: verify says how many such jobs it found,
in a note, apart from the problems."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

from ..errors import TicketlabError
from ..files import is_tmp
from .done import SUMMARY_HASH, _problems
from .formats import _Damaged, _read_checkpoint, _reason, _say
from .layout import CHECKPOINT, CONFIG, FINAL, INIT, MASK, METRICS, SUMMARY, seed_of
from .records import config_problem


JOB_FOLDER = re.compile(r"level_\d+|control_.+")  # a folder that is one job (a level, a control)


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
    recognised: list[Path] = []  # folders that hold something of a store (a config, a summary, a replicate)

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
        elif (names & {MASK, INIT, FINAL, METRICS} or JOB_FOLDER.fullmatch(folder.name)) and CHECKPOINT not in names:
            problems.append(f"{folder}: holds a job's files but no {SUMMARY} and no {CHECKPOINT}: the job is not "
                            "finished (its summary was lost, or it was stopped before its first checkpoint)")
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
        if names & {SUMMARY, CHECKPOINT, CONFIG} or any(seed_of(folder / n) is not None for n in names):
            recognised.append(folder)
        levels = sorted(int(n[6:]) for n in names if re.fullmatch(r"level_\d+", n))
        problems.extend(f"{folder / f'level_{k}'} is missing (level_{levels[-1]} builds on it)"
                        for k in range(levels[-1] if levels else 0) if k not in levels)
        for e in entries:
            p = folder / e.name
            if e.is_symlink():
                if (problem := _link_problem(p)) is not None:
                    problems.append(f"{p} {problem}")
                elif p.is_dir():
                    visit(p)
            elif e.is_dir():
                visit(p)
            elif is_tmp(e.name):
                problems.append(f"{p}: a temporary file left by a killed writer")

    visit(top)
    if not recognised:
        raise TicketlabError(f"{top} is not a run store nor a part of one: no experiment, replicate or job in it")
    if unhashed:
        note = (f"{len(unhashed)} finished job(s) under {top} (first: {unhashed[0]}) were written before summaries "
                f"recorded their own hash: their {SUMMARY} content is not checked (their other files are)")
        if notes is None:
            _say(note)
        else:
            notes.append(note)
    return problems


def _link_problem(link: Path) -> str | None:
    """What is wrong with a link in a store (None: nothing): it leads nowhere, in a loop, or out of the store
    (the folder holding the experiment the link is in; a store's links are level_0 -> its dense run)."""
    try:
        target = Path(os.path.realpath(link, strict=True))
    except OSError as e:
        return "is a symlink loop" if e.errno == errno.ELOOP else f"links to {os.readlink(link)}, which does not exist"
    root = next((a.parent for a in link.parents if (a / CONFIG).is_file()), None)
    if root is not None and not target.is_relative_to(os.path.realpath(root)):
        return f"links out of the run store {root} (to {target})"
    return None
