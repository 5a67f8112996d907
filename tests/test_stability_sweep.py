"""Sparse stability as published (Frankle et al. 2020, section 5): at each rewind step k and level L > 0 the
copies start from theta_k masked by level L of IMP *with rewinding to k*; one call sweeps k and levels,
judges instability and matching, and draws the figure."""

import json

import torch

from ticketlab import Mask, run_lottery
from ticketlab.experiments.stability_sweep import stability_sweep
from ticketlab.store import load_weights
from conftest import run_cli, small_config


def test_the_mask_at_each_k_is_imp_rewound_to_k(tmp_path, synthetic):
    config = small_config(lottery={"levels": 0})
    sweep = stability_sweep(config, [0, 50], [0, 1, 2], points=3, train_eval_size=200, data=synthetic,
                            root=tmp_path / "runs", out=tmp_path / "fig")
    results = {(r["level"], r["step"]): r for r in sweep["results"]}
    assert set(results) == {(lvl, k) for lvl in (0, 1, 2) for k in (0, 50)}
    masks = {}
    for k in (0, 50):
        # the same lottery experiment computed afresh in another store: its level-L masks must be the ones used
        ref = run_lottery(small_config(lottery={"levels": 2, "rewind_step": k}), data=synthetic,
                          root=tmp_path / f"ref{k}")
        theta_k = load_weights(tmp_path / "runs" / results[(0, k)]["mask_level"] / ".." /
                               (f"prefix_k{k}/final.safetensors" if k else "level_0/init.safetensors"))
        for level in (1, 2):
            used = tmp_path / "runs" / results[(level, k)]["mask_level"]
            expected = ref.run_dir / f"level_{level}" / "mask.safetensors"
            copy = used / f"stability_k{k}" / "copy_0"
            assert (copy / "mask.safetensors").read_bytes() == expected.read_bytes()
            mask = Mask.load(copy / "mask.safetensors")
            start = load_weights(copy / "init.safetensors")
            assert all(torch.equal(start[w], theta_k[w] * mask[w]) for w in mask.keys())  # theta_k masked
            masks[(level, k)] = mask
    # level 1 prunes the dense run whatever k; level 2 prunes level 1 trained from theta_k: k matters
    assert all(torch.equal(masks[(1, 0)][w], masks[(1, 50)][w]) for w in masks[(1, 0)].keys())
    assert any(not torch.equal(masks[(2, 0)][w], masks[(2, 50)][w]) for w in masks[(2, 0)].keys())
    # level 0: the dense network from theta_k, as before
    assert results[(0, 50)]["density"] == 1.0 and results[(2, 0)]["density"] < results[(1, 0)]["density"] < 1
    # rows: one per (level, k), with the subnetwork's accuracy and matching against the dense run
    rows = {(r["level"], r["step"]): r for r in sweep["rows"]}
    dense = sweep["dense_accuracy"]
    assert dense is not None and dense["matching_below"] == dense["mean"] - 0.002
    level_1_k50 = json.loads((tmp_path / "runs" / results[(1, 50)]["mask_level"] / "summary.json").read_text())
    assert rows[(1, 50)]["test_accuracy"] == level_1_k50["final_test_accuracy"]
    assert rows[(1, 50)]["matching"] == (level_1_k50["final_test_accuracy"] >= dense["matching_below"])
    assert rows[(2, 0)]["stable"] == (results[(2, 0)]["test_barrier"] < 0.02)
    files = sweep["files"]
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "| 2 |" in files["md"].read_text()
    # run again: everything is read back, nothing trained
    calls = []
    again = stability_sweep(config, [0, 50], [0, 1, 2], points=3, train_eval_size=200, data=synthetic,
                            root=tmp_path / "runs", out=tmp_path / "fig", progress=lambda *a: calls.append(a))
    assert calls == [] and again["rows"] == sweep["rows"]


def test_the_command_sweeps_and_draws(tmp_path):
    out = run_cli("stability", "--dataset", "synthetic", "--val-size", "500", "--model", "mlp_16",
                  "--train-steps", "40", "--eval-every", "20", "--batch-size", "32", "--lr", "3e-3",
                  "--steps", "0,10", "--levels", "1", "--points", "3", "--train-eval-size", "100",
                  "--out", str(tmp_path / "runs"), "--figure-dir", str(tmp_path / "fig"), "--quiet")
    assert out.returncode == 0, out.stderr
    assert "| 1 |" in out.stdout and (tmp_path / "fig" / "sweep.json").is_file()
    rows = json.loads((tmp_path / "fig" / "sweep.json").read_text())["rows"]
    assert {(r["level"], r["step"]) for r in rows} == {(0, 0), (0, 10), (1, 0), (1, 10)}  # default: 0..--levels


def test_a_sweep_figure_without_accuracies_draws_no_empty_legend(tmp_path):
    """Dense analyses alone (no level trained to the end, no dense accuracy): no matplotlib warning."""
    import warnings

    from ticketlab.report.stability import sweep_figure

    rows = [{"level": 0, "step": k, "density": 1.0, "seeds": 1, "test_barrier": 0.01, "test_barrier_min": 0.01,
             "test_barrier_max": 0.01, "stable": True, "test_accuracy": None, "matching": None} for k in (0, 10)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        drawn = sweep_figure(rows, None, 0.02, tmp_path, "analyses_only")
    assert drawn.png.stat().st_size > 0
