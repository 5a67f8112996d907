"""Executors: the same jobs give the same run store, one by one or in parallel processes."""

import pytest

from ticketlab import TicketlabError
from ticketlab.executors import JobSpec, LocalExecutor, SerialExecutor
from ticketlab.experiments.study import StudyPlan, parse_controls, plan_jobs, run_study
from conftest import small_config
from test_cli import _files


def test_jobs_are_plain_and_ordered_by_their_dependencies(tmp_path):
    import pickle

    plan = StudyPlan(small_config(lottery={"levels": 2}), replicates=2, controls=parse_controls("reinit,oneshot"))
    jobs = plan_jobs(plan, root=str(tmp_path), threads=1)
    assert len(jobs) == 2 * (3 + 3 + 2)  # per seed: 3 levels, reinit at 3 levels, oneshot at levels 1-2
    assert pickle.loads(pickle.dumps(jobs)) == jobs
    level2 = next(j for j in jobs if j.level == 2 and j.control is None)
    assert level2.deps == [(level2.config.hash(), level2.config.seed, 1, "")]
    oneshot = next(j for j in jobs if j.control and j.control.name == "oneshot" and j.level == 2)
    assert {d[2] for d in oneshot.deps} == {0, 2}


def test_parallel_workers_fill_the_store_exactly_as_one_by_one(tmp_path, synthetic):
    plan = StudyPlan(small_config(lottery={"levels": 2}), replicates=2, controls=parse_controls("reinit"))
    serial = plan_jobs(plan, root=str(tmp_path / "serial"), threads=1)
    SerialExecutor().run(serial)
    parallel = plan_jobs(plan, root=str(tmp_path / "parallel"), threads=1)
    folders = LocalExecutor(workers=2, threads=1, log=False).run(parallel)
    assert len(folders) == len(parallel)
    want, got = _files(tmp_path / "serial"), _files(tmp_path / "parallel")
    assert want.keys() == got.keys() and len(want) > 20
    assert [k for k in want if want[k] != got[k]] == []
    # and the study reads the parallel results back without training again
    calls = []
    again = run_study(plan, data=synthetic, root=tmp_path / "parallel", progress=lambda *a: calls.append(a))
    assert calls == [] and len(again.replicates) == 2


def test_a_duplicate_job_is_refused():
    job = JobSpec(small_config(), level=0)
    with pytest.raises(TicketlabError, match="twice"):
        SerialExecutor().run([job, job])
