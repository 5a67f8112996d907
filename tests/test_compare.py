"""`compare`: IMP, pruning at initialisation and random masks on equal terms, with sanity checks and a report."""

import json

import pytest

from ticketlab.experiments.compare import run_compare
from ticketlab.experiments.pai import checks_for
from ticketlab.report.methods import write_report
from conftest import small_config

METHODS = ["imp", "snip", "grasp", "synflow", "magnitude", "random", "random-erk"]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, synthetic):
    root = tmp_path_factory.mktemp("runs")
    config = small_config(training={"train_steps": 60, "eval_every": 30}, pruning={"rate": 0.5})
    return run_compare(config, METHODS, [0.2, 0.05], data=synthetic, root=root), root, config


def test_every_method_density_and_check_is_trained_once(comparison):
    result, _, _ = comparison
    got = {(r["method"], r["variant"], r["requested_density"]) for r in result.rows}
    want = {(m, "ticket", d) for m in METHODS for d in (0.2, 0.05)}
    want |= {(m, f"check_{c}", d) for m in METHODS if m != "imp" for c in checks_for(m, ("shuffle", "reinit", "invert"))
             for d in (0.2, 0.05)}
    want |= {("imp", f"check_{c}", d) for c in ("shuffle", "reinit") for d in (0.2, 0.05)}
    assert got == want and len(result.rows) == len(want)
    for r in result.rows:
        if r["method"] != "imp":  # PaI masks are cut to the requested density exactly
            assert r["density"] == pytest.approx(r["requested_density"], abs=2e-3)
        if (r["method"], r["variant"]) == ("synflow", "check_invert"):
            # inverted SynFlow keeps the weights with the least flow first: none of them on a path. The doctor
            # says so, and the mask is not trained at chance.
            assert r["collapsed"] and r["status"] == "collapsed" and r["early_stop_test_accuracy"] is None
        else:
            assert r["status"] == "ok" and not r["collapsed"] and 0.0 < r["early_stop_test_accuracy"] <= 1.0


def test_imp_is_read_at_the_nearest_ladder_level(comparison):
    result, _, _ = comparison
    imp = {r["requested_density"]: r["density"] for r in result.rows if r["method"] == "imp" and r["variant"] == "ticket"}
    # 50% per level, the output layer at 10%: levels 2 (26.0%) and 5 (4.13%) are the nearest on a log scale
    assert imp[0.2] == pytest.approx(0.26, abs=0.01) and imp[0.05] == pytest.approx(0.0413, abs=0.001)


def test_a_rerun_reuses_everything(comparison, synthetic):
    result, root, config = comparison
    calls = []
    again = run_compare(config, METHODS, [0.2, 0.05], data=synthetic, root=root, progress=lambda *a: calls.append(a))
    assert calls == [] and len(again.rows) == len(result.rows)


def test_the_report_has_every_method_checks_and_a_figure(comparison, tmp_path):
    result, _, _ = comparison
    files = write_report(result, tmp_path / "report", "compare test")
    page = files["md"].read_text()
    for m in METHODS:
        assert f"| {m} |" in page
    assert "shuffled within layers" in page and files["png"].read_bytes()[:4] == b"\x89PNG"
    assert json.loads(files["json"].read_text())["verdicts"]


def test_a_collapsed_mask_is_flagged_and_not_trained(tmp_path, synthetic):
    # magnitude at init, global, at 0.05% of an MLP: the small output layer is pruned away first
    config = small_config(training={"train_steps": 40, "eval_every": 20})
    result = run_compare(config, ["random"], [0.0005], checks=(), data=synthetic, root=tmp_path)
    (row,) = result.rows
    assert row["collapsed"] and row["status"] == "collapsed" and row["early_stop_test_accuracy"] is None
    files = write_report(result, tmp_path / "report", "collapse")
    assert "collapsed" in files["md"].read_text()


def test_a_methods_folder_depends_on_the_rates_only_when_its_allocation_reads_them(tmp_path, synthetic):
    from ticketlab.experiments.pai import METHODS, Method, pai_jobs
    from ticketlab.experiments.plan import resolve
    from ticketlab.experiments.study import options
    from ticketlab.jobs import Runtime

    METHODS["random-layerwise"] = Method("random", "layerwise")
    try:
        folders = {}
        for rate in (0.2, 0.5):
            config = small_config(pruning={"rate": rate})
            runtime = Runtime(options(root=tmp_path))
            runtime.add_data(config.dataset, synthetic)
            reps = resolve(config, [0], runtime)
            folders[rate], _ = pai_jobs(config, ["random", "random-layerwise"], [0.1], reps, runtime, ())
        assert folders[0.2]["random"] == folders[0.5]["random"]  # uniform: the rates change nothing
        assert folders[0.2]["random-layerwise"] != folders[0.5]["random-layerwise"]
    finally:
        METHODS.pop("random-layerwise")


def test_sparse_from_the_start_methods_train_beside_imp_with_their_training_cost(tmp_path, synthetic):
    """rigl, set and gmp end at the requested density with a mask that moved; every row says what it cost to
    train: a fixed mask 3 f(mask) per example per step, IMP every level it took, the dense run included."""
    config = small_config(training={"train_steps": 60, "eval_every": 30}, pruning={"rate": 0.5})
    result = run_compare(config, ["imp", "rigl", "set", "gmp", "random-erk"], [0.2], checks=(), data=synthetic,
                         root=tmp_path)
    rows = {r["method"]: r for r in result.rows}
    for name in ("rigl", "set", "gmp"):
        assert rows[name]["density"] == pytest.approx(0.2, abs=2e-3) and rows[name]["status"] == "ok"
        summary = json.loads((result.experiments[name] / "seed_0" / "density_0.2" / "summary.json").read_text())
        assert summary["mask_updates"] >= 1 and summary["checks"]["pruned_max_abs"] == {
            "weight": 0.0, "grad": 0.0, "optimizer_state": 0.0}
    assert rows["set"]["train_cost"] == pytest.approx(rows["random-erk"]["train_cost"])  # same counts each step
    assert rows["rigl"]["train_cost"] > rows["set"]["train_cost"]  # + its dense gradients at update steps
    assert 0.2 < rows["gmp"]["train_cost"] < 1  # dense at first, then pruned on the cubic schedule
    imp = rows["imp"]  # level L of IMP at rate 0.5: the dense run and every level, each a whole training
    densities = [0.5 ** level for level in range(3)]
    assert imp["train_cost"] == pytest.approx(sum(densities), rel=0.05)
    again = run_compare(config, ["imp", "rigl", "set", "gmp", "random-erk"], [0.2], checks=(), data=synthetic,
                        root=tmp_path)
    assert [r["train_cost"] for r in again.rows] == [r["train_cost"] for r in result.rows]  # read back
    files = write_report(result, tmp_path / "report", "sparse from the start")
    assert files["cost_png"].stat().st_size > 0 and "train FLOPs (x dense)" in files["md"].read_text()


def test_pruning_at_init_scores_in_eval_mode_by_default_and_the_mode_is_recorded(tmp_path, synthetic):
    """Synaptic-Flow scores SNIP with the model in eval mode. On a batch-norm network the two modes give other
    masks, so the mode is in the folder's identity (eval) and each summary; without batch norm it changes
    nothing, and no folder moves."""
    import torch

    from ticketlab.experiments.pai import METHODS, scoring_batch
    from ticketlab.masks import Mask
    from ticketlab.models import build_model
    from ticketlab.pruning import prune
    from ticketlab.seeds import derive_seed, streams

    config = small_config(model={"name": "cifar_resnet_8_2"}, training={"train_steps": 20, "eval_every": 10})
    runs = {mode: run_compare(config, ["snip"], [0.1], checks=(), score_mode=mode, data=synthetic, root=tmp_path)
            for mode in ("eval", "train")}
    folders = {mode: r.experiments["snip"] for mode, r in runs.items()}
    assert folders["eval"] != folders["train"]
    masks = {mode: Mask.load(f / "seed_0" / "density_0.1" / "mask.safetensors") for mode, f in folders.items()}
    assert any(not torch.equal(masks["eval"][k], masks["train"][k]) for k in masks["eval"].keys())
    summary = json.loads((folders["eval"] / "seed_0" / "density_0.1" / "summary.json").read_text())
    assert summary["score_mode"] == "eval"
    # the eval-mode mask is SNIP's scores of the model in eval mode, on the job's own seeded batch
    model = build_model(config.model, synthetic.input_shape, 10, streams(0)["init"]).eval()
    draw = derive_seed(0, "pai", "snip", 0.1)
    batch = scoring_batch(METHODS["snip"], synthetic, config.training.batch_size, derive_seed(draw, "batch"))
    by_hand = prune(model, density=0.1, scorer="snip", batch=batch)
    assert all(torch.equal(by_hand[k], masks["eval"][k]) for k in by_hand.keys())
    # a network without batch norm or dropout: one folder whatever the mode
    plain = small_config(training={"train_steps": 20, "eval_every": 10})
    same = {run_compare(plain, ["snip"], [0.1], checks=(), score_mode=mode, data=synthetic,
                        root=tmp_path).experiments["snip"] for mode in ("eval", "train")}
    assert len(same) == 1
