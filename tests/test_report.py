"""The report, on a real small stored study: files, numbers (recomputed from summary.json), HTML, figures."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import xml.etree.ElementTree as ET

import pytest
from conftest import small_config

from ticketlab.errors import TicketlabError
from ticketlab.matching import matches
from ticketlab.experiments.study import StudyPlan, parse_controls, run_study
from ticketlab.report.html import write_report
from ticketlab.store import read_json, write_json

NOTE = "QUICK BUDGET <test>: not the paper's protocol"
FIGURES = ("accuracy_vs_density", "early_stop_vs_density", "training_curves", "layer_density", "mask_overlap")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    plan = StudyPlan(small_config(), replicates=2, controls=parse_controls("reinit,random_prune", reps=1))
    exp = run_study(plan, root=root).experiment_dir
    write_json(exp / "config.json", {**read_json(exp / "config.json"), "notes": [NOTE]})  # as reproduce does
    files = write_report([exp], tmp_path_factory.mktemp("report"))
    return exp, files


def _summaries(exp, pattern):
    return [read_json(p) for p in sorted(exp.glob(pattern))]


def test_every_file_is_written(study):
    _, files = study
    for kind in ("html", "md", "csv", "json"):
        assert files[kind].is_file() and files[kind].stat().st_size > 0
    names = {p.name for p in files["html"].parent.iterdir()}
    for fig in FIGURES:
        assert any(n.startswith(fig) and n.endswith(".png") for n in names), fig
        assert any(n.startswith(fig) and n.endswith(".svg") for n in names), fig


@pytest.mark.parametrize("variant, level, pattern", [
    ("ticket", 1, "seed_*/level_1/summary.json"),
    ("random_prune", 2, "seed_*/level_2/control_random_prune_*/summary.json"),
    ("reinit", 0, "seed_*/level_0/control_reinit_*/summary.json")])
def test_tables_hold_the_stored_numbers(study, variant, level, pattern):
    exp, files = study
    stored = _summaries(exp, pattern)
    acc = [s["early_stop_test_accuracy"] * 100 for s in stored]
    with open(files["csv"]) as f:
        [row] = [r for r in csv.DictReader(f) if r["variant"] == variant and r["level"] == str(level)]
    [rec] = [r for r in json.loads(files["json"].read_text()) if r["variant"] == variant and r["level"] == level]
    assert int(row["n"]) == rec["n"] == len(stored) == 2
    for got in (float(row["early_stop_test_accuracy_pct_mean"]), rec["early_stop_test_accuracy_pct_mean"]):
        assert got == pytest.approx(statistics.fmean(acc))
    assert rec["early_stop_test_accuracy_pct_min"] == pytest.approx(min(acc))
    assert rec["early_stop_test_accuracy_pct_max"] == pytest.approx(max(acc))
    assert rec["early_stop_step_mean"] == pytest.approx(statistics.fmean(s["early_stop_step"] for s in stored))
    assert rec["weights_remaining_pct"] == pytest.approx(stored[0]["density"] * 100)
    dense = [s["early_stop_test_accuracy"] for s in _summaries(exp, "seed_*/level_0/summary.json")]
    want = matches(statistics.fmean(s["early_stop_test_accuracy"] for s in stored), statistics.fmean(dense),
                   statistics.stdev(dense))
    assert rec["matching"] is want and row["matching"] == str(want).lower()


def test_html_shows_every_variant_and_level_self_contained(study):
    exp, files = study
    page = files["html"].read_text()
    for rec in json.loads(files["json"].read_text()):
        assert f"<tr><td>{rec['level']}</td><td>{rec['variant']}</td>" in page  # its row in the full table
        assert f"{rec['weights_remaining_pct']:.2f}" in page  # percentages with 2 decimals
    assert "<em>matching</em>" in page and "Self-checks" in page and "Mask overlap" in page
    assert exp.name in page and read_json(exp / "config.json")["hash"] in page
    assert page.count("src='data:image/png;base64,") == len(FIGURES)
    assert "http://" not in page and "https://" not in page and "<link" not in page  # nothing external


def test_note_is_visible_and_escaped(study):
    _, files = study
    page = files["html"].read_text()
    assert "QUICK BUDGET &lt;test&gt;: not the paper&#x27;s protocol" in page
    assert "<test>" not in page
    assert page.index("class='note'") < page.index("<h2>")  # before any result
    assert "QUICK BUDGET" in files["md"].read_text()


def test_figures_are_valid_png_and_svg(study):
    _, files = study
    pngs = [p for k, p in files.items() if k.endswith(".png")]
    svgs = [p for k, p in files.items() if k.endswith(".svg")]
    assert len(pngs) == len(svgs) == len(FIGURES)
    for p in pngs:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, p
        assert f"]({p.name})" in files["md"].read_text()  # the Markdown links it
    for p in svgs:
        assert ET.parse(p).getroot().tag.endswith("svg"), p


def test_std_spread_and_seed_folders(study, tmp_path):
    exp, files = study
    std = write_report([exp / "seed_0"], tmp_path, spread="std", title="One seed")
    page = std["html"].read_text()
    assert "<h1>One seed</h1>" in page and " ± " in page
    assert {r["n"] for r in json.loads(std["json"].read_text())} == {1}  # only seed_0's jobs
    assert std["accuracy_vs_density-" + exp.name + ".png"].read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(TicketlabError, match="spread"):
        write_report([exp], tmp_path / "bad", spread="iqr")


def test_failed_self_check_is_flagged(study, tmp_path):
    exp, _ = study
    copy = shutil.copytree(exp, tmp_path / exp.name)
    summary_file = copy / "seed_1" / "level_2" / "summary.json"
    summary = read_json(summary_file)
    summary["checks"] = {**summary["checks"], "counts_as_requested": False, "collapsed_layers": ["out.weight"]}
    write_json(summary_file, {k: v for k, v in summary.items() if k != "summary_hash"})  # edited: no own hash
    page = write_report([copy], tmp_path / "out" / "report")["html"].read_text()  # tmp_path holds an experiment
    assert "1 job(s) FAILED a self-check" in page
    assert "counts differ from the request" in page and "layer out.weight has no weight left" in page


def test_not_a_run_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TicketlabError, match="not a ticketlab run folder"):
        write_report([tmp_path / "empty"], tmp_path / "out")
