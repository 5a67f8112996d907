"""Summaries and configs: a summary carries its own hash, and a record of the wrong shape is one line naming
its file (issue 22, the store's side). Built with finish_job on hand-made folders: nothing is trained."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from ticketlab import store
from ticketlab.errors import TicketlabError
from ticketlab.report.aggregate import collect

HASH = "0123456789abcdef"


@pytest.fixture
def job(tmp_path):
    """A finished level of a lottery experiment: lottery_<hash>/seed_0/level_1 with metrics.json (and the level 0
    it builds on: a level missing below it is a problem of its own)."""
    experiment = store.experiment_dir(tmp_path, "lottery", HASH)
    store.write_json(experiment / store.CONFIG, {"kind": "lottery", "hash": HASH, "config": {}})
    for level in (0, 1):
        folder = store.level_dir(store.seed_dir(experiment, 0), level)
        store.write_json(folder / store.METRICS, [{"step": 0, "test_accuracy": 0.5}])
        store.finish_job(folder, {"level": level, "density": 0.8 ** level, "status": "ok"})
    return folder


def stored(folder: Path) -> dict:
    return json.loads((folder / store.SUMMARY).read_text())


def test_a_new_summary_records_its_own_hash(job, tmp_path):
    summary = stored(job)
    assert len(summary[store.SUMMARY_HASH]) == 64 and set(summary[store.SUMMARY_HASH]) <= set("0123456789abcdef")
    assert summary[store.SUMMARY_HASH] == store.done._summary_hash(summary)
    assert store.is_done(job) is True
    notes: list[str] = []
    assert store.verify(tmp_path, notes) == [] and notes == []


def test_finish_job_returns_the_summary_without_its_own_hash(tmp_path):
    summary = store.finish_job(tmp_path, {"level": 2})
    assert sorted(summary) == ["files", "level"]
    assert sorted(stored(tmp_path)) == ["files", "level", store.SUMMARY_HASH]


def test_a_summary_read_back_and_finished_again_gets_a_fresh_hash(job):
    summary = store.read_summary(job)
    summary["density"] = 0.5
    store.finish_job(job, summary)
    assert stored(job)["density"] == 0.5 and store.verify(job) == []


def test_the_hash_holds_for_what_json_changes_on_the_way(tmp_path):
    # NaN is written as null, tuples as lists, number keys as text (sorted differently once they are text)
    store.finish_job(tmp_path, {"loss": float("nan"), "shape": (3, 4), "by_step": {10: 0.1, 2: 0.2}})
    assert stored(tmp_path)["loss"] is None and stored(tmp_path)["by_step"] == {"10": 0.1, "2": 0.2}
    assert store.verify(tmp_path) == []


def test_verify_names_a_summary_that_does_not_match_its_hash(job, tmp_path, capfd):
    summary = stored(job)
    summary["density"] = 0.9  # still valid JSON, still the right shape: only its hash tells
    (job / store.SUMMARY).write_text(json.dumps(summary))
    assert store.verify(tmp_path) == [f"{job}: summary.json is damaged (its content does not match its recorded hash)"]
    assert (job / store.METRICS).is_file()  # verify changes nothing
    assert store.is_done(job) is False  # the done rule sets it aside, to be recomputed
    (line,) = capfd.readouterr().err.splitlines()
    assert line == (f"ticketlab: {job}: summary.json is damaged (its content does not match its recorded hash); "
                    "the job will be recomputed")
    assert (job / f"{store.SUMMARY}{store.DAMAGED}1").is_file() and not (job / store.METRICS).exists()


def test_a_summary_without_its_own_hash_is_accepted_and_said_so(job, tmp_path, capfd):
    old = {k: v for k, v in stored(job).items() if k != store.SUMMARY_HASH}  # as older versions wrote it
    store.write_json(job / store.SUMMARY, old)
    assert store.is_done(job) is True
    notes: list[str] = []
    assert store.verify(tmp_path, notes) == []
    assert notes == [f"1 finished job(s) under {tmp_path} (first: {job}) were written before summaries recorded "
                     "their own hash: their summary.json content is not checked (their other files are)"]
    assert store.verify(tmp_path) == []  # without a notes list: one line on stderr
    assert capfd.readouterr().err == f"ticketlab: {notes[0]}\n"


def test_an_empty_summary_is_not_a_finished_job(job, tmp_path):
    store.write_json(job / store.SUMMARY, {})
    assert store.verify(tmp_path) == [f"{job}: summary.json is not a valid job summary (an empty object)"]
    with pytest.raises(TicketlabError, match=r"^\S*summary.json is not a job summary \(an empty object\)"):
        store.read_summary(job)


@pytest.mark.parametrize("content,shape", [({}, "an empty object"), ([1, 2], "a JSON array, not an object"),
                                           ("text", "a JSON string, not an object")])
def test_reading_a_summary_of_the_wrong_shape_is_one_line(tmp_path, content, shape):
    store.write_json(tmp_path / store.SUMMARY, content)
    with pytest.raises(TicketlabError) as caught:
        store.read_summary(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / store.SUMMARY} is not a job summary ({shape})") and "\n" not in message


def test_a_key_a_summary_lacks_names_the_file(tmp_path):
    store.write_json(tmp_path / store.SUMMARY, {"level": 1, "checks": {"achieved": {}}})
    summary = store.read_summary(tmp_path)
    with pytest.raises(TicketlabError, match="summary.json has no 'density'") as caught:
        summary["density"]
    assert str(caught.value).startswith(str(tmp_path / store.SUMMARY))
    with pytest.raises(TicketlabError, match="summary.json has no 'requested'"):  # nested objects too
        summary["checks"]["requested"]
    assert summary.get("density") is None and summary == {"level": 1, "checks": {"achieved": {}}}


def test_a_record_survives_pickling_with_its_file(tmp_path):
    store.write_json(tmp_path / "x.json", {"a": {"b": 1}})
    again = pickle.loads(pickle.dumps(store.read_json(tmp_path / "x.json")))
    assert again == {"a": {"b": 1}} and again.path == str(tmp_path / "x.json")
    assert json.dumps(again) == '{"a": {"b": 1}}'


@pytest.mark.parametrize("content,problem", [
    ({}, "not an experiment's config (it names no experiment hash)"),
    ({"hash": 3}, "not an experiment's config (it names no experiment hash)"),
    ([], "not an experiment's config (a JSON array, not an object)")])
def test_a_config_of_the_wrong_shape_is_one_line_and_named_by_verify(job, tmp_path, content, problem):
    experiment = job.parent.parent
    store.write_json(experiment / store.CONFIG, content)
    with pytest.raises(TicketlabError) as caught:
        store.read_config(experiment)
    assert str(caught.value) == (f"{experiment / store.CONFIG} is {problem}; `ticketlab verify` on its run lists "
                                 "every damaged file")
    assert store.verify(tmp_path) == [f"{experiment / store.CONFIG} is {problem}"]


def test_a_good_config_is_read_and_a_missing_key_names_it(job):
    config = store.read_config(job.parent.parent)
    assert config["hash"] == HASH
    with pytest.raises(TicketlabError, match=r"config.json has no 'provenance'"):
        config["provenance"]
    with pytest.raises(TicketlabError, match=r"is not an experiment of a run store: \S*config.json is missing"):
        store.read_config(job.parent)


def test_a_config_without_a_hash_is_written_again(tmp_path, capfd):
    store.write_json(tmp_path / store.CONFIG, {"kind": "train"})
    store.record_experiment(tmp_path, {"kind": "train", "hash": HASH}, lambda: {"git": "x"})
    assert store.read_config(tmp_path) == {"kind": "train", "hash": HASH, "provenance": {"git": "x"}}
    assert capfd.readouterr().err == (f"ticketlab: {tmp_path / store.CONFIG} is not an experiment's config (it names "
                                      "no experiment hash); writing it again\n")


def test_a_report_of_an_old_summary_of_another_shape_names_the_file(job):
    store.write_json(job / store.SUMMARY, {"variant": "ticket"})  # no hashes: accepted as an old summary
    shutil.rmtree(job.parent / "level_0")  # read first otherwise
    with pytest.raises(TicketlabError, match=f"^{job / store.SUMMARY} has no 'level'"):
        collect([job.parent.parent])


def test_running_job_removes_stale_temporary_files_and_records_inputs(job, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    stale = other / ".metrics.json.x.tmp"
    stale.write_text("left by a killed writer")
    os.utime(stale, (0, 0))  # older than this process
    with store.running_job(other, [job]):
        assert not stale.exists()
        summary = store.finish_job(other, {"level": 2})
    assert summary["inputs"] == {os.path.relpath(os.path.realpath(job), os.path.realpath(other)): store.done._files_digest(stored(job)["files"])}
    assert store.done._INPUTS == {}
