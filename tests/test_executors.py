"""Jobs and executors: jobs are plain data; the same jobs give the same run store, one by one or in parallel
processes; kinds are found in a registry."""

import pickle

import pytest

from ticketlab import Job, TicketlabError, register_kind
from ticketlab.executors import LocalExecutor, SerialExecutor
from ticketlab.experiments.study import StudyPlan, options, parse_controls, plan_jobs, run_study
from ticketlab.jobs import KINDS, Runtime
from conftest import small_config
from test_cli import _files


def test_jobs_are_plain_data_ordered_by_their_dependencies(tmp_path, synthetic):
    plan = StudyPlan(small_config(lottery={"levels": 2}), replicates=2, controls=parse_controls("reinit,oneshot"))
    runtime = Runtime(options(root=tmp_path))
    runtime.add_data(plan.config.dataset, synthetic)
    reps, jobs = plan_jobs(plan, runtime)
    assert len(jobs) == 2 * (3 + 3 + 2)  # per seed: 3 levels, reinit at 3 levels, oneshot at levels 1-2
    assert pickle.loads(pickle.dumps(jobs)) == jobs
    level2 = next(j for j in jobs if j.kind == "level" and j.params["level"] == 2 and j.params["rep"] == reps[0])
    assert level2.deps == (reps[0].level(1),)
    oneshot = next(j for j in jobs if j.kind == "control" and j.params["control"].name == "oneshot"
                   and j.params["level"] == 2 and j.params["rep"] == reps[0])
    assert set(oneshot.deps) == {reps[0].level(0), reps[0].level(2)}
    assert {j.kind for j in jobs} == {"dense", "level", "control"}


def test_parallel_workers_fill_the_store_exactly_as_one_by_one(tmp_path, synthetic):
    plan = StudyPlan(small_config(lottery={"levels": 2}), replicates=2, controls=parse_controls("reinit"))
    serial = run_study(plan, root=tmp_path / "serial")
    parallel = run_study(plan, root=tmp_path / "parallel", workers=2)
    want, got = _files(tmp_path / "serial"), _files(tmp_path / "parallel")
    assert want.keys() == got.keys() and len(want) > 20
    assert [k for k in want if want[k] != got[k]] == []
    def strip(levels):
        return [{k: v for k, v in s.items() if k not in ("train_seconds_this_session", "summary_hash")} for s in levels]

    assert strip(serial.replicates[1]["levels"]) == strip(parallel.replicates[1]["levels"])
    # and the study reads the parallel results back without training again
    calls = []
    again = run_study(plan, data=synthetic, root=tmp_path / "parallel", progress=lambda *a: calls.append(a))
    assert calls == [] and len(again.replicates) == 2


def test_a_duplicate_job_or_a_cycle_is_refused(tmp_path):
    job = Job("dense", "x/level_0")
    with pytest.raises(TicketlabError, match="twice"):
        SerialExecutor().run([job, job], options(root=tmp_path))
    a, b = Job("dense", "a", deps=("b",)), Job("dense", "b", deps=("a",))
    with pytest.raises(TicketlabError, match="cycle"):
        LocalExecutor(2).run([a, b], options(root=tmp_path))


def test_a_new_job_kind_is_one_registered_function(tmp_path):
    @register_kind("test_write_summary")
    def write(job, runtime):
        folder = runtime.path(job.folder)
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(f'{{"value": {job.params["value"]}}}')

    try:
        jobs = [Job("test_write_summary", "b", {"value": 2}, deps=("a",)), Job("test_write_summary", "a", {"value": 1})]
        SerialExecutor().run(jobs, options(root=tmp_path))
        assert (tmp_path / "a" / "summary.json").read_text() == '{"value": 1}'
        assert (tmp_path / "b" / "summary.json").is_file()
        with pytest.raises(TicketlabError, match="unknown job kind"):
            SerialExecutor().run([Job("no_such_kind", "c")], options(root=tmp_path))
    finally:
        KINDS.pop("test_write_summary")


def test_executors_do_not_import_experiments():
    import ast
    from pathlib import Path

    import ticketlab.executors as executors

    for path in Path(executors.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "experiments" not in (node.module or ""), f"{path.name} imports {node.module}"
