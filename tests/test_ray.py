"""The Ray executor on a real local Ray cluster: the same store as one by one, worker deaths retried, finished
jobs never submitted again, an existing cluster reached by its address. One cluster for the module."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from ticketlab import TicketlabError
from ticketlab.experiments.study import StudyPlan, options, parse_controls, plan_jobs, run_study
from ticketlab.jobs import KINDS, Job, Runtime
from conftest import small_config
from test_cli import _files

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' (./dev setup does)")
pytestmark = pytest.mark.ray

from ticketlab.executors import RayExecutor  # noqa: E402  (after the skip: it needs Ray)

QUIET = {"RAY_USAGE_STATS_ENABLED": "0"}
PLAN = StudyPlan(small_config(lottery={"levels": 2}), replicates=2, controls=parse_controls("reinit"))


@pytest.fixture(scope="module")
def cluster():
    os.environ.update(QUIET)
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 * 1024, logging_level="warning")
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def stores(cluster, tmp_path_factory):
    """The tiny study run one by one in this process and on Ray (the executor uses the module's cluster)."""
    root = tmp_path_factory.mktemp("stores")
    run_study(PLAN, root=root / "serial")
    run_study(PLAN, root=root / "ray", executor="ray")
    return root


@contextlib.contextmanager
def kinds(**fns):
    """Test kinds, registered here; the executor ships them to the workers. They are local functions, which
    cloudpickle sends by value, and use no global of this module (workers cannot import it)."""
    KINDS.update(fns)
    try:
        yield
    finally:
        for name in fns:
            KINDS.pop(name, None)


def test_ray_fills_the_store_exactly_as_one_by_one(stores):
    want, got = _files(stores / "serial"), _files(stores / "ray")
    assert want.keys() == got.keys() and len(want) > 20
    assert [k for k in want if want[k] != got[k]] == []


def test_a_finished_study_submits_nothing_and_a_grown_one_only_what_is_new(stores, tmp_path):
    runtime = Runtime(options(root=stores / "ray"))
    _, jobs = plan_jobs(PLAN, runtime)
    before = {p: p.stat().st_mtime_ns for p in (stores / "ray").rglob("*") if p.is_file()}
    executor = RayExecutor(log=False)
    executor.run(jobs, runtime.options)
    assert executor.submitted == []
    assert {p: p.stat().st_mtime_ns for p in (stores / "ray").rglob("*") if p.is_file()} == before

    def count(job, runtime):  # every execution of the kind leaves a line
        with open(tmp_path / "runs.log", "a") as log:
            log.write(job.folder + "\n")
        runtime.path(job.folder).mkdir(parents=True, exist_ok=True)
        (runtime.path(job.folder) / "summary.json").write_text(json.dumps({"status": "ok"}))  # a summary of {} is not a valid one

    with kinds(test_count=count):
        a, b = Job("test_count", "a"), Job("test_count", "b", deps=("a",))
        executor.run([a], options(root=tmp_path))
        executor.run([a, b], options(root=tmp_path))
        assert executor.submitted == ["b"]
        executor.run([a, b], options(root=tmp_path))
        assert executor.submitted == []
    assert (tmp_path / "runs.log").read_text().split() == ["a", "b"]  # each ran once, in a Ray worker


def test_a_killed_worker_is_retried_and_the_study_completes(cluster, tmp_path):
    def crash_once(job, runtime):  # the worker process dies on the first attempt, like a lost node
        attempts = runtime.path(job.folder) / "attempts"
        attempts.parent.mkdir(parents=True, exist_ok=True)
        with open(attempts, "a") as f:
            f.write("x")
        if attempts.read_text() == "x":
            os._exit(1)
        (attempts.parent / "summary.json").write_text("{}")

    plan = StudyPlan(small_config(lottery={"levels": 1}))
    runtime = Runtime(options(root=tmp_path))
    reps, jobs = plan_jobs(plan, runtime)
    crash = Job("test_crash_once", "crash")
    # level 1 waits on the crashing job, so the chain goes on only after the retry
    jobs = [crash] + [dataclasses.replace(j, deps=j.deps + ("crash",)) if j.params.get("level") == 1 else j
                      for j in jobs]
    with kinds(test_crash_once=crash_once):
        RayExecutor(log=False, max_retries=2).run(jobs, runtime.options)
        assert (tmp_path / "crash" / "attempts").read_text() == "xx"
        assert runtime.done(reps[0].level(1))

        # with no retries left, the run stops with one line naming the job; its dependants do not run
        (tmp_path / "crash" / "summary.json").unlink()
        (tmp_path / "crash" / "attempts").unlink()
        after = Job("test_crash_once", "after", deps=("crash",))
        with pytest.raises(TicketlabError, match=r"^crash: .*(Crash|Died|died|exit)"):
            RayExecutor(log=False, max_retries=0).run([crash, after], runtime.options)
        assert not runtime.done("crash") and not (tmp_path / "after").exists()


def test_a_job_that_raises_is_not_retried_and_its_error_comes_back_as_raised(cluster, tmp_path):
    def refuse(job, runtime):
        with open(tmp_path / "attempts", "a") as f:
            f.write("x")
        raise TicketlabError("this job refuses")

    with kinds(test_refuse=refuse), pytest.raises(TicketlabError, match="^this job refuses$"):
        RayExecutor(log=False, max_retries=2).run([Job("test_refuse", "r")], options(root=tmp_path))
    assert (tmp_path / "attempts").read_text() == "x"
    with pytest.raises(TicketlabError, match="unknown job kind 'no_such_kind'"):
        RayExecutor(log=False).run([Job("no_such_kind", "c")], options(root=tmp_path))
    with kinds(test_refuse=refuse), pytest.raises(TicketlabError, match=r"no machine .* 1 GPU\(s\) for one job"):
        RayExecutor(log=False, num_gpus_per_job=1).run([Job("test_refuse", "g")], options(root=tmp_path))


def test_ticketlab_imports_ray_only_for_the_ray_executor():
    code = ("import sys, ticketlab, ticketlab.cli, ticketlab.executors as ex, ticketlab.experiments.study\n"
            "ex.make_executor('local', 2)\n"
            "assert 'ray' not in sys.modules and 'ticketlab.executors.ray' not in sys.modules\n"
            "ex.make_executor('ray', 2)\n"
            "assert 'ray' in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from conftest import small_config
from ticketlab.experiments.study import StudyPlan, run_study
result = run_study(StudyPlan(small_config(lottery={{"levels": 1}})), root={root!r}, executor="ray",
                   address={address!r})
print("levels", len(result.replicates[0]["levels"]))
"""


def test_a_study_runs_on_an_existing_cluster_given_its_address(tmp_path):
    """`ray start --head` as a user would (2 CPUs, no dashboard), a driver process that connects by address;
    the head is stopped by its own process id (`ray stop` would stop every Ray process on the machine)."""
    port = _free_port()  # token authentication as the README's recipe sets it up, with a token of its own
    env = {**os.environ, **QUIET, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex}
    temp = tempfile.mkdtemp(prefix="tlray")  # its sessions and address file, not /tmp/ray's (short: socket paths)
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}",
                             "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false",
                             f"--object-store-memory={100 * 1024 * 1024}", "--disable-usage-stats",
                             f"--temp-dir={temp}",
                             "--block"], env=env, stdout=open(Path(temp) / "head.log", "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60  # it says it blocks once the head is up
        while "block forever" not in (Path(temp) / "head.log").read_text() and head.poll() is None \
                and time.time() < deadline:
            time.sleep(0.2)
        assert head.poll() is None and time.time() < deadline, (Path(temp) / "head.log").read_text()
        driver = subprocess.run([sys.executable, "-c", DRIVER.format(tests=str(Path(__file__).parent),
                                                                     root=str(tmp_path), address=f"127.0.0.1:{port}")],
                                capture_output=True, text=True, env=env, timeout=300)
        assert driver.returncode == 0, driver.stderr[-3000:]
        assert "levels 2" in driver.stdout
        assert "jobs (ray)" in driver.stderr  # the sweep's progress bar
        assert len(list(tmp_path.glob("lottery_*/seed_0/level_1/summary.json"))) == 1
    finally:
        head.terminate()  # ray start --block stops the processes it started when it is terminated
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_an_address_where_nothing_listens_is_one_line_within_the_stated_time():
    from ticketlab.executors.ray import check_reachable

    port = _free_port()  # nothing listens there
    began = time.perf_counter()
    with pytest.raises(TicketlabError, match=rf"cannot connect to the Ray cluster at '127.0.0.1:{port}': nothing "
                                             r"answered there \(.*; waited at most 2 s\)"):
        check_reachable(f"127.0.0.1:{port}", timeout=2)
    assert time.perf_counter() - began < 4
    with pytest.raises(TicketlabError, match="HOST:PORT"):
        check_reachable("no-port-here")
    check_reachable("auto")  # Ray finds it from its own files
