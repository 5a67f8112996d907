"""Nothing lost, nothing silently wrong: atomic writes, hashes of every finished job's files, torn checkpoints,
leftover temporary files, `verify`, and workers that die with their parent."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ticketlab import Mask, run_lottery, store
from ticketlab.experiments.stability import StabilitySpec
from ticketlab.experiments.study import StudyPlan, run_study
from conftest import small_config

CONFIG = small_config()  # levels 0, 1, 2: three jobs of 200 steps


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, synthetic):
    root = tmp_path_factory.mktemp("pristine")
    run_dir = run_lottery(CONFIG, data=synthetic, root=root).run_dir
    return root, run_dir.relative_to(root)


@pytest.fixture
def copy(pristine, tmp_path):
    """A copy of the pristine store (links kept) and its replicate folder."""
    root = tmp_path / "store"
    shutil.copytree(pristine[0], root, symlinks=True)
    return root, root / pristine[1]


def rerun(root, synthetic):
    trained: set[str] = set()
    run_lottery(CONFIG, data=synthetic, root=root, progress=lambda label, step, last: trained.add(label))
    return trained


def snapshot(root: Path) -> dict[str, object]:
    """Every file's bytes (summaries without their timing), links and set-aside summaries left out."""
    out: dict[str, object] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            if p.is_symlink() or store.DAMAGED in name or store.is_tmp(name):
                continue
            try:
                summary = json.loads(p.read_bytes()) if name == store.SUMMARY else None
            except ValueError:
                summary = None
            out[str(p.relative_to(root))] = p.read_bytes() if not isinstance(summary, dict) else \
                {k: v for k, v in summary.items() if k not in ("train_seconds_this_session", store.SUMMARY_HASH)}
    return out


def lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("ticketlab:")]


def flip_data_bytes(path: Path, xor: int = 0xFF, count: int = 8) -> None:
    """Garble the tensor data of a safetensors file, leaving its header valid."""
    raw = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little")
    for i in range(start, start + count):
        raw[i] ^= xor
    path.write_bytes(bytes(raw))


# ---- Writes --------------------------------------------------------------------------------------------------


def test_json_holds_only_valid_json_nan_as_null(tmp_path):
    store.write_json(tmp_path / "a.json", {"loss": math.nan, "rows": [math.inf, -math.inf, 1.5], "ok": (1, 2)})
    text = (tmp_path / "a.json").read_text()
    strict = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert strict == {"loss": None, "rows": [None, None, 1.5], "ok": [1, 2]}


def test_a_failed_mask_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "mask.safetensors"
    old = Mask({"w": torch.tensor([True, False])})
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    old.save(path)
    assert len(synced) == 2  # the file, then its folder after the rename
    before = path.read_bytes()

    real_write = Path.write_bytes

    def torn(self, data):  # a writer killed half way (files.write_safetensors writes the serialised bytes)
        real_write(self, data[:4])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", torn)
    with pytest.raises(KeyboardInterrupt):
        Mask({"w": torch.tensor([False, True])}).save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["mask.safetensors"]


# ---- Finished jobs are checked -------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", [b"", b'{"level": 1, "dens', b"[1, 2]"])
def test_a_damaged_summary_is_recomputed_with_one_line(copy, synthetic, capfd, damage, pristine):
    root, run_dir = copy
    (run_dir / "level_1" / store.SUMMARY).write_bytes(damage)
    assert rerun(root, synthetic) == {"seed 0 level 1"}  # level 2 stays: level 1 comes back bit for bit
    (found,) = lines(capfd.readouterr().err)
    assert "level_1: summary.json is" in found and found.endswith("the job will be recomputed")
    assert (run_dir / "level_1" / "summary.json.damaged-1").read_bytes() == damage
    assert snapshot(root) == snapshot(pristine[0])


@pytest.mark.parametrize("where,name", [("level_1", "final.safetensors"), ("level_1", "mask.safetensors"),
                                        ("level_2", "init.safetensors"), ("level_0", "final.safetensors")])
def test_a_garbled_file_with_a_valid_header_is_found_and_recomputed(copy, synthetic, capfd, pristine, where, name):
    root, run_dir = copy
    flip_data_bytes(run_dir / where / name, xor=0x01 if name.startswith("mask") else 0xFF)  # a mask stays 0/1
    trained = rerun(root, synthetic)
    assert trained == {f"seed 0 {where.replace('_', ' ')}"}
    (found,) = lines(capfd.readouterr().err)
    assert f"{name} is damaged (hash mismatch); the job will be recomputed" in found
    assert snapshot(root) == snapshot(pristine[0])


def test_corrupt_or_missing_metrics_are_recomputed(copy, synthetic, capfd, pristine):
    root, run_dir = copy
    metrics = run_dir / "level_2" / store.METRICS
    metrics.write_text(metrics.read_text()[:-40])
    (run_dir / "level_1" / store.METRICS).unlink()
    assert rerun(root, synthetic) == {"seed 0 level 1", "seed 0 level 2"}
    found = lines(capfd.readouterr().err)
    assert len(found) == 2 and "metrics.json is missing" in found[0] and "metrics.json is damaged" in found[1]
    assert snapshot(root) == snapshot(pristine[0])


def test_a_corrupt_stability_analysis_is_recomputed(tmp_path, synthetic, capfd):
    plan = StudyPlan(small_config(lottery={"levels": 0}),
                     stability=(StabilitySpec(step=0, points=3, train_eval_size=200),))
    first = run_study(plan, data=synthetic, root=tmp_path)
    (analysis,) = tmp_path.glob("**/analysis_*")
    good = (analysis / store.STABILITY).read_bytes()
    assert set(json.loads((analysis / store.SUMMARY).read_text())["files"]) == {store.STABILITY}
    (analysis / store.STABILITY).write_bytes(good.replace(b'"stable"', b'"stab1e"'))
    capfd.readouterr()
    trained = []
    again = run_study(plan, data=synthetic, root=tmp_path, progress=lambda *a: trained.append(a))
    assert trained == []  # the copies are intact: only the analysis runs again
    (found,) = lines(capfd.readouterr().err)
    assert "stability.json is damaged (hash mismatch)" in found
    assert (analysis / store.STABILITY).read_bytes() == good
    assert again.replicates[0]["stability"] == first.replicates[0]["stability"]


def test_summaries_written_before_hashes_are_accepted(copy, synthetic, capfd):
    root, run_dir = copy
    for summary in root.glob("**/summary.json"):
        old = {k: v for k, v in json.loads(summary.read_text()).items()
               if k not in ("files", "inputs", store.SUMMARY_HASH)}
        store.write_json(summary, old)
    assert rerun(root, synthetic) == set() and lines(capfd.readouterr().err) == []
    assert store.verify(root) == []


def test_an_unreadable_experiment_config_is_written_again(copy, synthetic, capfd, pristine):
    root, run_dir = copy
    (run_dir.parent / store.CONFIG).write_text('{"kind": "lott')
    assert rerun(root, synthetic) == set()
    (found,) = lines(capfd.readouterr().err)
    assert found.startswith(f"ticketlab: {run_dir.parent / store.CONFIG} is unreadable") and "writing it again" in found
    def identity(folder):
        return {k: v for k, v in store.read_json(folder / store.CONFIG).items() if k != "provenance"}

    assert identity(run_dir.parent) == identity(pristine[0] / pristine[1].parent)


def test_a_dependent_of_a_job_recomputed_with_other_results_is_recomputed(copy, synthetic, capfd):
    """As on a GPU whose kernels are not deterministic: level 1 comes back with other weights."""
    root, run_dir = copy
    level1 = run_dir / "level_1"
    weights = store.load_weights(level1 / store.FINAL)
    store.save_weights(level1 / store.FINAL, {k: v * 1.001 for k, v in weights.items()})
    store.finish_job(level1, store.read_summary(level1))  # its new hashes, as a recomputation writes them
    assert rerun(root, synthetic) == {"seed 0 level 2"}
    (found,) = lines(capfd.readouterr().err)
    assert "level_2: its input ../level_1 was recomputed with other results" in found


def test_a_finished_job_is_hashed_once_per_process_until_a_file_changes(copy, monkeypatch):
    _, run_dir = copy
    level1 = run_dir / "level_1"
    hashed = []
    real = store.file_digest
    monkeypatch.setattr(store.done, "file_digest", lambda p: (hashed.append(Path(p).name), real(p))[1])
    (level1 / store.CHECKPOINT).write_bytes(b"left by a run killed after its summary")
    assert store.is_done(level1) and store.is_done(level1) and store.is_done(level1)
    assert not (level1 / store.CHECKPOINT).exists()
    assert sorted(hashed) == ["final.safetensors", "init.safetensors", "mask.safetensors", "metrics.json"]
    flip_data_bytes(level1 / store.FINAL)
    assert not store.is_done(level1)


# ---- Checkpoints and temporary files -------------------------------------------------------------------------


class Evil:
    def __reduce__(self):
        return print, ("this must never run",)


def _torn(path: Path) -> None:
    store.save_checkpoint(path, {"model": {"w": torch.ones(1000)}, "step": 50})
    path.write_bytes(path.read_bytes()[:3000])


def _garbled(path: Path) -> None:
    store.save_checkpoint(path, {"model": {"w": torch.ones(1000)}, "step": 50})
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage,reason", [(_torn, "hash mismatch"), (_garbled, "hash mismatch"),
                                           (lambda p: p.write_bytes(b""), "unreadable"),
                                           (lambda p: torch.save({"x": Evil()}, p), "weights_only")])
def test_a_damaged_checkpoint_is_deleted_and_the_job_restarts(copy, synthetic, capfd, pristine, damage, reason):
    root, run_dir = copy
    level1 = run_dir / "level_1"
    for name in store.job_files(level1) + [store.SUMMARY]:
        (level1 / name).unlink()
    damage(level1 / store.CHECKPOINT)
    assert rerun(root, synthetic) == {"seed 0 level 1"}
    captured = capfd.readouterr()
    (found,) = lines(captured.err)
    assert "checkpoint.pt is damaged" in found and reason in found and "restarts from its start" in found
    assert "this must never run" not in captured.out
    assert snapshot(root) == snapshot(pristine[0])


def test_a_checkpoint_written_before_digests_still_loads(tmp_path):
    torch.save({"step": 7}, tmp_path / "checkpoint.pt")
    assert store.load_checkpoint(tmp_path / "checkpoint.pt") == {"step": 7}


def test_a_write_killed_half_way_never_blocks_and_its_temporary_is_removed(copy, synthetic, capfd, pristine):
    root, run_dir = copy
    level1 = run_dir / "level_1"
    mask = (level1 / store.MASK).read_bytes()
    for name in store.job_files(level1) + [store.SUMMARY]:
        (level1 / name).unlink()
    stale = level1 / ".mask.safetensors.k1ll3d.tmp"
    stale.write_bytes(mask[: len(mask) // 3])
    os.utime(stale, (time.time() - 3600, time.time() - 3600))  # left by a run killed before this process
    fresh = level1 / ".final.safetensors.wr1t1ng.tmp"
    fresh.write_bytes(b"another process may be writing this")  # younger than this process: not touched
    assert rerun(root, synthetic) == {"seed 0 level 1"}
    assert not stale.exists() and fresh.exists()
    assert snapshot(root) == snapshot(pristine[0])
    assert store.verify(root) == [f"{fresh}: a temporary file left by a killed writer"]


# ---- verify --------------------------------------------------------------------------------------------------


def test_verify_reports_each_kind_of_damage_and_changes_nothing(copy):
    root, run_dir = copy
    assert store.verify(root) == [] and store.verify(run_dir.parent) == []
    flip_data_bytes(run_dir / "level_1" / store.FINAL)
    (run_dir / "level_1" / store.CHECKPOINT).write_bytes(b"left over")
    (run_dir / "level_2" / store.SUMMARY).write_text('{"level": 2,')
    (run_dir / "level_2" / ".final.safetensors.x.tmp").write_bytes(b"")
    (run_dir.parent / store.CONFIG).write_text("{")
    (run_dir / "level_3").mkdir()
    _torn(run_dir / "level_3" / store.CHECKPOINT)
    (root / "dense_elsewhere").mkdir()
    shutil.move(os.path.realpath(run_dir / "level_0"), root / "dense_elsewhere")  # level_0's link dangles
    before = snapshot(root)
    problems = store.verify(run_dir.parent)
    expected = [f"{run_dir / 'level_1'}: final.safetensors is damaged (hash mismatch)",
                f"{run_dir / 'level_1'}: checkpoint.pt is left over from the finished job",
                f"{run_dir / 'level_2'}: summary.json is unreadable",
                f"{run_dir / 'level_2' / '.final.safetensors.x.tmp'}: a temporary file left by a killed writer",
                f"{run_dir.parent / 'config.json'} is unreadable",
                f"{run_dir / 'level_3' / 'checkpoint.pt'} is damaged",
                f"{run_dir / 'level_0'} links to ../../train_"]
    assert len(problems) == len(expected)
    for e in expected:
        assert sum(p.startswith(e) for p in problems) == 1, (e, problems)
    assert sorted(store.verify(root)) == sorted(problems)  # the dense run moved away is healthy
    assert snapshot(root) == before and (run_dir / "level_2" / store.SUMMARY).is_file()


# ---- Workers -------------------------------------------------------------------------------------------------

STUDY = """
import sys
sys.path.insert(0, {tests!r})
from conftest import small_config
from ticketlab.experiments.study import StudyPlan, run_study
run_study(StudyPlan(small_config(training={{"train_steps": 100000}}), replicates=2), root={root!r}, workers=2)
"""


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through /proc")
def test_workers_die_with_their_parent(tmp_path):
    script = STUDY.format(tests=str(Path(__file__).parent), root=str(tmp_path))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        while len(list(tmp_path.glob("train_*/seed_*/level_0/init.safetensors"))) < 2:  # both workers train
            assert parent.poll() is None, parent.stderr.read().decode()
            assert time.time() < deadline, "the workers did not start"
            time.sleep(0.2)
        workers = _children(parent.pid)
        assert len(workers) == 2
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 10
        while any(map(_alive, workers)) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, workers))
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.stderr.close()
