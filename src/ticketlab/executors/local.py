"""Run a graph of jobs: one at a time in this process, or in parallel worker processes.

Independent jobs (replicates, controls) run side by side; a job starts only when the jobs it depends on
(the level before it) are finished. Workers are spawned processes with `threads` torch threads each; on a
small machine, one thread per worker and a worker per core use the cores best for small models.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace
from typing import Callable

from ..errors import TicketlabError
from .jobs import JobSpec, execute


def _order_check(jobs: list[JobSpec]) -> dict[tuple, JobSpec]:
    by_key = {j.key: j for j in jobs}
    if len(by_key) != len(jobs):
        raise TicketlabError("the same job is listed twice")
    return by_key


class SerialExecutor:
    """Every job in this process, in dependency order (the list order, if it is one)."""

    def __init__(self, progress: Callable[[str, int, int], None] | None = None):
        self.progress = progress

    def run(self, jobs: list[JobSpec]) -> list[str]:
        by_key, done, out = _order_check(jobs), set(), []
        pending = list(jobs)
        while pending:
            ready = [j for j in pending if all(d in done or d not in by_key for d in j.deps)]
            if not ready:
                raise TicketlabError("the jobs' dependencies form a cycle")
            for job in ready:
                out.append(execute(job, self.progress))
                done.add(job.key)
                pending.remove(job)
        return out


class LocalExecutor:
    """Jobs in `workers` processes on this machine, `threads` torch threads each."""

    def __init__(self, workers: int | None = None, threads: int | None = None, log: bool = True):
        self.workers = workers or os.cpu_count() or 1
        self.threads = threads or max(1, (os.cpu_count() or 1) // self.workers)
        self.log = log

    def run(self, jobs: list[JobSpec]) -> list[str]:
        by_key = _order_check(jobs)
        jobs = [replace(j, options=replace(j.options, threads=self.threads)) for j in jobs]
        done: set[tuple] = set()
        pending = list(jobs)
        running: dict[Future, tuple[JobSpec, float]] = {}
        out: dict[tuple, str] = {}
        ctx = multiprocessing.get_context("spawn")  # fork after torch starts its threads can deadlock
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx) as pool:
            while pending or running:
                ready = [j for j in pending if all(d in done or d not in by_key for d in j.deps)]
                for job in ready[: max(0, self.workers - len(running))]:
                    running[pool.submit(execute, job)] = (job, time.perf_counter())
                    pending.remove(job)
                if not running:
                    raise TicketlabError("the jobs' dependencies form a cycle")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    job, began = running.pop(future)
                    try:
                        out[job.key] = future.result()
                    except BaseException:
                        for other in running:
                            other.cancel()
                        raise
                    done.add(job.key)
                    if self.log:
                        print(f"done: {job.describe()} ({time.perf_counter() - began:.1f}s)", file=sys.stderr)
        return [out[j.key] for j in jobs]
