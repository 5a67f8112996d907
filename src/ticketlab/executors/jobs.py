"""Jobs as plain, picklable descriptions: what to train, where its folder is, what it waits for.

A job is one IMP level or one control of one replicate; its only output is its folder in the run store.
Executors (local processes now, Ray later) run `execute(job)` anywhere the store and data are reachable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..config import DatasetHparams, RunConfig
from ..data import DataSplits, load_dataset
from ..experiments.controls import Control


@dataclass(frozen=True)
class RunOptions:
    """How to run, not what: none of it changes results (on one device with one thread count)."""

    root: str = "runs"
    data_dir: str | None = None
    device: str = "cpu"
    download: bool = True
    checkpoint_every: int = 1000
    threads: int | None = None  # torch threads in the process that runs the job
    model_fn: Callable[[], nn.Module] | None = field(default=None, compare=False)  # must be importable


@dataclass(frozen=True)
class JobSpec:
    config: RunConfig  # its seed is the replicate
    level: int
    control: Control | None = None
    options: RunOptions = RunOptions()

    @property
    def key(self) -> tuple[str, int, int, str]:
        return (self.config.hash(), self.config.seed, self.level, self.control.folder if self.control else "")

    @property
    def deps(self) -> list[tuple[str, int, int, str]]:
        """A level waits for the level before it; a control for its level (oneshot also for level 0)."""
        base = (self.config.hash(), self.config.seed)
        if self.control is not None:
            deps = [(*base, self.level, "")]
            return deps + ([(*base, 0, "")] if self.control.name == "oneshot" else [])
        return [(*base, self.level - 1, "")] if self.level > 0 else []

    def describe(self) -> str:
        what = f"level {self.level}" + (f" {self.control.folder}" if self.control else "")
        return f"seed {self.config.seed} {what}"


_DATA: dict[tuple[DatasetHparams, str | None], DataSplits] = {}  # per process: load each data set once


def execute(job: JobSpec, progress: Callable[[str, int, int], None] | None = None) -> str:
    """Run one job in this process; returns its folder."""
    from ..experiments.controls import run_control
    from ..experiments.lottery import prepare, run_level

    opts = job.options
    if opts.threads:
        torch.set_num_threads(opts.threads)
    key = (job.config.dataset, opts.data_dir)
    if key not in _DATA:
        _DATA[key] = load_dataset(job.config.dataset, opts.data_dir, opts.download)
    rep = prepare(job.config, data=_DATA[key], model_fn=opts.model_fn, root=opts.root, device=opts.device,
                  progress=progress, checkpoint_every=opts.checkpoint_every)
    if job.control is None:
        run_level(rep, job.level)
        return str(Path(rep.run_dir) / f"level_{job.level}")
    run_control(rep, job.level, job.control)
    return str(Path(rep.run_dir) / f"level_{job.level}" / job.control.folder)


def options_from(kwargs: dict[str, Any]) -> RunOptions:
    """RunOptions from `prepare`'s keyword arguments (what the CLI and the API pass around)."""
    return RunOptions(root=str(kwargs.get("root", "runs")), data_dir=kwargs.get("data_dir"),
                      device=kwargs.get("device", "cpu"), download=kwargs.get("download", True),
                      checkpoint_every=kwargs.get("checkpoint_every", 1000), threads=kwargs.get("threads"),
                      model_fn=kwargs.get("model_fn"))
