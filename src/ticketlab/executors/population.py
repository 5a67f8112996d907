"""The grouping executor: jobs that are ready at the same time and train the same architecture with the same
recipe over the same steps run as one population (training/population.py); each still lands in its own folder
exactly as if run alone.

How, without knowing any kind: every ready job runs its kind function (through `jobs.execute`, as the serial
executor does) in its own thread, but only one thread runs at a time (a baton passed explicitly), so the kinds
run in the same order, with the same global state (RNG, thread count, the store's bookkeeping) as one after the
other. When a job reaches training (`experiments/job.py: run_training` calls `training.population.trainer()`),
its thread hands over its training request and parks. Once every ready job has finished or parked, the requests
are grouped by a key (model signature, recipe, start step, resumed step, data, device) and each group trains as
one population, in chunks of at most `size`; a group of one trains alone with `train` (bit-identical to the
serial executor). Each parked thread then gets its own result (a TrainResult, or its own Diverged) and finishes
its job (final weights, metrics, summary with hashes) as it would have after `train`.

A job that cannot be a population member (training/population.py: `eligible`) trains alone when its turn
comes. Alone trainings run in the executor's own thread (the job's thread waits), so Ctrl-C and SIGTERM, which
Python raises in the main thread only, stop them as they stop the serial executor. Resume is per member: each member's checkpoint is its own file in the loop's format; members whose
checkpoints hold different steps fall in different groups.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import Blocked, TicketlabError
from ..jobs import Job, RunOptions, Runtime, execute
from ..store import load_checkpoint
from ..training.loop import train
from ..training.population import Member, auto_size, eligible, signature, train_population, using_trainer
from .local import blocked_error, ready_order

MAX_SIZE = 1024


def parse_population(value: str | int | None) -> str | int:
    """"auto", "off" or a whole number >= 1 (1 = off): one clear line otherwise."""
    if value is None or value == "off":
        return "off"
    if value == "auto":
        return "auto"
    text = str(value)
    if not text.isdigit() or not 1 <= int(text) <= MAX_SIZE:
        raise TicketlabError(f"--population must be auto, off or a whole number in [1, {MAX_SIZE}], got {value!r}")
    return int(text) if int(text) > 1 else "off"


def population_wanted(value: str | int | None, device: str) -> bool:
    """Whether the grouping executor runs the jobs (in this process; --workers is then unused). auto: on CUDA
    only: on a CPU the stacked step measured no faster than separate runs (bench/population.py), so auto keeps
    the serial or worker-process path there, bit-identical to before populations existed."""
    chosen = parse_population(value)
    if chosen == "auto":
        return torch.device(device).type == "cuda"
    return chosen != "off"


def trained_as(options: RunOptions) -> str | int | None:
    """What a run's identity records of populations (identity.numerics): the setting when the grouping
    executor will train its jobs (their last bits differ from separate runs'), None when each trains alone."""
    return parse_population(options.population) if population_wanted(options.population, options.device) else None


class _Cancelled(BaseException):
    """Ends a parked job's thread when the run stops (an error elsewhere, Ctrl-C)."""


@dataclass
class _Request:
    args: tuple
    kwargs: dict[str, Any]
    key: tuple | None = None  # None: trains alone
    state: dict[str, Any] | None = None  # the member's checkpoint, loaded once


@dataclass
class _Fiber:
    job: Job
    go: threading.Event = field(default_factory=threading.Event)
    yielded: threading.Event = field(default_factory=threading.Event)
    request: _Request | None = None
    reply: Any = None  # TrainResult | an Exception (Diverged, ...) | _ALONE | _Cancelled
    error: BaseException | None = None
    started: bool = False
    finished: bool = False


_ALONE = object()


class PopulationExecutor:
    """Ready jobs in this process, their trainings grouped into populations of at most `size` ("auto": by the
    device's memory, see training.population.auto_size)."""

    def __init__(self, runtime: Runtime | None = None, size: int | str = "auto", log: bool = True):
        self.runtime, self.size, self.log = runtime, size, log

    def run(self, jobs: list[Job], options: RunOptions) -> list[str]:
        by_folder = ready_order(jobs)
        runtime = self.runtime if self.runtime and self.runtime.options == options else Runtime(options)
        done: set[str] = set()
        blocked: dict[str, str | None] = {}
        pending = list(jobs)
        while pending:
            for j in [j for j in pending if any(d in blocked for d in j.deps)]:
                blocked[j.folder] = None
                pending.remove(j)
            ready = [j for j in pending if all(d in done or d not in by_folder for d in j.deps)]
            if not ready:
                continue  # only jobs behind blocked ones were left: removed above
            for j in ready:
                pending.remove(j)
            for folder, error in self._wave(ready, runtime).items():
                if error is None:
                    done.add(folder)
                else:
                    blocked[folder] = str(error)
        if blocked:
            raise blocked_error(blocked, by_folder)
        return [j.folder for j in jobs]

    def _wave(self, ready: list[Job], runtime: Runtime) -> dict[str, Blocked | None]:
        """Run `ready` (no job among them needs another), grouping their trainings; folder -> Blocked or None."""
        fibers = [_Fiber(job) for job in ready]
        try:
            for fiber in fibers:
                self._start(fiber, runtime)
            while parked := [f for f in fibers if not f.finished]:
                self._train_parked(parked, runtime)
                for fiber in parked:
                    if fiber.reply is _ALONE:  # trained here, in its turn, as the serial executor would
                        fiber.reply = self._train_alone(fiber, runtime)
                    self._resume(fiber)
            out: dict[str, Blocked | None] = {}
            for fiber in fibers:
                if fiber.error is not None and not isinstance(fiber.error, Blocked):
                    raise fiber.error
                out[fiber.job.folder] = fiber.error
            return out
        finally:
            for fiber in fibers:  # an error or Ctrl-C: no thread is left waiting
                if fiber.started and not fiber.finished:
                    fiber.reply = _Cancelled()
                    self._resume(fiber)

    def _start(self, fiber: _Fiber, runtime: Runtime) -> None:
        def body() -> None:
            fiber.go.wait()
            fiber.go.clear()
            try:
                with using_trainer(lambda *a, **k: self._park(fiber, a, k)):
                    execute(fiber.job, runtime)
            except _Cancelled:
                pass
            except BaseException as e:  # noqa: BLE001 - handed to the executor's thread, which raises it
                fiber.error = e
            fiber.finished = True
            fiber.yielded.set()

        threading.Thread(target=body, name=f"ticketlab-job-{fiber.job.folder}", daemon=True).start()
        fiber.started = True
        self._resume(fiber)

    @staticmethod
    def _resume(fiber: _Fiber) -> None:
        """Let `fiber` run until it parks again or finishes (the executor's thread waits meanwhile)."""
        fiber.go.set()
        fiber.yielded.wait()
        fiber.yielded.clear()

    def _park(self, fiber: _Fiber, args: tuple, kwargs: dict[str, Any]) -> Any:
        """The trainer a job's thread sees: hand over the request, wait for its result."""
        request = _Request(args, kwargs)
        model, data, hp, mask = args[:4]
        checkpoint = kwargs.get("checkpoint")
        why = "a mask that changes" if kwargs.get("policy") is not None else eligible(model, hp, kwargs.get("hooks"),
                                                                                      data)
        if why is None:
            request.state = load_checkpoint(checkpoint.path) if checkpoint else None
            start = kwargs.get("start_step", 0)
            step = request.state["step"] if request.state is not None else start
            request.key = (signature(model), repr(hp), start, step, id(data), str(next(model.parameters()).device))
        fiber.request = request
        fiber.yielded.set()
        fiber.go.wait()
        fiber.go.clear()
        reply, fiber.reply, fiber.request = fiber.reply, None, None
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def _train_parked(self, parked: list[_Fiber], runtime: Runtime) -> None:
        """Group the parked requests and train each group; the replies wait in the fibers."""
        groups: dict[tuple, list[_Fiber]] = {}
        for fiber in parked:
            key = fiber.request.key
            if key is None:
                fiber.reply = _ALONE
            else:
                groups.setdefault(key, []).append(fiber)
        for group in groups.values():
            first = group[0].request
            size = self._size(first, runtime)
            for i in range(0, len(group), size):
                chunk = group[i:i + size]
                if len(chunk) == 1:
                    chunk[0].reply = _ALONE  # alone: exactly the serial executor's run
                    continue
                self._train_chunk(chunk, runtime)

    @staticmethod
    def _train_alone(fiber: _Fiber, runtime: Runtime) -> Any:
        """`train` for one parked request, in the executor's (main) thread, so that Ctrl-C or SIGTERM (raised
        in the main thread only) stops it at once; its thread only waited. Its result or its error (a Diverged,
        a bad-input TicketlabError) is the fiber's reply, raised in the job's thread; KeyboardInterrupt and other
        BaseExceptions are not replies: they leave `_wave`, which cancels the parked jobs."""
        with runtime.threads():
            try:
                return train(*fiber.request.args, **fiber.request.kwargs)
            except Exception as e:  # noqa: BLE001 - the job's own error, raised in its thread
                return e

    def _size(self, request: _Request, runtime: Runtime) -> int:
        if self.size != "auto":
            return max(1, int(self.size))
        model, _, hp = request.args[:3]
        return auto_size(model, hp, next(model.parameters()).device, MAX_SIZE) if \
            next(model.parameters()).device.type == "cuda" else MAX_SIZE

    def _train_chunk(self, chunk: list[_Fiber], runtime: Runtime) -> None:
        members = []
        for fiber in chunk:
            model, data, hp, mask = fiber.request.args[:4]
            kw = fiber.request.kwargs
            members.append(Member(model, mask, kw["data_seed"], kw.get("checkpoint"), kw.get("hooks"),
                                  fiber.request.state))
        first = chunk[0].request
        if self.log:
            print(f"population of {len(chunk)}: {', '.join(f.job.describe() for f in chunk)}", file=sys.stderr)
        with runtime.threads():
            results = train_population(members, first.args[1], first.args[2],
                                       start_step=first.kwargs.get("start_step", 0))
        for fiber, result in zip(chunk, results):
            fiber.reply = result  # a Diverged is raised in the job's thread, which finishes it as diverged


__all__ = ["PopulationExecutor", "parse_population", "population_wanted", "trained_as"]
