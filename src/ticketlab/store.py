"""The run store: it owns every path, writes every file atomically, and says when a job is done.

Layout (every folder name comes from what determines its contents; see identity.py):

    <root>/train_<h>/config.json                          a dense experiment: data, model, training, numerics
    <root>/train_<h>/seed_<s>/level_0/                    the dense run of replicate s (shared, see below)
    <root>/train_<h>/seed_<s>/prefix_k<k>/                the dense run stopped at step k (theta_k, rewinding)
    <root>/lottery_<h>/config.json                        an IMP experiment: the dense one + pruning + retraining
    <root>/lottery_<h>/seed_<s>/level_0 -> ../../train_<h'>/seed_<s>/level_0   (a relative link)
    <root>/lottery_<h>/seed_<s>/level_<L>/                a pruned level: mask, init, final, metrics, summary
    .../level_<L>/control_<variant>_<i>/                  a control branched off the level
    .../level_<L>/stability_k<k>/copy_<c>/                the two copies of a stability analysis from step k
    .../level_<L>/stability_k<k>/analysis_<h>/stability.json   one analysis of those copies (settings in h)
    <root>/ticket_<h>/seed_<s>/level_<L>/                 a ticket file trained again (--ticket)

Every experiment that starts from the same dense run links its level 0 to that one folder, so the dense
network is trained once, whatever the pruning. Every file is written to a temporary name, fsynced and renamed
into place (files.atomic_write): a killed run or a power loss leaves the old file or the new one, never half
of one, and a temporary file left by a killed writer is removed when its job runs again.

Integrity. A job is finished when its summary.json is readable and every file it records is intact:
`finish_job` writes the summary last, with the blake2b-256 of each file of the job's folder ("files") and a
digest of each input job's recorded files ("inputs", when run through jobs.execute). `is_done` checks them
(once per process while nothing changes): a job whose summary is unreadable, whose files are missing or
damaged, or whose input was recomputed with other results is said so in one line on stderr, its summary is
moved to summary.json.damaged-<n>, its other files are deleted, and it is recomputed. Summaries written
before hashes were recorded are accepted as they are. Checkpoints carry their own digest: a torn or damaged
one is deleted and the job restarts from its start. `verify` lists every problem under a folder without
changing anything.

Why dependents of a recomputed job stay valid: a job's result is a function of its identity, and training
on the CPU is bit-identical for a given identity (device and threads are part of it), so a recomputed job
writes the same bytes and the inputs its dependents recorded still match. Where that does not hold (GPU
kernels that are not deterministic), the input digests differ and the dependents are recomputed in turn.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .errors import TicketlabError
from .files import (atomic_write, file_digest, fsync_dir, is_tmp, remove_stale_tmp,  # noqa: F401  (this API)
                    write_safetensors)

DEFAULT_ROOT = Path(os.environ.get("TICKETLAB_RUNS", "runs"))

CONFIG = "config.json"  # an experiment's identity, settings and provenance
MASK, INIT, FINAL = "mask.safetensors", "init.safetensors", "final.safetensors"
METRICS, SUMMARY, CHECKPOINT = "metrics.json", "summary.json", "checkpoint.pt"
STABILITY = "stability.json"


# ---- Paths -------------------------------------------------------------------------------------------------


def experiment_dir(root: Path | str, kind: str, identity_hash: str) -> Path:
    return Path(root) / f"{kind}_{identity_hash}"


def seed_dir(experiment: Path, seed: int) -> Path:
    return experiment / f"seed_{seed}"


def level_dir(replicate: Path, level: int) -> Path:
    return replicate / f"level_{level}"


def control_dir(level: Path, variant: str, index: int) -> Path:
    return level / f"control_{variant}_{index}"


def prefix_dir(dense_replicate: Path, step: int) -> Path:
    return dense_replicate / f"prefix_k{step}"


def stability_dir(level: Path, step: int) -> Path:
    return level / f"stability_k{step}"


def copy_dir(stability: Path, copy: int) -> Path:
    return stability / f"copy_{copy}"


def analysis_dir(stability: Path, settings_hash: str) -> Path:
    return stability / f"analysis_{settings_hash}"


def density_dir(replicate: Path, density: float) -> Path:
    return replicate / f"density_{density:g}"


def check_dir(job: Path, check: str) -> Path:
    return job / f"check_{check}"


def seed_of(folder: Path) -> int | None:
    """The seed of a `seed_<s>` folder; None for anything else."""
    tail = folder.name[5:]
    return int(tail) if folder.name.startswith("seed_") and tail.isdigit() and folder.is_dir() else None


def seed_dirs(experiment: Path) -> list[Path]:
    return sorted((d for d in experiment.glob("seed_*") if seed_of(d) is not None), key=seed_of)


def finished_levels(replicate: Path) -> list[int]:
    """The numbers of a replicate's finished levels."""
    names = (p.name.removeprefix("level_") for p in replicate.glob("level_*") if is_done(p))
    return sorted(int(n) for n in names if n.isdigit())


def job_summaries(replicate: Path) -> list[Path]:
    """summary.json of every finished level and control of a replicate (level 0 through its link)."""
    found = sorted(replicate.glob(f"level_*/{SUMMARY}")) + sorted(replicate.glob(f"level_*/control_*/{SUMMARY}"))
    return [f for f in found if is_done(f.parent)]


def stability_files(experiment: Path) -> list[Path]:
    """stability.json of every finished analysis of an experiment."""
    found = sorted(experiment.glob(f"seed_*/level_*/stability_k*/analysis_*/{STABILITY}"))
    return [f for f in found if is_done(f.parent)]


def is_experiment(folder: Path) -> bool:
    return (folder / CONFIG).is_file()


def _is_experiment_folder(folder: Path) -> bool:
    """An experiment of a run store: named <kind>_<hex hash> and holding config.json (a project folder that
    merely holds some config.json is not one)."""
    kind, _, digest = folder.name.partition("_")
    return kind.isalpha() and len(digest) >= 8 and all(c in "0123456789abcdef" for c in digest) \
        and is_experiment(folder)


def store_part(path: Path | str) -> Path | None:
    """The part of a run store that writing `path` (a file or folder, existing or not) would change: an
    experiment folder it is in or below (through links too), or a store root (a folder holding experiment
    folders) that it is or lies directly in. None when writing there touches no stored result. Exports and
    reports refuse such a path: the store is read-only to them."""
    p = Path(os.path.abspath(path))
    for candidate in dict.fromkeys((p, Path(os.path.realpath(p)))):
        for folder in (candidate, *candidate.parents):
            if _is_experiment_folder(folder):
                return folder
        for folder in (candidate, candidate.parent):
            try:
                if folder.is_dir() and any(_is_experiment_folder(c) for c in folder.iterdir()):
                    return folder
            except OSError:  # unreadable: not a store we can see
                continue
    return None


def link(path: Path, target: Path) -> None:
    """Make `path` a relative link to the folder `target` (which may not exist yet), replacing a stale link."""
    rel = os.path.relpath(target, path.parent)
    if path.is_symlink():
        if os.readlink(path) == rel:
            return
        path.unlink()
    elif path.exists():
        raise TicketlabError(f"{path} exists and is not a link to {target}: the store is damaged; move it away")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(rel, path, target_is_directory=True)
    except FileExistsError:  # another process made the same link just now
        if os.readlink(path) != rel:
            raise


# ---- Files -------------------------------------------------------------------------------------------------


def _say(message: str) -> None:
    """One line on stderr: something in the store was wrong and what is done about it."""
    print(f"ticketlab: {message}", file=sys.stderr, flush=True)


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _finite(obj: Any) -> Any:
    """NaN and infinities as None (JSON null): JSON has no such numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    """Valid JSON only (NaN and infinities written as null), written atomically."""
    text = json.dumps(_finite(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write(Path(path), lambda p: p.write_text(text))


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except ValueError as e:  # not JSON, or not text
        raise TicketlabError(f"{path} is damaged (not valid JSON: {_reason(e)}); `ticketlab verify` on its run "
                             "lists every damaged file") from None


def save_weights(path: Path, model_or_state: nn.Module | dict[str, torch.Tensor]) -> None:
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    write_safetensors(path, {k: v.detach().to("cpu") for k, v in state.items()})


def load_weights(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    try:
        tensors = load_file(str(path))
    except SafetensorError as e:
        raise TicketlabError(f"{path} is damaged ({_reason(e)}); `ticketlab verify` on its run lists every "
                             "damaged file") from None
    return {k: v.to(device) for k, v in tensors.items()}


# A checkpoint is this line, the blake2b-256 of the rest, then torch.save's bytes: a torn or garbled file is
# found before torch reads it (torch.load itself reads garbled tensor data without a word).
_CHECKPOINT_MAGIC = b"ticketlab checkpoint, blake2b-256 of the rest follows\n"


class _Damaged(Exception):
    pass


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    digest = hashlib.blake2b(payload, digest_size=32).digest()

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            f.write(_CHECKPOINT_MAGIC)
            f.write(digest)
            f.write(payload)

    atomic_write(path, write)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    data = Path(path).read_bytes()
    if data.startswith(_CHECKPOINT_MAGIC):
        start = len(_CHECKPOINT_MAGIC) + 32
        payload = memoryview(data)[start:]
        if hashlib.blake2b(payload, digest_size=32).digest() != data[len(_CHECKPOINT_MAGIC):start]:
            raise _Damaged("torn or garbled: hash mismatch")
        source = io.BytesIO(payload)
    else:  # written before checkpoints carried their digest
        source = io.BytesIO(data)
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise _Damaged("it holds objects other than tensors and plain data, which torch.load(weights_only=True) "
                       "refuses") from None
    except Exception as e:  # noqa: BLE001  (torn zip archives, EOF, ...: whatever torch says, it is unreadable)
        raise _Damaged(f"unreadable: {_reason(e)}") from None
    if not isinstance(state, dict):
        raise _Damaged("not a checkpoint")
    return state


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint's state, or None: none there, or one that is torn, garbled or refused (said in one line
    and deleted: the job restarts from its start)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return _read_checkpoint(path)
    except _Damaged as e:
        _say(f"{path} is damaged ({e}); deleted it, the job restarts from its start")
        path.unlink(missing_ok=True)
        return None


# ---- Finished jobs and their integrity ---------------------------------------------------------------------

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


def finish_job(job: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Mark `job` finished: add to `summary` (in place) the blake2b-256 of each of its files ("files") and, when
    jobs.execute runs it, a digest of each input job's files ("inputs"); write summary.json last, atomically."""
    job = Path(job)
    real = os.path.realpath(job)
    summary["files"] = {name: file_digest(job / name) for name in job_files(job)}
    if _INPUTS.get(real):
        summary["inputs"] = {os.path.relpath(os.path.realpath(p), real): _files_digest(_recorded_files(p))
                             for p in _INPUTS[real]}
    write_json(job / SUMMARY, summary)
    _remember(job, summary)
    return summary


def _plain_name(name: object) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..", SUMMARY) and "/" not in name and "\\" not in name


def _problems(job: Path) -> tuple[list[str], dict[str, Any]]:
    """What is wrong with a job whose summary.json exists ([]: nothing), and its summary. Summaries without
    "files" (written before hashes were recorded) are accepted as they are."""
    try:
        summary = json.loads((job / SUMMARY).read_text())
    except (OSError, ValueError) as e:
        return [f"{SUMMARY} is unreadable ({_reason(e)})"], {}
    files, inputs = (summary.get("files", {}), summary.get("inputs", {})) if isinstance(summary, dict) else (0, 0)
    if not (isinstance(files, dict) and all(_plain_name(k) and isinstance(v, str) for k, v in files.items())
            and isinstance(inputs, dict) and all(isinstance(k, str) and isinstance(v, (str, type(None)))
                                                 for k, v in inputs.items())):
        return [f"{SUMMARY} is not a valid job summary"], {}
    problems = []
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
    except OSError:  # set aside by another process just now, or a store we may not change
        return
    fsync_dir(job)


def is_done(job: Path) -> bool:
    """Finished: summary.json is readable and every file it records is there with its recorded hash (and
    every input it records is unchanged). A damaged job is said so in one line, set aside and not done; a
    finished job's leftover checkpoint is deleted."""
    job = Path(job)
    if not (job / SUMMARY).is_file():
        return False
    key = os.path.realpath(job)
    known = _VERIFIED.get(key)
    if known is not None and known[0] == _signature(job, known[1], known[2]):
        return True
    problems, summary = _problems(job)
    if problems:
        _VERIFIED.pop(key, None)
        _say(f"{job}: {'; '.join(problems)}; the job will be recomputed")
        _set_aside(job)
        return False
    with contextlib.suppress(OSError):  # left by a run killed between its summary and the checkpoint's removal
        (job / CHECKPOINT).unlink(missing_ok=True)
    _remember(job, summary)
    return True


def read_summary(job: Path) -> dict[str, Any]:
    return read_json(job / SUMMARY)


def record_experiment(experiment: Path, body: dict[str, Any], provenance: Callable[[], dict[str, Any]]) -> None:
    """Write an experiment's config.json once (later runs find it by its hash), again if it is unreadable.
    `provenance` (git revision, versions) is only asked for when the file is written."""
    config_file = experiment / CONFIG
    if config_file.is_file():
        try:
            if isinstance(json.loads(config_file.read_text()), dict):
                return
            _say(f"{config_file} is not an experiment's config; writing it again")
        except (OSError, ValueError) as e:
            _say(f"{config_file} is unreadable ({_reason(e)}); writing it again")
    remove_stale_tmp(experiment)
    write_json(config_file, {**body, "provenance": provenance()})


# ---- Verification ------------------------------------------------------------------------------------------


def verify(path: Path | str) -> list[str]:
    """Every problem found under `path` (a store root, an experiment, a replicate or a job folder), one line
    each, changing nothing: finished jobs' damaged or missing files, unreadable summaries, configs and
    checkpoints, inputs recomputed with other results, links to nothing, temporary files left by killed
    writers, checkpoints left in finished jobs. A lottery's level 0 is checked through its link."""
    top = Path(path)
    if not top.is_dir():
        raise TicketlabError(f"{top} is not a folder")
    problems: list[str] = []
    seen: set[str] = set()

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
            problems.extend(f"{folder}: {p}" for p in _problems(folder)[0])
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
                if not isinstance(json.loads((folder / CONFIG).read_text()), dict):
                    problems.append(f"{folder / CONFIG} is not an experiment's config")
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
    return problems
