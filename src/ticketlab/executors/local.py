"""Run a graph of jobs: one at a time in this process, or in parallel worker processes.

A job starts only when the jobs it depends on are finished; finished jobs (a summary in their folder) are
not run again. Workers are spawned processes (forking after torch has started its threads can deadlock);
each job runs with its options' thread count, which is part of the results' identity, so the executor
never changes it.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from ..errors import TicketlabError
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
        pending = list(jobs)
        while pending:
            job = next(j for j in pending if all(d in done or d not in by_folder for d in j.deps))
            execute(job, runtime)
            done.add(job.folder)
            pending.remove(job)
        return [j.folder for j in jobs]


_RUNTIME: Runtime | None = None  # a worker process's runtime: data loaded once per process


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
        done = {j.folder for j in jobs if is_done(root / j.folder)}
        pending = [j for j in jobs if j.folder not in done]
        running: dict[Future, tuple[Job, float]] = {}
        ctx = multiprocessing.get_context("spawn")  # fork after torch starts its threads can deadlock
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx) as pool:
            while pending or running:
                ready = [j for j in pending if all(d in done or d not in by_folder for d in j.deps)]
                for job in ready[: max(0, self.workers - len(running))]:
                    running[pool.submit(_work, job, options)] = (job, time.perf_counter())
                    pending.remove(job)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    job, began = running.pop(future)
                    try:
                        future.result()
                    except BaseException:
                        for other in running:
                            other.cancel()
                        raise
                    done.add(job.folder)
                    if self.log:
                        print(f"done: {job.describe()} ({time.perf_counter() - began:.1f}s)", file=sys.stderr)
        return [j.folder for j in jobs]
