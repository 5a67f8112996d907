"""The common runtime flags as typed objects, checked once before anything is loaded or written: the
RunOptions every job sees (the one place --device is parsed) and how jobs are spread (workers, executor)."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TicketlabError
from ..executors import parse_population
from ..jobs import Progress, RunOptions, parse_device
from ..store import DEFAULT_ROOT

MAX_PROCESSES = 1024  # --workers, --threads
MAX_REPLICATES = 10_000  # sane bounds: more is a typo (and would take minutes just to plan)


@dataclass(frozen=True)
class Launch:
    """How to run: the options every job sees and how independent jobs are spread."""

    options: RunOptions
    workers: str  # "auto" | N, resolved per command by workers_for (auto depends on the work)
    executor: str  # local | ray
    address: str | None  # the Ray cluster
    progress: Progress | None

    def workers_for(self, parallel_work: bool) -> int:
        if self.workers == "auto":  # one process when populations train (they group jobs in this process)
            grouped = self.options.population not in ("auto", "off")
            return (os.cpu_count() or 1) if parallel_work and not grouped else 1
        if not re.fullmatch(r"[0-9]+", self.workers) or not 1 <= int(self.workers) <= MAX_PROCESSES:
            raise TicketlabError(f"--workers must be auto or a whole number in [1, {MAX_PROCESSES}], got "
                                 f"{self.workers!r}")
        return int(self.workers)

    def keywords(self, parallel_work: bool = True) -> dict[str, Any]:
        """The keyword arguments of today's run_* functions (RunOptions' fields, spelled out: they take
        them as keywords), with the workers resolved."""
        fields = {f.name: getattr(self.options, f.name) for f in dataclasses.fields(self.options)
                  if f.name != "model_fn"}
        return {**fields, "workers": self.workers_for(parallel_work), "executor": self.executor,
                "address": self.address, "progress": self.progress}


def launch_from_args(args: argparse.Namespace) -> Launch:
    """The runtime flags checked and typed: the device exists here, the store's root is writable."""
    parse_device(args.device)
    if args.threads > MAX_PROCESSES:
        raise TicketlabError(f"--threads must be at most {MAX_PROCESSES}, got {args.threads:,}")
    root = args.out or DEFAULT_ROOT
    check_out(root)
    options = RunOptions(root=str(root), data_dir=str(args.data_dir) if args.data_dir else None,
                         device=args.device, threads=args.threads, download=not args.no_download,
                         checkpoint_every=args.checkpoint_every, population=parse_population(args.population))
    return Launch(options, args.workers, args.executor, args.address, progress_bars(args.quiet or args.json))


def check_replicates(replicates: int) -> None:
    """A sane number of replicates, said before anything is loaded or written."""
    if replicates > MAX_REPLICATES:
        raise TicketlabError(f"--replicates must be at most {MAX_REPLICATES:,}, got {replicates:,}")


def check_out(root: Path | str) -> None:
    """The run store's root must be a folder, or one this process can make: said in one line before anything
    is loaded, trained or written. An existing store it cannot write is allowed: what is finished there is
    read back (a shared, read-only store of results); the first write it would need is one line instead."""
    path = Path(root)
    existing = next(a for a in (path, *path.absolute().parents) if a.exists())
    if not existing.is_dir():
        where = "it is a file" if existing == path else f"{existing} is a file"
        raise TicketlabError(f"cannot write {path}: {where}, not a folder")
    if existing == path:
        return
    if hasattr(os, "ST_RDONLY") and os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise TicketlabError(f"cannot write {path}: {os.strerror(errno.EROFS)}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TicketlabError(f"cannot write {path}: {os.strerror(errno.EACCES)}")


def progress_bars(quiet: bool) -> Progress | None:
    """One tqdm bar per job label on stderr; None when quiet (or --json)."""
    if quiet:
        return None
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(label: str, step: int, total: int) -> None:
        bar = bars.get(label)
        if bar is None:
            bar = bars[label] = tqdm(total=total, initial=step - 1, desc=label, unit="step", file=sys.stderr,
                                     leave=False, mininterval=0.5)
        bar.update(step - bar.n)
        if step == total:
            bar.close()

    return update
