"""The store package: one module per job, every name the single-module store had still importable from
`ticketlab.store`, and every folder name exactly as stored runs have it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketlab import store

# Every public name of store.py before it became a package: importers use them as `store.X`.
NAMES = """DEFAULT_ROOT CONFIG MASK INIT FINAL METRICS SUMMARY CHECKPOINT STABILITY DAMAGED experiment_dir seed_dir
level_dir control_dir prefix_dir stability_dir copy_dir analysis_dir density_dir check_dir seed_of seed_dirs
finished_levels job_summaries stability_files is_experiment store_part link write_json read_json save_weights
load_weights save_checkpoint load_checkpoint job_files recording_inputs finish_job is_done read_summary
record_experiment verify atomic_write file_digest fsync_dir is_tmp remove_stale_tmp write_safetensors""".split()


@pytest.mark.parametrize("name", NAMES)
def test_every_name_of_the_single_module_store_is_still_there(name):
    assert getattr(store, name) is not None and name in vars(store)


def test_verify_is_the_function_not_its_module():
    assert callable(store.verify) and store.verify.__module__ == "ticketlab.store.verification"


def test_file_names_and_folder_names_are_those_of_stored_runs():
    root = Path("runs")
    assert (store.CONFIG, store.MASK, store.INIT, store.FINAL, store.METRICS, store.SUMMARY, store.CHECKPOINT,
            store.STABILITY) == ("config.json", "mask.safetensors", "init.safetensors", "final.safetensors",
                                 "metrics.json", "summary.json", "checkpoint.pt", "stability.json")
    experiment = store.experiment_dir(root, "lottery", "9da1ad6e76664ec0")
    level = store.level_dir(store.seed_dir(experiment, 3), 2)
    stability = store.stability_dir(level, 50)
    assert [p.as_posix() for p in (
        experiment, level, store.control_dir(level, "reinit", 1), store.prefix_dir(store.seed_dir(experiment, 0), 7),
        store.copy_dir(stability, 0), store.analysis_dir(stability, "ab12"),
        store.density_dir(store.seed_dir(experiment, 0), 0.05), store.check_dir(level, "shuffle"))] == [
        "runs/lottery_9da1ad6e76664ec0", "runs/lottery_9da1ad6e76664ec0/seed_3/level_2",
        "runs/lottery_9da1ad6e76664ec0/seed_3/level_2/control_reinit_1", "runs/lottery_9da1ad6e76664ec0/seed_0/prefix_k7",
        "runs/lottery_9da1ad6e76664ec0/seed_3/level_2/stability_k50/copy_0",
        "runs/lottery_9da1ad6e76664ec0/seed_3/level_2/stability_k50/analysis_ab12",
        "runs/lottery_9da1ad6e76664ec0/seed_0/density_0.05", "runs/lottery_9da1ad6e76664ec0/seed_3/level_2/check_shuffle"]


def test_seed_folders_are_found_in_seed_order(tmp_path):
    for s in (10, 2, 0):
        store.seed_dir(tmp_path, s).mkdir()
    (tmp_path / "seed_x").mkdir()
    assert [store.seed_of(d) for d in store.seed_dirs(tmp_path)] == [0, 2, 10]
    assert store.seed_of(tmp_path / "seed_x") is None


def test_each_module_of_the_store_is_small():
    folder = Path(store.__file__).parent
    sizes = {p.name: len(p.read_text().splitlines()) for p in folder.glob("*.py")}
    assert sorted(sizes) == ["__init__.py", "done.py", "formats.py", "layout.py", "records.py", "verification.py"]
    assert {name: n for name, n in sizes.items() if n > 250} == {}
