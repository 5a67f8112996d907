"""Run a graph of jobs on a Ray cluster: one Ray task per job, the run store on a shared file system.

Only the store carries results: a task returns its job's folder (a string) and nothing else. Ray is imported
only when this executor is built (it is an optional extra: `pip install 'ticketlab[ray]'`).

Dependencies are chained by passing each upstream task's ObjectRef as an argument of the downstream task, and
the whole graph is submitted at once: Ray's scheduler starts a job the moment its inputs exist, on whichever
node has the resources, with no polling loop in this process between jobs (a driver round trip per job
would add latency to every level of an IMP chain). A failure upstream fails its dependants without running
them. Finished jobs (store.is_done, their deps finished too) are not submitted; a job whose dependency is
finished before the sweep starts, or is not in the list, has no upstream ref and may start at once.

A worker process that dies (killed, out of memory, its node lost) has its task retried up to `max_retries`
times (Ray's retries for system failures); an exception raised by a job is not retried (it would fail the
same way) and is re-raised here as the job raised it. A retried job resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, Callable

from ..errors import Blocked, TicketlabError
from ..jobs import KINDS, Job, RunOptions, Runtime, execute
from .local import blocked_error, finished_jobs, ready_order

LOCAL_OBJECT_STORE = 100 * 1024 * 1024  # bytes: tasks pass only folder names, so a small store is plenty
CONNECT_TIMEOUT = 10.0  # seconds to wait for a cluster's address to accept a connection

_RUNTIME: Runtime | None = None  # a Ray worker process's runtime: data loaded once per process


def _run_job(kinds: dict[str, Callable], options: RunOptions, job: Job, *upstream: str) -> str:
    """The body of every task, in a Ray worker process. `upstream` (the dependencies' folders, once they are
    finished) only orders the task. Kinds not registered in this process (a user's own, from a script) come
    from the driver by value; ticketlab's own are registered by importing it, which unpickling the job does."""
    global _RUNTIME
    for name, fn in kinds.items():
        KINDS.setdefault(name, fn)
    if options.device.startswith("cuda"):
        import ray

        if ray.get_gpu_ids():  # Ray set CUDA_VISIBLE_DEVICES to the task's GPU(s): use the first one visible
            options = dataclasses.replace(options, device="cuda")
    if _RUNTIME is None or _RUNTIME.options != options:
        _RUNTIME = Runtime(options)
    return execute(job, _RUNTIME)  # sets the job's torch thread count around the kind's function


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """One line, after at most `timeout` seconds, when nothing accepts a connection at HOST:PORT (ray.init
    itself retries an address where nothing listens forever). "auto" is found by Ray from its own files."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise TicketlabError(f"--address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise TicketlabError(f"cannot connect to the Ray cluster at {address!r}: nothing answered there "
                             f"({err.strerror or type(err).__name__}; waited at most {timeout:g} s)") from None


class RayExecutor:
    """Jobs as Ray tasks: on an existing cluster (`address` "auto" or "HOST:PORT"; its nodes must see the
    run store at the same path) or, with address None, on a Ray instance started here and stopped after the
    run (`num_cpus` CPUs, default all). If Ray is already initialised in this process, that is used.

    Each task asks for `num_cpus_per_job` CPUs (default: options.threads, the torch threads each job runs
    with) and `num_gpus_per_job` GPUs (default 1 when options.device is cuda, else 0).
    """

    def __init__(self, address: str | None = None, num_cpus_per_job: float | None = None,
                 num_gpus_per_job: float | None = None, max_retries: int = 2, log: bool = True,
                 num_cpus: int | None = None, object_store_memory: int = LOCAL_OBJECT_STORE):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise TicketlabError("the ray executor needs Ray: pip install 'ticketlab[ray]'") from None
        if max_retries < 0:
            raise TicketlabError(f"max_retries must be at least 0, got {max_retries}")
        self.address = address
        self.num_cpus_per_job = num_cpus_per_job
        self.num_gpus_per_job = num_gpus_per_job
        self.max_retries = max_retries
        self.log = log
        self.num_cpus = num_cpus
        self.object_store_memory = object_store_memory
        self.submitted: list[str] = []  # the folders the last run submitted (finished ones are not)

    def _connect(self) -> bool:
        """Initialise Ray unless it is; True when this call did (so the run shuts it down)."""
        import ray

        if ray.is_initialized():
            return False
        quiet = {"logging_level": logging.WARNING, "configure_logging": True}
        if self.address is None:  # "local": a new instance, even where `ray start` runs one
            ray.init(address="local", num_cpus=self.num_cpus or os.cpu_count() or 1, include_dashboard=False,
                     object_store_memory=self.object_store_memory, **quiet)
        else:
            check_reachable(self.address)
            try:
                ray.init(address=self.address, **quiet)
            except (ConnectionError, ValueError, RuntimeError) as err:
                hint = "" if "RAY_AUTH_MODE" in os.environ else \
                    " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token here)"
                raise TicketlabError(f"cannot connect to the Ray cluster at {self.address!r}: "
                                     f"{(str(err).splitlines() or [type(err).__name__])[0]}{hint}") from None
        return True

    def run(self, jobs: list[Job], options: RunOptions) -> list[str]:
        by_folder = ready_order(jobs)
        if options.threads < 1:
            raise TicketlabError(f"threads must be at least 1, got {options.threads}")
        unknown = sorted({j.kind for j in jobs} - KINDS.keys())
        if unknown:
            raise TicketlabError(f"unknown job kind {unknown[0]!r}; registered: {', '.join(sorted(KINDS))}")
        # workers have their own working directories: every path they get is absolute
        options = dataclasses.replace(options, root=str(Path(options.root).resolve()),
                                      data_dir=str(Path(options.data_dir).resolve()) if options.data_dir else None)
        root = Path(options.root)
        done = finished_jobs(jobs, by_folder, root)  # as the local executor
        pending = [j for j in jobs if j.folder not in done]
        self.submitted = []
        if not pending:
            return [j.folder for j in jobs]

        import ray

        started = self._connect()
        try:
            self._submit_and_wait(ray, pending, by_folder, done, options, len(jobs))
        finally:
            if started:
                ray.shutdown()
        return [j.folder for j in jobs]

    def _submit_and_wait(self, ray: Any, pending: list[Job], by_folder: dict[str, Job], done: set[str],
                         options: RunOptions, total: int) -> None:
        from tqdm import tqdm

        cpus = self.num_cpus_per_job if self.num_cpus_per_job is not None else options.threads
        gpus = self.num_gpus_per_job if self.num_gpus_per_job is not None else \
            (1 if options.device.startswith("cuda") else 0)
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
            # Ray would keep such tasks pending for ever
            raise TicketlabError(f"no machine of the Ray cluster has {cpus:g} CPU(s) and {gpus:g} GPU(s) for one job "
                                 f"(its machines: {', '.join(_says(n) for n in nodes) or 'none'})")
        if self.log:
            total_resources = {"CPU": sum(n.get("CPU", 0) for n in nodes), "GPU": sum(n.get("GPU", 0) for n in nodes)}
            print(f"ray: {len(pending)} job(s) to run ({total - len(pending)} finished) on {len(nodes)} machine(s), "
                  f"{_says(total_resources)}; {cpus:g} CPU(s) and {gpus:g} GPU(s) per job", file=sys.stderr)
        task = ray.remote(_run_job)
        resources = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": self.max_retries, "retry_exceptions": False}
        kinds = ray.put({kind: KINDS[kind] for kind in {j.kind for j in pending}})
        shared = ray.put(options)
        refs: dict[str, Any] = {}
        order = _in_dependency_order(pending, done, by_folder)
        for job in order:
            upstream = [refs[d] for d in job.deps if d in refs]
            refs[job.folder] = task.options(name=job.describe(), **resources).remote(kinds, shared, job, *upstream)
            self.submitted.append(job.folder)
        job_of = {ref: by_folder[folder] for folder, ref in refs.items()}
        remaining = list(refs.values())
        blocked: dict[str, str | None] = {}  # as the local executor: the other jobs still run (errors.Blocked)
        with tqdm(total=total, initial=total - len(order), desc="jobs (ray)", unit="job", file=sys.stderr,
                  disable=not self.log, dynamic_ncols=True) as bar:
            while remaining:
                finished, remaining = ray.wait(remaining, num_returns=1, fetch_local=False)
                for ref in finished:
                    job = job_of[ref]
                    try:
                        ray.get(ref)
                    except BaseException as err:
                        cause = _unwrap(ray, err, job)
                        if isinstance(cause, Blocked):  # builds on a diverged job: skip it and what needs it
                            blocked[job.folder] = None if any(d in blocked for d in job.deps) else str(cause)
                            continue
                        for other in remaining:
                            ray.cancel(other)
                        raise cause from None
                    bar.set_postfix_str(job.describe()[-60:], refresh=False)
                    bar.update(1)
        if blocked:
            raise blocked_error(blocked, by_folder)


def _says(resources: dict[str, float]) -> str:
    return f"{resources.get('CPU', 0):g} CPU(s), {resources.get('GPU', 0):g} GPU(s)"


def _in_dependency_order(pending: list[Job], done: set[str], by_folder: dict[str, Job]) -> list[Job]:
    """Pending jobs, each after the pending jobs it depends on (so their refs exist when it is submitted)."""
    placed = set(done)
    order: list[Job] = []
    rest = list(pending)
    while rest:
        ready = [j for j in rest if all(d in placed or d not in by_folder for d in j.deps)]
        order += ready
        placed.update(j.folder for j in ready)
        rest = [j for j in rest if j.folder not in placed]
    return order


def _unwrap(ray: Any, err: BaseException, job: Job) -> BaseException:
    """A job's own exception as it raised it (a TicketlabError stays one line); system failures (a worker that
    died more than max_retries times, a lost node) as Ray reports them, naming the job."""
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = getattr(err, "cause", None)
        if isinstance(cause, Exception):
            if not isinstance(cause, TicketlabError):
                print(str(err), file=sys.stderr)  # the remote traceback
            return cause
        return err
    if isinstance(err, ray.exceptions.RayError):
        return TicketlabError(f"{job.describe()}: {type(err).__name__}: "
                              f"{(str(err).splitlines() or [''])[0]} (finished jobs are in the store; "
                              "run again to resume)")
    return err
