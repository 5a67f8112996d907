"""The one-command reproduction, shortened further for a test: the report says what was run."""

import json

import pytest

from ticketlab.experiments.reproduce import reproduce


def test_quick_lth_lenet_reports_tickets_and_controls_with_replicate_spreads(tmp_path, synthetic):
    overrides = {"training": {"train_steps": 60, "eval_every": 20}, "lottery": {"levels": 2}}
    study, files = reproduce("lth-lenet", dataset="synthetic", budget="quick", overrides=overrides,
                             data=synthetic, root=tmp_path / "runs", report_dir=tmp_path / "report")
    assert sorted(study.replicates) == [0, 1, 2]
    table = json.loads(files["json"].read_text())
    cells = {(r["variant"], r["level"]): r for r in table}
    # random pruning of the dense level would be the ticket itself: it starts at level 1
    assert set(cells) == {(v, lvl) for v in ("ticket", "reinit", "random_prune") for lvl in range(3)} - {
        ("random_prune", 0)}
    assert all(r["n"] == 3 for r in table)
    # quick budget: two paper levels (20%, output 10%) per level; LeNet on 16x16 inputs has 106,800 hidden
    # and 1,000 output weights
    expected = [100 * (106_800 * 0.64 ** lvl + 1_000 * 0.81 ** lvl) / 107_800 for lvl in range(3)]
    assert [cells["ticket", lvl]["weights_remaining_pct"] for lvl in range(3)] == pytest.approx(expected, abs=0.01)
    page = files["html"].read_text()
    assert "QUICK BUDGET" in page and "Settings changed from the recipe" in page
    config = json.loads((study.experiment_dir / "config.json").read_text())
    assert config["recipe"] == "lth-lenet (quick)"
