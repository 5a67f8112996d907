"""The done rule: a job is finished when its summary.json is readable and every file it records is intact.

`finish_job` writes the summary last, with the blake2b-256 of each file of the job's folder ("files") and a
digest of each input job's recorded files ("inputs", when run through jobs.execute). `is_done` checks them
(once per process while nothing changes): a job whose summary is unreadable, whose files are missing or
damaged, or whose input was recomputed with other results is said so in one line on stderr, its summary is
moved to summary.json.damaged-<n>, its other files are deleted, and it is recomputed. Summaries written
before hashes were recorded are accepted as they are.

The summary records its own hash too ("summary_hash": blake2b-256 of its canonical JSON without that key),
so an edited or bit-flipped summary that is still valid JSON is found like a damaged file. Summaries
written before that hash was recorded are accepted; `verify` says how many it could not check.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from ..files import file_digest, fsync_dir, is_tmp, remove_stale_tmp
from .formats import _finite, _reason, _say, write_json
from .layout import BIAS_MASK, CHECKPOINT, FINAL, INIT, MASK, METRICS, SUMMARY

SUMMARY_HASH = "summary_hash"  # the key of summary.json that holds the summary's own hash
DAMAGED = ".damaged-"  # summary.json.damaged-<n>: a damaged job's summary, set aside

_INPUTS: dict[str, list[Path]] = {}  # realpath of a running job -> its input jobs (set by jobs.execute)
_VERIFIED: dict[str, tuple] = {}  # realpath of a verified job -> (stat signature, its file names, its inputs)


def job_files(job: Path) -> list[str]:
    """The files a job wrote in its folder: every plain file but the summary, a checkpoint, temporary files and
    set-aside summaries (sub-folders are other jobs)."""
    with os.scandir(job) as entries:
        return sorted(e.name for e in entries if e.is_file(follow_symlinks=False) and e.name not in (SUMMARY, CHECKPOINT)
                      and not is_tmp(e.name) and DAMAGED not in e.name)


@contextlib.contextmanager
def recording_inputs(job: Path, inputs: list[Path]) -> Iterator[None]:
    """While `job` runs, finish_job records a digest of what each of `inputs` (finished jobs) recorded."""
    key = os.path.realpath(job)
    _INPUTS[key] = [Path(p) for p in inputs]
    try:
        yield
    finally:
        _INPUTS.pop(key, None)


@contextlib.contextmanager
def running_job(job: Path, inputs: list[Path]) -> Iterator[None]:
    """What the store does around a job that runs (jobs.execute): the temporary files a killed writer left in
    its folder are removed first, and finish_job records a digest of what each of `inputs` recorded."""
    remove_stale_tmp(job)
    with recording_inputs(job, inputs):
        yield


def _recorded_files(job: Path) -> dict[str, str] | None:
    """The files a finished job's summary records; None if it records none or cannot be read."""
    try:
        summary = json.loads((Path(job) / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    files = summary.get("files") if isinstance(summary, dict) else None
    return files if isinstance(files, dict) else None


def _files_digest(files: dict[str, str] | None) -> str | None:
    if files is None:
        return None
    return hashlib.blake2b(json.dumps(files, sort_keys=True).encode(), digest_size=16).hexdigest()


def _summary_hash(summary: dict[str, Any]) -> str:
    """blake2b-256 of a summary's canonical JSON, without its own hash. Taken of the summary as JSON reads it
    back (NaN as null, tuples as lists, keys as text), so the same content gives the same hash after a read."""
    body = {k: v for k, v in summary.items() if k != SUMMARY_HASH}
    canonical = json.dumps(json.loads(json.dumps(_finite(body), allow_nan=False)), sort_keys=True,
                           separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=32).hexdigest()


def finish_job(job: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Mark `job` finished: add to `summary` (in place) the blake2b-256 of each of its files ("files") and, when
    jobs.execute runs it, a digest of each input job's files ("inputs"); write summary.json last, atomically,
    with its own hash (in the file only: the returned summary is what the job computed and its files)."""
    job = Path(job)
    real = os.path.realpath(job)
    summary["files"] = {name: file_digest(job / name) for name in job_files(job)}
    if _INPUTS.get(real):
        summary["inputs"] = {os.path.relpath(os.path.realpath(p), real): _files_digest(_recorded_files(p))
                             for p in _INPUTS[real]}
    summary.pop(SUMMARY_HASH, None)  # a summary read back and finished again gets a new one
    write_json(job / SUMMARY, {**summary, SUMMARY_HASH: _summary_hash(summary)})
    _remember(job, summary)
    return summary


def _plain_name(name: object) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..", SUMMARY) and "/" not in name and "\\" not in name


def _problems(job: Path) -> tuple[list[str], dict[str, Any]]:
    """What is wrong with a job whose summary.json exists ([]: nothing), and its summary. Summaries without
    "files" or without their own hash (written before those were recorded) are accepted as they are."""
    try:
        summary = json.loads((job / SUMMARY).read_text())
    except (OSError, ValueError) as e:
        return [f"{SUMMARY} is unreadable ({_reason(e)})"], {}
    files, inputs = (summary.get("files", {}), summary.get("inputs", {})) if isinstance(summary, dict) else (0, 0)
    if not (isinstance(files, dict) and all(_plain_name(k) and isinstance(v, str) for k, v in files.items())
            and isinstance(inputs, dict) and all(isinstance(k, str) and isinstance(v, (str, type(None)))
                                                 for k, v in inputs.items())):
        return [f"{SUMMARY} is not a valid job summary"], {}
    if not summary:
        return [f"{SUMMARY} is not a valid job summary (an empty object)"], {}
    problems = []
    if SUMMARY_HASH in summary and summary[SUMMARY_HASH] != _summary_hash(summary):
        problems.append(f"{SUMMARY} is damaged (its content does not match its recorded hash)")
    for name, digest in sorted(files.items()):
        if not (job / name).is_file():
            problems.append(f"{name} is missing")
        elif file_digest(job / name) != digest:
            problems.append(f"{name} is damaged (hash mismatch)")
    real = os.path.realpath(job)
    for rel, digest in sorted(inputs.items()):
        now = _files_digest(_recorded_files(Path(os.path.normpath(os.path.join(real, rel)))))
        if None not in (digest, now) and now != digest:  # an input not finished now is checked once it is again
            problems.append(f"its input {rel} was recomputed with other results")
    return problems, summary


def _stat(path: Path | str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _signature(job: Path, names: tuple[str, ...], inputs: tuple[str, ...]) -> tuple:
    real = os.path.realpath(job)
    return (_stat(job / SUMMARY), tuple(_stat(job / n) for n in names),
            tuple(_stat(os.path.join(real, rel, SUMMARY)) for rel in inputs))


def _remember(job: Path, summary: dict[str, Any]) -> None:
    names, inputs = tuple(sorted(summary.get("files", {}))), tuple(sorted(summary.get("inputs", {})))
    _VERIFIED[os.path.realpath(job)] = (_signature(job, names, inputs), names, inputs)


def _set_aside(job: Path) -> None:
    """Move a damaged job's summary to summary.json.damaged-<n> and delete its other files, so it is
    recomputed from nothing. Nothing is deleted if another process set it aside first."""
    n = 1
    while (job / f"{SUMMARY}{DAMAGED}{n}").exists():
        n += 1
    try:
        os.rename(job / SUMMARY, job / f"{SUMMARY}{DAMAGED}{n}")
        for name in [*job_files(job), CHECKPOINT]:
            (job / name).unlink(missing_ok=True)
        for name in (MASK, INIT, FINAL, METRICS, BIAS_MASK):  # a folder or a link where a job file belongs
            if (job / name).is_symlink():
                (job / name).unlink()
            elif (job / name).is_dir():
                shutil.rmtree(job / name)
    except OSError:  # set aside by another process just now, or a store we may not change
        return
    fsync_dir(job)


def job_problems(job: Path) -> list[str] | None:
    """What is wrong with a finished job, changing nothing: None when it has no summary.json (not finished),
    [] when it is intact (its summary readable, every file it records there with its recorded hash, every
    input it records unchanged), else one phrase per problem. Readers (report, export) use this."""
    job = Path(job)
    if not (job / SUMMARY).is_file():
        return None
    known = _VERIFIED.get(os.path.realpath(job))
    if known is not None and known[0] == _signature(job, known[1], known[2]):
        return []
    problems, summary = _problems(job)
    if not problems:
        _remember(job, summary)
    return problems


def is_intact(job: Path) -> bool:
    """Finished and intact (job_problems is []), changing nothing."""
    return job_problems(job) == []


def is_done(job: Path) -> bool:
    """Finished, for a run about to build on it or recompute it: as is_intact, but a damaged job is said so in
    one line, set aside and not done, and a finished job's leftover checkpoint is deleted."""
    job = Path(job)
    problems = job_problems(job)
    if problems is None:
        return False
    if problems:
        _VERIFIED.pop(os.path.realpath(job), None)
        _say(f"{job}: {'; '.join(problems)}; the job will be recomputed")
        _set_aside(job)
        return False
    with contextlib.suppress(OSError):  # left by a run killed between its summary and the checkpoint's removal
        (job / CHECKPOINT).unlink(missing_ok=True)
    return True
