"""Jobs: plain data that say what to compute, and the registry of kinds that compute them.

A job is {kind, folder, params, deps}: `folder` (relative to the store root) is its identity and its only
output; `params` hold everything its kind needs (configs, seeds, the folders it reads); `deps` are the
folders that must be finished first. Kinds (a dense run, a pruned level, a control, a stability copy, ...)
register a function `run(job, runtime)`; executors only order jobs and call `execute`, so they never import
an experiment module, and the same list of jobs runs in this process, in worker processes or on a cluster.

`RunOptions` say how to run (where the store is, which device, threads); `Runtime` is what a process keeps
between jobs: the options, the loaded data sets, and the model builder.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .config import DatasetHparams, RunConfig
from .data import DataSplits, load_dataset, with_settings
from .errors import TicketlabError
from .masks import prunable
from .models import build_model
from .store import DEFAULT_ROOT, is_done, running_job

Progress = Callable[[str, int, int], None]  # (label, step, last step)


@dataclass
class Job:
    kind: str
    folder: str  # relative to the store root
    params: dict[str, Any] = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    label: str = ""  # what progress bars and logs call it

    def describe(self) -> str:
        return self.label or self.folder


KINDS: dict[str, Callable[[Job, "Runtime"], None]] = {}


def register_kind(name: str) -> Callable:
    """Decorator: `@register_kind("level") def run_level(job, runtime): ...`."""
    def add(fn: Callable[[Job, Runtime], None]) -> Callable[[Job, Runtime], None]:
        if name in KINDS and KINDS[name] is not fn:
            raise ValueError(f"job kind {name!r} is registered twice")
        KINDS[name] = fn
        return fn
    return add


@dataclass(frozen=True)
class RunOptions:
    """How to run, not what. `device` and `threads` change results' last bits, so they enter the folders'
    identity (identity.numerics); the rest never changes a result."""

    root: str = str(DEFAULT_ROOT)
    data_dir: str | None = None
    device: str = "cpu"
    threads: int = 1  # torch threads per job, whichever executor runs it
    download: bool = True
    checkpoint_every: int = 1000
    # "auto" | "off" | N: ready jobs of one architecture and recipe trained as one population (executors/
    # population.py). Each member's folder is the one it has alone, so it is not part of any identity.
    population: str | int = "auto"
    model_fn: Callable[[], nn.Module] | None = field(default=None, compare=False)  # importable for workers


def parse_device(name: str) -> torch.device:
    """cpu | cuda | cuda:N, checked against this machine: one clear line when it is not there."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise TicketlabError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise TicketlabError(f"device {name!r} is not supported (use cpu, cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise TicketlabError(f"device {name!r} asked for, but CUDA is not available on this machine")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise TicketlabError(f"device {name!r} asked for, but this machine has {count} CUDA device(s): "
                             f"use cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())


class Runtime:
    """Per process: the options, each data set loaded once (on the device), and model building."""

    def __init__(self, options: RunOptions, progress: Progress | None = None):
        if options.threads < 1:
            raise TicketlabError(f"threads must be at least 1, got {options.threads}")
        self.options = options
        self.device = parse_device(options.device)
        self.root = Path(options.root)
        self.progress = progress
        self._data: dict[tuple[DatasetHparams, str | None], DataSplits] = {}

    def add_data(self, hp: DatasetHparams, data: DataSplits) -> None:
        """Use `data` (e.g. a user's own tensors) wherever a job asks for the data set `hp`, with hp's subsample,
        label noise and augmentation applied (data.with_settings), as they are to files read by name."""
        data = with_settings(data, hp)
        self._data[(hp, self.options.data_dir)] = data.to(self.device)

    def data(self, hp: DatasetHparams, fingerprint: str | None = None) -> DataSplits:
        key = (hp, self.options.data_dir)
        if key not in self._data:
            loaded = load_dataset(hp, self.options.data_dir, self.options.download)
            self._data[key] = loaded.to(self.device)
        data = self._data[key]
        if fingerprint is not None and data.fingerprint != fingerprint:
            raise TicketlabError(f"the {hp.name} data found now (fingerprint {data.fingerprint}) differ from the "
                                 f"data this job was planned on ({fingerprint}): did the files change?")
        return data

    def model(self, config: RunConfig, data: DataSplits, init_seed: int) -> nn.Module:
        """The registry's model (or options.model_fn's) with initial weights drawn from `init_seed`."""
        if self.options.model_fn is None:
            model = build_model(config.model, data.input_shape, data.num_classes, init_seed)
        else:
            with torch.random.fork_rng(devices=[]):  # seeds the user's module without touching the global RNG
                torch.manual_seed(init_seed)
                model = self.options.model_fn()
            if not isinstance(model, nn.Module) or not prunable(model):
                raise TicketlabError("model_fn must return an nn.Module with at least one Linear or Conv layer")
        return model.to(self.device)

    def path(self, folder: str) -> Path:
        return self.root / folder

    def done(self, folder: str) -> bool:
        return is_done(self.root / folder)

    @contextlib.contextmanager
    def threads(self):  # noqa: ANN201
        """Jobs run with options.threads torch threads (part of their identity), whatever the caller had."""
        before = torch.get_num_threads()
        torch.set_num_threads(self.options.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def execute(job: Job, runtime: Runtime) -> str:
    """Run one job in this process unless it is finished (store.is_done: its files checked against their
    hashes); returns its folder. Temporary files a killed writer left in its folder are removed first, and
    its summary records what its input jobs (deps) recorded, so a dep recomputed with other results makes
    it be recomputed too."""
    if job.kind not in KINDS:
        raise TicketlabError(f"unknown job kind {job.kind!r}; registered: {', '.join(sorted(KINDS))}")
    if not runtime.done(job.folder):
        with runtime.threads(), running_job(runtime.path(job.folder), [runtime.path(d) for d in job.deps]):
            KINDS[job.kind](job, runtime)
    return job.folder
