"""Sweeps: points as ordinary jobs, reuse of what is stored, train error in summaries, the report's detections
(interpolation threshold, dip and peak, smallest matching ticket), and the CLI end to end."""

from __future__ import annotations

import json

import pytest

from ticketlab import jobs
from ticketlab.errors import TicketlabError
from ticketlab.experiments.sweep import parse_over, plan_sweep, run_sweep
from ticketlab.report.sweep import dip_and_peak, interpolation_threshold, smallest_tickets, summarize, write_report

from conftest import run_cli, small_config

TINY = {"training": {"train_steps": 40, "eval_every": 20, "batch_size": 50}, "dataset": {"subsample": 600}}


def tiny(**sections):
    merged = {k: {**TINY.get(k, {}), **v} if isinstance(v, dict) else v for k, v in sections.items()}
    return small_config(**{**TINY, **merged})


def test_plan_sweep_coerces_values_and_refuses_unknown_settings():
    sweep = plan_sweep(tiny(), {"model.width": ["0.5", "1", "1.0"], "dataset.label_noise": ["0", "0.2"]})
    assert sweep.axes == {"model.width": [0.5, 1.0], "dataset.label_noise": [0.0, 0.2]}
    assert len(sweep.points) == 4 and sweep.base.kind == "train"
    with pytest.raises(TicketlabError, match="unknown setting 'nonsense'"):
        plan_sweep(tiny(), {"nonsense": ["1"]})
    with pytest.raises(TicketlabError, match=r"\[model\] has"):
        plan_sweep(tiny(), {"model.depth": ["1"]})
    with pytest.raises(TicketlabError, match="label_noise"):
        plan_sweep(tiny(), {"dataset.label_noise": ["1.5"]})
    with pytest.raises(TicketlabError, match="cannot read"):
        parse_over(["model.width"])


def test_sweep_rows_hold_train_error_and_parameter_counts_and_a_rerun_trains_nothing(tmp_path, monkeypatch):
    calls = []
    dense = jobs.KINDS["dense"]
    monkeypatch.setitem(jobs.KINDS, "dense", lambda job, rt: (calls.append(job.folder), dense(job, rt)))
    over = {"model.width": [0.25, 1], "dataset.label_noise": [0, 0.2]}
    first = run_sweep(tiny(), over, replicates=2, root=tmp_path)
    assert len(first.rows) == 8 and len(calls) == 8
    for r in first.rows:
        h, g = {0.25: (8, 4), 1: (32, 16)}[r["model.width"]]
        assert r["weights"] == 256 * h + h * g + g * 10  # mlp_32_16 on 1x16x16 inputs, by hand
        assert r["params"] == r["weights"] + h + g + 10 and r["surviving"] == r["weights"]
        assert 0 <= r["final_train_accuracy"] <= 1 and r["final_train_loss"] > 0
        if r["dataset.label_noise"]:
            assert r["train_labels_changed"] == 120  # of 600: the two accuracies differ on those labels only
            assert abs(r["final_train_accuracy"] - r["final_train_accuracy_clean"]) <= 120 / 600
        else:
            assert r["final_train_accuracy_clean"] is None
    stamps = {r["job_dir"]: (tmp_path / r["job_dir"] / "summary.json").stat().st_mtime_ns for r in first.rows}
    again = run_sweep(tiny(), over, replicates=2, root=tmp_path)
    assert len(calls) == 8  # nothing trained the second time
    assert [r["final_test_accuracy"] for r in again.rows] == [r["final_test_accuracy"] for r in first.rows]
    assert {d: (tmp_path / d / "summary.json").stat().st_mtime_ns for d in stamps} == stamps
    more = run_sweep(tiny(), {"model.width": [0.25, 1, 2], "dataset.label_noise": [0, 0.2]}, replicates=2,
                     root=tmp_path)
    assert len(calls) == 12 and len(more.rows) == 12  # only width 2's four runs are new


def test_lottery_sweep_reports_density_levels_and_smallest_tickets(tmp_path):
    sweep = run_sweep(tiny(pruning={"strategy": "global", "rate": 0.5}), {"model.width": [0.5, 1]}, levels=2,
                      root=tmp_path)
    assert sorted((r["model.width"], r["level"]) for r in sweep.rows) == [(0.5, 0), (0.5, 1), (0.5, 2), (1.0, 0),
                                                                          (1.0, 1), (1.0, 2)]
    level2 = [r for r in sweep.rows if r["level"] == 2]
    assert all(abs(r["surviving"] - r["weights"] / 4) <= 1 for r in level2)
    files = write_report(sweep, tmp_path / "report")
    body = json.loads(files["json"].read_text())
    assert len(body["smallest_tickets"]) == 2 and len(body["double_descent"]) == 2  # one per width
    assert files["sdd_png"].stat().st_size > 0 and files["tickets_png"].stat().st_size > 0


def test_dip_and_peak_on_a_hand_made_curve():
    # He et al.'s shape: a small rise, a dip at 90% sparsity, a peak at 98%, a collapse
    sparsity = [0.0, 0.2, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995]
    accuracy = [0.83, 0.84, 0.80, 0.77, 0.765, 0.85, 0.95, 0.90, 0.86]
    assert dip_and_peak(sparsity, accuracy) == (4, 6)
    assert dip_and_peak(list(reversed(sparsity)), list(reversed(accuracy))) == (4, 2)  # indices of the given order
    assert dip_and_peak([0, 0.5, 0.8], [0.9, 0.8, 0.7]) == (None, None)  # only falls
    assert dip_and_peak([0, 0.5, 0.8], [0.5, 0.6, 0.7]) == (None, None)  # only rises: no dip
    assert dip_and_peak([0, 0.5, 0.8, 0.9], [0.8, 0.7, 0.705, 0.6]) == (None, None)  # a 0.5 pp wiggle is no peak
    assert dip_and_peak([0, 0.5, 0.8, 0.9], [0.8, 0.7, 0.705, 0.6], min_rise=0.001) == (1, 2)


def test_interpolation_threshold_and_matching_ticket_on_hand_made_rows():
    def rows(width, train_acc, test_acc, seed, level=0, density=1.0, es=None):
        return {"model.width": width, "seed": seed, "level": level, "density": density, "status": "ok",
                "params": 100, "weights": int(1000 * width), "surviving": int(1000 * width * density),
                "final_test_accuracy": test_acc, "final_train_accuracy": train_acc,
                "early_stop_test_accuracy": es if es is not None else test_acc}
    data = [rows(w, tr - d * (w < 2), te, s) for w, tr, te in ((0.5, 0.8, 0.7), (1, 0.997, 0.6), (2, 1.0, 0.75))
            for s, d in ((0, 0.001), (1, -0.001))]  # width 1: train error 0.3% on average, width 2: exactly 0
    table = summarize(data, "model.width", [])
    assert interpolation_threshold(table, "model.width", 0.005) == 1
    assert interpolation_threshold(table, "model.width", 0.0) == 2
    lottery = [rows(1, 1, 0.9, s, lvl, 0.5 ** lvl, es) for s in (0, 1)
               for lvl, es in ((0, 0.90 + 0.002 * s), (1, 0.905), (2, 0.899), (3, 0.85))]
    table = summarize(lottery, "density", ["model.width"])
    found = smallest_tickets(table, ["model.width"])
    assert len(found) == 1 and found[0]["density"] == 0.25 and found[0]["surviving"] == 250  # 0.899 >= 0.901 - 0.002


def test_summaries_record_train_error_on_noisy_and_clean_labels(tmp_path):
    from ticketlab.experiments.study import StudyPlan, run_study

    result = run_study(StudyPlan(tiny(kind="train", dataset={"label_noise": 0.2})), root=tmp_path)
    s = result.replicates[0]["levels"][0]
    assert {"final_train_loss", "final_train_accuracy", "final_train_accuracy_clean"} <= set(s)
    assert s["train_labels_changed"] == 120


def test_cli_sweep_end_to_end_and_bad_input(tmp_path):
    common = ["--dataset", "synthetic", "--val-size", "500", "--model", "mlp_16", "--train-steps", "30",
              "--eval-every", "15", "--batch-size", "50", "--subsample", "500", "--workers", "1", "--quiet",
              "--out", str(tmp_path / "runs")]
    done = run_cli("sweep", *common, "--over", "model.width=0.5,1", "--label-noise", "0.2",
                   "--report-dir", str(tmp_path / "rep"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "interpolation threshold" in done.stdout.lower() and (tmp_path / "rep" / "sweep-sweep.png").is_file()
    table = (tmp_path / "rep" / "sweep.csv").read_text().splitlines()
    assert len(table) == 3 and table[0].startswith("model.width,params,weights,surviving")
    for bad, said in ((["--over", "nonsense=1"], "unknown setting"), (["--over", "model.width=1", "--label-noise",
                      "1.5"], "label_noise"), (["--over", "dataset.label_noise=0,1.5"], "label_noise"), ([], "--over")):
        out = run_cli("sweep", *common, *bad, "--report-dir", str(tmp_path / "bad"), timeout=60)
        assert out.returncode == 2, out.stderr
        assert said in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_durations_in_epochs_are_resolved_for_each_point(tmp_path):
    layers = {"dataset": {"name": "synthetic", "val_size": 500}, "model": {"name": "mlp_16"},
              "training": {"train_steps": "2ep", "eval_every": "1ep", "batch_size": 50}}
    swept = {**layers, "training": {k: v for k, v in layers["training"].items() if k != "batch_size"}}
    sweep = plan_sweep(swept, {"dataset.subsample": ["100", "1000"], "training.batch_size": ["50", "100"]})
    got = {(p["dataset.subsample"], p["training.batch_size"]): (sweep.config(p).training.train_steps,
                                                                 sweep.config(p).training.eval_every)
           for p in sweep.points}
    assert got == {(100, 50): (4, 2), (100, 100): (2, 1), (1000, 50): (40, 20), (1000, 100): (20, 10)}
    # a RunConfig holds step counts (2 epochs of 2500 examples / 50 = 100 steps): they stay so at every point
    built = plan_sweep(small_config(**layers), {"dataset.subsample": ["100", "1000"]})
    assert [built.config(p).training.train_steps for p in built.points] == [100, 100]
    # and the jobs train it: 2 epochs of 100 and of 200 examples in batches of 50
    ran = run_sweep({**layers, "training": {**layers["training"], "train_steps": "2ep", "eval_every": "2ep"}},
                    {"dataset.subsample": [100, 200]}, root=tmp_path)
    steps = {r["dataset.subsample"]: json.loads((tmp_path / r["job_dir"] / "summary.json").read_text())["final_step"]
             for r in ran.rows}
    assert steps == {100: 4, 200: 8}


def test_report_of_a_sweep_over_a_text_setting(tmp_path):
    sweep = run_sweep(tiny(), {"training.optimizer": ["adam", "sgd"]}, root=tmp_path)
    assert [r["training.optimizer"] for r in sweep.rows] == ["adam", "sgd"]
    files = write_report(sweep, tmp_path / "report")
    md = files["md"].read_text()
    assert "| adam |" in md and "| sgd |" in md and files["png"].stat().st_size > 0
    rows = [{"training.optimizer": name, "seed": 0, "level": 0, "density": 1.0, "status": "ok", "params": 1,
             "weights": 1, "surviving": 1, "final_test_accuracy": 0.5, "final_train_accuracy": acc}
            for name, acc in (("adam", 1.0), ("sgd", 0.5))]  # adam interpolates: its threshold is a name
    hand = write_report(type(sweep)({"training.optimizer": ["adam", "sgd"]}, [], rows), tmp_path / "hand")
    assert "- all: adam" in hand["md"].read_text()


def test_a_diverged_level_leaves_a_report_with_the_rest_and_not_run_rows(tmp_path):
    config = tiny(pruning={"strategy": "global", "rate": 0.5},
                  lottery={"retrain": "finetune", "finetune_lr": 1e6}, training={"optimizer": "sgd", "lr": 0.05})
    sweep = run_sweep(config, {"model.width": [0.5, 1]}, levels=2, root=tmp_path)
    status = {(r["model.width"], r["level"]): r["status"] for r in sweep.rows}
    assert {status[(w, 0)] for w in (0.5, 1.0)} == {"ok"}
    assert {status[(w, 1)] for w in (0.5, 1.0)} == {"diverged"}
    assert {status[(w, 2)] for w in (0.5, 1.0)} == {"not run"}
    assert sweep.notes and "not run" in sweep.notes[0]
    level2 = [r for r in sweep.rows if r["level"] == 2]
    assert all(abs(r["density"] - 0.25) < 0.01 and r["final_test_accuracy"] is None for r in level2)
    files = write_report(sweep, tmp_path / "report")
    md = files["md"].read_text()
    assert "## Not run" in md and "+1 not run" in md and "+1 not ok" in md
    body = json.loads(files["json"].read_text())
    assert sum(e["not_run"] for e in body["table"]) == 2 and sum(e["n"] for e in body["table"]) == 2


def test_cli_sweep_writes_its_report_then_fails_in_one_line_when_levels_were_not_run(tmp_path):
    out = run_cli("sweep", "--dataset", "synthetic", "--val-size", "500", "--model", "mlp_16", "--subsample", "200",
                  "--batch-size", "50", "--train-steps", "20", "--eval-every", "10", "--lr",
                  "0.05", "--retrain", "finetune", "--finetune-lr", "1e6", "--levels", "2", "--quiet",
                  "--over", "training.optimizer=sgd", "--out", str(tmp_path / "runs"),
                  "--report-dir", str(tmp_path / "rep"), timeout=120)
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ticketlab: error: 1 job(s) diverged and 1 not run") and "Traceback" not in out.stderr
    assert (tmp_path / "rep" / "sweep.md").is_file() and "not run" in (tmp_path / "rep" / "sweep.md").read_text()


def test_a_setting_that_applies_at_some_points_only_is_kept_there_and_refused_where_it_applies_nowhere():
    layers = {"dataset": {"name": "synthetic", "val_size": 500}, "model": {"name": "mlp_16"},
              "training": {"train_steps": 20, "momentum": 0.9}}
    sweep = plan_sweep(layers, {"training.optimizer": ["adam", "sgd"]})
    momentum = {p["training.optimizer"]: sweep.config(p).training.momentum for p in sweep.points}
    assert momentum == {"adam": 0.0, "sgd": 0.9}  # reset where it has no effect: adam's folder is adam's own
    with pytest.raises(TicketlabError, match="--momentum .* has no effect here: it applies only with --optimizer"):
        plan_sweep(layers, {"model.width": ["1", "2"]})  # no point uses sgd
    plain = {k: v for k, v in layers.items() if k != "training"}
    with pytest.raises(TicketlabError, match="--momentum"):
        plan_sweep(plain, {"training.momentum": ["0", "0.9"]})  # a swept value without effect: never dropped
