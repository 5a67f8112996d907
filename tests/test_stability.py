"""Instability analysis: the barrier formula, identical ends, masks along the path, reuse."""

import json

import pytest
import torch

from ticketlab import Mask
from ticketlab.experiments.stability import StabilitySpec, barrier, interpolate, recompute_batchnorm
from ticketlab.experiments.study import StudyPlan, run_study
from ticketlab.models import build_model
from ticketlab.store import load_weights
from conftest import small_config


def analyse(root, data, *specs, config=None, **kw):
    """Run the analyses (and the levels they need); returns (the replicate's folder, its results)."""
    config = config or small_config(lottery={"levels": 0})
    rep = run_study(StudyPlan(config, stability=specs), data=data, root=root, **kw).replicates[config.seed]
    return rep["run_dir"], rep["stability"]


def test_barrier_formula_on_a_hand_made_path():
    assert barrier([0.10, 0.30, 0.50, 0.20, 0.12]) == pytest.approx(0.50 - 0.11)
    assert barrier([0.2, 0.1, 0.2]) == pytest.approx(0.0)  # a dip counts as no barrier
    assert barrier([0.1, 0.3]) == pytest.approx(0.1)


def test_identical_ends_have_zero_barrier(tmp_path, synthetic):
    model = build_model(small_config().model, synthetic.input_shape, 10, 0)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    path = interpolate(model, theta0, theta0, synthetic, StabilitySpec(step=0, points=7))
    assert len(path["alphas"]) == 7 and path["alphas"][0] == 0 and path["alphas"][-1] == 1
    assert path["test_barrier"] == 0 and path["train_barrier"] == 0
    assert len(set(path["test_error"])) == 1


def test_copies_split_at_step_k_and_the_path_respects_the_mask(tmp_path, synthetic):
    spec = StabilitySpec(step=50, level=1, points=5)
    run_dir, (result,) = analyse(tmp_path, synthetic, spec)
    level = tmp_path / result["mask_level"]  # level 1 of IMP with rewinding to k = 50 (Frankle et al. 2020, 5)
    assert json.loads((level.parent.parent / "config.json").read_text())["config"]["lottery"]["rewind_step"] == 50
    folder = level / "stability_k50"
    mask = Mask.load(level / "mask.safetensors")
    a, b = (load_weights(folder / f"copy_{c}" / "final.safetensors") for c in (0, 1))
    init = load_weights(folder / "copy_0" / "init.safetensors")
    dense_k = load_weights(run_dir / "level_0" / ".." / "prefix_k50" / "final.safetensors")
    w = "hidden.0.weight"
    assert torch.equal(init[w], dense_k[w] * mask[w])  # the dense state at k, masked by the ticket
    assert not torch.equal(a[w], b[w])  # different data orders
    for alpha in (0.25, 0.5, 0.75):
        assert torch.all(torch.lerp(a[w], b[w], alpha)[~mask[w]] == 0)
    assert len(result["test_error"]) == 5 and result["stable"] == (result["test_barrier"] < 0.02)
    assert result["test_error"][0] == pytest.approx(1 - result["copy_final_test_accuracy"][0], abs=1e-9)
    # reused, not retrained
    calls = []
    _, again = analyse(tmp_path, synthetic, spec, progress=lambda *a: calls.append(a))
    assert again == [result] and calls == []


def test_other_analysis_settings_give_a_new_result_beside_the_old_one(tmp_path, synthetic):
    first = StabilitySpec(step=0, points=5)
    run_dir, (old,) = analyse(tmp_path, synthetic, first)
    calls = []
    other = StabilitySpec(step=0, points=3, threshold=0.5, train_eval_size=100)
    _, (new,) = analyse(tmp_path, synthetic, other, progress=lambda *a: calls.append(a))
    assert calls == []  # the copies are reused: only the analysis is new
    assert len(new["alphas"]) == 3 and new["threshold"] == 0.5 and new["train_eval_size"] == 100
    analyses = sorted((run_dir / "level_0" / "stability_k0").glob("analysis_*/stability.json"))
    assert len(analyses) == 2  # both kept
    _, (again,) = analyse(tmp_path, synthetic, first)
    assert again == old


def test_batchnorm_statistics_are_recomputed():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    x = torch.randn(1000, 3) * 5 + 2
    recompute_batchnorm(model, x)
    with torch.no_grad():
        h = model[0](x)
    assert torch.allclose(model[1].running_mean, h.mean(0), atol=1e-4)
    assert model[1].momentum == 0.1  # restored


def test_report_shows_stability_and_compares_retraining_modes(tmp_path, synthetic):
    import json

    from ticketlab import run_lottery
    from ticketlab.report.html import write_report

    runs = []
    for mode in ("rewind", "lr_rewind"):
        config = small_config(lottery={"levels": 1, "retrain": mode})
        runs.append(run_lottery(config, data=synthetic, root=tmp_path).run_dir.parent)
    _, (result,) = analyse(tmp_path, synthetic, StabilitySpec(step=0, level=1, points=4),
                           config=small_config(lottery={"levels": 1}))
    files = write_report(runs, tmp_path / "out" / "report")  # outside the store
    page = files["html"].read_text()
    assert "Instability analysis" in page and f"{100 * result['test_barrier']:.2f}" in page
    assert f"{runs[1].name}: retrain=lr_rewind" in page and f"{runs[0].name}: retrain=rewind" in page
    assert files["accuracy_by_experiment-all.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(files["json"].read_text())


def test_report_of_an_experiment_holding_only_a_stability_analysis(tmp_path, synthetic):
    from ticketlab.report.html import write_report

    run_dir, (result,) = analyse(tmp_path, synthetic, StabilitySpec(step=0, points=3))
    assert not (run_dir / "level_0" / "summary.json").exists()  # the dense analysis trains no level
    files = write_report([run_dir.parent], tmp_path / "out" / "report")
    page = files["html"].read_text()
    assert "Instability analysis" in page and f"{100 * result['test_barrier']:.2f}" in page
