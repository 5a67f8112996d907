"""Run a graph of jobs: one at a time in this process, or in parallel worker processes.

A job starts only when the jobs it depends on are finished; finished jobs (a summary in their folder) are
not run again. Workers are spawned processes (forking after torch has started its threads can deadlock);
each job runs with its options' thread count, which is part of the results' identity, so the executor
never changes it. Workers die with the process that started them, even when it is killed (SIGKILL): on
Linux the kernel sends them SIGKILL (PR_SET_PDEATHSIG), elsewhere a thread in each worker watches its
parent. Their jobs resume from their checkpoints on the next run.

A job that raises errors.Blocked (it would build on a job that diverged) is not run, nor is any job that
needs it; every other job runs, then one TicketlabError (`blocked_error`) says what was not run and why.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from ..errors import Blocked, TicketlabError
from ..jobs import Job, RunOptions, Runtime, execute
from ..store import is_done


def ready_order(jobs: list[Job]) -> dict[str, Job]:
    """Jobs by folder, refusing duplicates and dependencies that can never be met (cycles)."""
    by_folder = {j.folder: j for j in jobs}
    if len(by_folder) != len(jobs):
        raise TicketlabError("the same job is listed twice")
    seen: set[str] = set()
    pending = list(jobs)
    while pending:
        ready = [j for j in pending if all(d in seen or d not in by_folder for d in j.deps)]
        if not ready:
            raise TicketlabError("the jobs' dependencies form a cycle")
        seen.update(j.folder for j in ready)
        pending = [j for j in pending if j.folder not in seen]
    return by_folder


class SerialExecutor:
    """Every job in this process, in dependency order (the list order where it allows)."""

    def __init__(self, runtime: Runtime | None = None):
        self.runtime = runtime

    def run(self, jobs: list[Job], options: RunOptions) -> list[str]:
        by_folder = ready_order(jobs)
        runtime = self.runtime if self.runtime and self.runtime.options == options else Runtime(options)
        done: set[str] = set()
        blocked: dict[str, str | None] = {}  # not run (errors.Blocked) and why; None: a job it needs was not run
        pending = list(jobs)
        while pending:
            job = next(j for j in pending if all(d in done or d in blocked or d not in by_folder for d in j.deps))
            pending.remove(job)
            if any(d in blocked for d in job.deps):
                blocked[job.folder] = None
                continue
            try:
                execute(job, runtime)
            except Blocked as e:
                blocked[job.folder] = str(e)
                continue
            done.add(job.folder)
        if blocked:
            raise blocked_error(blocked, by_folder)
        return [j.folder for j in jobs]


def finished_jobs(jobs: list[Job], by_folder: dict[str, Job], root: Path) -> set[str]:
    """The jobs that are finished, and so are their deps: a job whose dep runs again is checked again
    (execute) once the dep is done, since a dep recomputed with other results makes it stale."""
    stored = {j.folder for j in jobs if is_done(root / j.folder)}
    done: set[str] = set()
    while grown := [j.folder for j in jobs if j.folder in stored and j.folder not in done
                    and all(d in done or d not in by_folder for d in j.deps)]:
        done.update(grown)
    return done


def blocked_error(blocked: dict[str, str | None], by_folder: dict[str, Job]) -> TicketlabError:
    """One line for the end of a run: the jobs that were not run (a job raised errors.Blocked, e.g. it builds on
    a job that diverged; None: a job it needs was not run), why, and that every other job finished."""
    why = [f"{by_folder[f].describe()}, because {reason}" for f, reason in blocked.items() if reason is not None]
    after = sum(reason is None for reason in blocked.values())
    more = f"; and {after} job(s) that build on {'it' if len(why) == 1 else 'them'}" if after else ""
    return TicketlabError(f"{len(blocked)} job(s) not run: {'; '.join(why)}{more}. Every other job finished and is "
                          "kept")


_RUNTIME: Runtime | None = None  # a worker process's runtime: data loaded once per process
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """Worker initializer: this process ends when `parent` does, however it ends. Ctrl-C reaches the whole
    process group: the parent alone answers it (and ends the workers), so a worker prints no traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
        if armed:
            if os.getppid() != parent:  # the parent died before the signal was armed
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="ticketlab-parent-watch", daemon=True).start()


def _work(job: Job, options: RunOptions) -> str:
    global _RUNTIME
    if _RUNTIME is None or _RUNTIME.options != options:
        _RUNTIME = Runtime(options)
    return execute(job, _RUNTIME)


class LocalExecutor:
    """Jobs in `workers` processes on this machine."""

    def __init__(self, workers: int | None = None, log: bool = True):
        self.workers = workers or os.cpu_count() or 1
        self.log = log

    def run(self, jobs: list[Job], options: RunOptions) -> list[str]:
        by_folder = ready_order(jobs)
        root = Runtime(options).root  # checks the options once, here, before any worker starts
        done = finished_jobs(jobs, by_folder, root)
        pending = [j for j in jobs if j.folder not in done]
        blocked: dict[str, str | None] = {}  # not run (errors.Blocked) and why; None: a job it needs was not run
        running: dict[Future, tuple[Job, float]] = {}
        ctx = multiprocessing.get_context("spawn")  # fork after torch starts its threads can deadlock
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            while pending or running:
                while skip := [j for j in pending if any(d in blocked for d in j.deps)]:  # never run: said at the end
                    for j in skip:
                        blocked[j.folder] = None
                        pending.remove(j)
                if not (pending or running):
                    break
                ready = [j for j in pending if all(d in done or d not in by_folder for d in j.deps)]
                for job in ready[: max(0, self.workers - len(running))]:
                    running[pool.submit(_work, job, options)] = (job, time.perf_counter())
                    pending.remove(job)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    job, began = running.pop(future)
                    try:
                        future.result()
                    except Blocked as e:  # the others run on; it and what builds on it are said at the end
                        blocked[job.folder] = str(e)
                        continue
                    except BaseException:
                        for other in running:
                            other.cancel()
                        raise
                    done.add(job.folder)
                    if self.log:
                        print(f"done: {job.describe()} ({time.perf_counter() - began:.1f}s)", file=sys.stderr)
        if blocked:
            raise blocked_error(blocked, by_folder)
        return [j.folder for j in jobs]
