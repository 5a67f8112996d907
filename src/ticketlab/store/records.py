"""The records a store keeps beside its jobs' files: job summaries and experiments' config.json, and the
finished jobs found under a folder (only what the done rule accepts).

Both records are read as Records (formats.py): a key a reader needs and the file lacks is one line naming
the file. Their shape is checked on reading too: a summary is a non-empty JSON object (its content is
hash-checked by the done rule), a config a JSON object naming its experiment's hash (it has no hash of its
own: `reproduce` adds notes to it after it is written).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, Callable

from ..errors import TicketlabError
from ..files import remove_stale_tmp
from .done import is_intact, job_problems
from .formats import _reason, _say, read_json, write_json
from .layout import CONFIG, STABILITY, SUMMARY


def read_summary(job: Path) -> dict[str, Any]:
    """A job's summary.json: a TicketlabError naming the file if it is not a job summary."""
    summary = read_json(job / SUMMARY)
    if not isinstance(summary, dict) or not summary:
        raise TicketlabError(f"{job / SUMMARY} is not a job summary ({_shape(summary)}); `ticketlab verify` on "
                             "its run lists every damaged file")
    return summary


def config_problem(config: Any) -> str | None:
    """What makes `config` (a config.json read as JSON) not an experiment's config; None: nothing."""
    if not isinstance(config, dict):
        return f"not an experiment's config ({_shape(config)})"
    if not isinstance(config.get("hash"), str):
        return "not an experiment's config (it names no experiment hash)"
    return None


def read_config(experiment: Path) -> dict[str, Any]:
    """An experiment's config.json: a TicketlabError naming the file if it is missing or not a config."""
    config_file = Path(experiment) / CONFIG
    if not config_file.is_file():
        raise TicketlabError(f"{experiment} is not an experiment of a run store: {config_file} is missing")
    config = read_json(config_file)
    if (problem := config_problem(config)) is not None:
        raise TicketlabError(f"{config_file} is {problem}; `ticketlab verify` on its run lists every damaged file")
    return config


_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _shape(obj: Any) -> str:
    """What a JSON value that should be a non-empty object is instead."""
    return "an empty object" if isinstance(obj, dict) else f"a JSON {_JSON_TYPES.get(type(obj), 'value')}, not an object"


def record_experiment(experiment: Path, body: dict[str, Any], provenance: Callable[[], dict[str, Any]]) -> None:
    """Write an experiment's config.json once (later runs find it by its hash), again if it is unreadable.
    `provenance` (git revision, versions) is only asked for when the file is written."""
    config_file = experiment / CONFIG
    if config_file.is_file():
        try:
            if (problem := config_problem(json.loads(config_file.read_text()))) is None:
                return
            _say(f"{config_file} is {problem}; writing it again")
        except (OSError, ValueError) as e:
            _say(f"{config_file} is unreadable ({_reason(e)}); writing it again")
    remove_stale_tmp(experiment)
    write_json(config_file, {**body, "provenance": provenance()})


# ---- Finished jobs under a folder --------------------------------------------------------------------------


def finished_levels(replicate: Path) -> list[int]:
    """The numbers of a replicate's finished levels."""
    names = (p.name.removeprefix("level_") for p in replicate.glob("level_*") if is_intact(p))
    return sorted(int(n) for n in names if n.isdigit())


def job_summaries(replicate: Path) -> list[Path]:
    """summary.json of every finished, intact level and control of a replicate (level 0 through its link);
    changes nothing (`unreadable_jobs` says what is left out)."""
    return [p / SUMMARY for p in _job_entries(replicate) if is_intact(p)]


def _job_entries(replicate: Path) -> list[Path]:
    """The level_* and level_*/control_* entries of a replicate, whatever they are (a dangling link too)."""
    levels = sorted(replicate.glob("level_*"))
    return levels + sorted(c for lvl in levels if _is_folder(lvl) for c in lvl.glob("control_*"))


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a symlink loop
        return False


def unreadable_jobs(replicate: Path) -> list[str]:
    """One line per level or control entry of a replicate that is not a finished, intact job: a link to
    nothing or a link loop, a file where a folder belongs, a job not finished, a damaged one (and why)."""
    entries = _job_entries(replicate)
    levels = sorted(int(p.name[6:]) for p in entries if p.parent == replicate and p.name[6:].isdigit())
    out = [f"{replicate / f'level_{k}'} is missing (level_{levels[-1]} builds on it)"
           for k in range(levels[-1] if levels else 0) if k not in levels]
    for p in entries:
        if p.is_symlink() and not _is_folder(p):
            try:
                os.stat(p)
                why = "is a link to a file, not a job folder"
            except OSError as e:
                why = ("is a symlink loop" if e.errno == errno.ELOOP else
                       f"links to {os.readlink(p)}, which does not exist")
        elif not _is_folder(p):
            why = "is not a folder"
        elif (problems := job_problems(p)) is None:
            why = f"is not finished (no {SUMMARY})"
        elif problems:
            why = f"is damaged ({'; '.join(problems)})"
        else:
            continue
        out.append(f"{p} {why}")
    return out


def stability_files(experiment: Path) -> list[Path]:
    """stability.json of every finished analysis of an experiment."""
    found = sorted(experiment.glob(f"seed_*/level_*/stability_k*/analysis_*/{STABILITY}"))
    return [f for f in found if is_intact(f.parent)]
