"""The study report: one self-contained HTML page, its Markdown twin, figures and the aggregated table.

Everything is read back from the run store (collect -> aggregate / overlap_table), never from memory, so a
report can be redrawn at any time from the folders alone. The page is a report.page.Page (the sections every
report kind has, in one order), rendered twice (HTML with embedded PNGs, Markdown linking the PNG files), so
the two always say the same.
"""

from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path
from typing import Any

from .. import matching
from ..errors import TicketlabError
from ..store import read_config, store_part
from . import across_experiments, figures, stability
from .page import Page, config_table, notes, write_page
from .page import md_text, render_html, render_md  # noqa: F401  (this module's API before report.page)
from .aggregate import METRICS, aggregate, collect, experiment_dirs, healthy
from .overlap import overlap_table

CAPTIONS = {
    "accuracy_vs_density": "Test accuracy at the early-stop iteration (minimum validation loss) against the share "
                           "of prunable weights remaining, for the ticket and every control. Points: mean over jobs "
                           "(replicates × control draws); error bars: {spread}. Dashed line and grey band: the dense "
                           "network (level 0). Points are nudged sideways so bars don't overlap; exact densities "
                           "are in the table.",
    "early_stop_vs_density": "Iteration of minimum validation loss (early stop) against weights remaining; "
                             "error bars: {spread}. Dashed line and band: the dense network.",
    "training_curves": "Test accuracy during training of the ticket at a few levels: mean over replicates, "
                       "band: {spread}.",
    "layer_density": "Share of each layer's weights the ticket keeps at every IMP level (log scale); dashed: "
                     "all prunable weights together.",
    "mask_overlap": "Intersection over union of masks: tickets of two replicates, a ticket and the next level's "
                    "ticket of the same replicate, a ticket and each control's mask. Dashed: the expected IoU of "
                    "two independent random masks of that density, pooled over layers (random masks with the "
                    "ticket's per-layer counts overlap more when layers are pruned at different rates). "
                    "Controls that keep the ticket's mask (reinit, sign_reinit, noise) have IoU 1 by "
                    "construction: left out of the figure, kept in the table below.",
}


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}"


def verdict(matched: bool | None) -> str:
    """The aggregate's verdict (ticketlab.matching) as the report writes it."""
    return "n/a" if matched is None else ("*matching*" if matched else "not matching")


def _spread_cell(stat: dict[str, float | None], spread: str) -> str:
    if stat["mean"] is None:
        return "n/a"
    if spread == "std":
        return f"{pct(stat['mean'])} ± {pct(stat['std'])}"
    return f"{pct(stat['mean'])} [{pct(stat['min'])}, {pct(stat['max'])}]"


def _ordered(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(table, key=lambda e: (e["experiment"], e["level"], figures.variant_key(e["variant"])))


def flat_table(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The aggregated table as flat records: fractions as percent (full precision), steps as they are."""
    out = []
    for e in _ordered(table):
        rec = {"experiment": e["experiment"], "variant": e["variant"], "level": e["level"], "n": e["n"],
               "diverged": e.get("diverged", 0), "seeds": e["seeds"], "weights_remaining_pct": e["density"] * 100}
        for metric in METRICS:
            factor, name = (1, metric) if metric == "early_stop_step" else (100, f"{metric}_pct")
            for stat, v in e[metric].items():
                rec[f"{name}_{stat}"] = None if v is None else v * factor
        out.append({**rec, "matching": e["matching"]})
    return out


def _write_tables(records: list[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    with open(out / "table.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(records[0]) if records else ["experiment", "variant", "level"])
        w.writeheader()
        for r in records:
            w.writerow({**r, "seeds": " ".join(map(str, r["seeds"])),
                        "matching": "" if r["matching"] is None else str(r["matching"]).lower()})
    (out / "table.json").write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    return out / "table.csv", out / "table.json"


def _config_blocks(exp_dir: Path) -> list[tuple]:
    return [("h3", f"Experiment {exp_dir.name}"), ("p", f"Folder: {exp_dir}"),
            ("table", ["setting", "value"], config_table(exp_dir))]


def seed_values(rows: list[dict[str, Any]]) -> dict[tuple[int, str], list[float]]:
    """Each (level, variant)'s early-stop test accuracies, one per job that trained to the end: what the seed
    test (ticketlab.matching.compare_seeds) compares."""
    out: dict[tuple[int, str], list[float]] = {}
    for r in healthy(rows):
        out.setdefault((r["level"], r["variant"]), []).append(r["early_stop_test_accuracy"])
    return out


def _verdict_blocks(entries: list[dict[str, Any]], spread: str,
                    values: dict[tuple[int, str], list[float]] | None = None) -> list[tuple]:
    variants = sorted({e["variant"] for e in entries}, key=figures.variant_key)
    by = {(e["level"], e["variant"]): e for e in entries}
    values = values or {}
    dense = values.get((0, "ticket"), [])
    rows = []
    for level in sorted({e["level"] for e in entries}):
        density = by.get((level, "ticket"), next(e for e in entries if e["level"] == level))["density"]
        cells = [f"{_spread_cell(by[(level, v)]['early_stop_test_accuracy'], spread)} "
                 f"(n={n_text(by[(level, v)], inline=True)}) {verdict(by[(level, v)]['matching'])}"
                 + ("" if (level, v) == (0, "ticket") or (level, v) not in values else
                    f"\nvs dense: {matching.compare_seeds(values[(level, v)], dense).text()}")
                 if (level, v) in by else "not run" for v in variants]
        rows.append([str(level), pct(density), *cells])
    spread_text = "[min, max]" if spread == "minmax" else "± std"
    detail = [[str(e["level"]), e["variant"], n_text(e), pct(e["density"]),
               *[pct(e["early_stop_test_accuracy"][s]) for s in ("mean", "min", "max", "std")],
               _step_cell(e["early_stop_step"]), pct(e["final_test_accuracy"]["mean"]), verdict(e["matching"])]
              for e in _ordered(entries)]
    return [("h3", "Results: test accuracy at early stop (%)"),
            ("p", f"Each cell: mean {spread_text} over jobs, number of jobs, and the verdict: *matching* when "
                  f"the mean is at least the dense mean minus the dense replicates' std (at least "
                  f"{100 * matching.TOLERANCE:g} pp); then whether its seeds differ from the dense network's by "
                  f"{matching.RULE} (fewer seeds: inconclusive)."),
            ("table", ["level", "% weights remaining", *variants], rows),
            ("h3", "All statistics"),
            ("table", ["level", "variant", "n", "% remaining", "acc. mean", "acc. min", "acc. max", "acc. std",
                       "early-stop step mean [min, max]", "final acc. mean", "verdict"], detail)]


def n_text(entry: dict[str, Any], inline: bool = False) -> str:
    """Jobs in the statistics, and those left out because they diverged: '2 (+1 diverged)'; inline (already
    in parentheses): '2, +1 diverged'."""
    extra = entry.get("diverged", 0)
    if not extra:
        return str(entry["n"])
    return f"{entry['n']}, +{extra} diverged" if inline else f"{entry['n']} (+{extra} diverged)"


def _step_cell(stat: dict[str, float | None]) -> str:
    return "n/a" if stat["mean"] is None else f"{stat['mean']:.0f} [{stat['min']:.0f}, {stat['max']:.0f}]"


def _diverged_blocks(rows: list[dict[str, Any]]) -> list[tuple]:
    """The jobs whose training diverged: listed, and left out of every mean, figure and overlap."""
    bad = [[str(r["seed"]), r["variant"], str(r["level"]), r["job_dir"], str(r["diverged_at_step"])]
           for r in rows if r.get("status") == "diverged"]
    if not bad:
        return []
    return [("h3", "Diverged jobs"),
            ("bad", f"{len(bad)} job(s) DIVERGED (a loss or the weights stopped being finite): they are left out of "
                    "every mean, verdict, figure and overlap above and below, and counted as '+k diverged'."),
            ("table", ["seed", "variant", "level", "folder", "diverged at step"], bad)]


def _check_blocks(rows: list[dict[str, Any]]) -> list[tuple]:
    bad = []
    for r in rows:
        problems = ([] if r["checks"]["counts_as_requested"] else ["counts differ from the request"]) + \
                   [f"layer {k} has no weight left" for k in r["checks"]["collapsed_layers"]]
        if problems:
            bad.append([str(r["seed"]), r["variant"], str(r["level"]), r["job_dir"], "; ".join(problems)])
    worst = max((max(r["checks"].get("pruned_max_abs", {}).values(), default=0.0) for r in rows), default=0.0)
    text = (f"{len(rows)} jobs. Largest |value| at a pruned position (weight, gradient, optimizer state) over all "
            f"jobs: {worst:g} (training stops if it is not exactly 0).")
    if not bad:
        return [("h3", "Self-checks"), ("ok", text + " Every job has the requested per-layer counts and no "
                                               "collapsed layer.")]
    return [("h3", "Self-checks"), ("p", text), ("bad", f"{len(bad)} job(s) FAILED a self-check:"),
            ("table", ["seed", "variant", "level", "folder", "problem"], bad)]


def _overlap_blocks(overlap: list[dict[str, Any]], entries: list[dict[str, Any]]) -> list[tuple]:
    density = {e["level"]: e["density"] for e in entries if e["variant"] == "ticket"}
    rows = []
    for o in overlap:
        d = density.get(o["level"])
        same = d is not None and "next level" not in o["comparison"]  # the random reference needs one density
        layers = ", ".join(f"{k} {v:.3f}" for k, v in o["iou"].items() if k != "_overall")
        rows.append([str(o["level"]), pct(d), o["comparison"], str(o["pairs"]), f"{o['iou']['_overall']:.3f}",
                     f"{figures.expected_random_iou(d):.3f}" if same else "", layers])
    return [("h3", "Mask overlap (IoU)"),
            ("table", ["level", "% remaining", "comparison", "pairs", "IoU", "random masks (expected)",
                       "IoU per layer"], rows)] if rows else []


def _figure_blocks(rows: list[dict[str, Any]], table: list[dict[str, Any]], overlap: list[dict[str, Any]],
                   out: Path, spread: str) -> dict[str, list[tuple]]:
    drawn = {"accuracy_vs_density": figures.accuracy_vs_density(table, out, spread),
             "early_stop_vs_density": figures.early_stop_vs_density(table, out, spread),
             "training_curves": figures.training_curves(rows, out, spread),
             "layer_density": figures.layer_density(rows, out),
             "mask_overlap": figures.mask_overlap(overlap, table, out)}
    spread_text = "min to max" if spread == "minmax" else "mean ± 1 std"
    blocks: dict[str, list[tuple]] = {}
    for name, per_exp in drawn.items():
        for exp, d in per_exp.items():
            blocks.setdefault(exp, []).append(("figure", d, CAPTIONS[name].format(spread=spread_text)))
    return blocks


def _stability_blocks(exp_dir: Path, out: Path, files: dict[str, Path]) -> list[tuple]:
    results = stability.stability_results(exp_dir)
    if not results:
        return []
    head, rows = stability.table_rows(results)
    drawn = [stability.path_figure(results, out, exp_dir.name), stability.barrier_figure(results, out, exp_dir.name)]
    for d in drawn:
        files.update({p.name: p for p in d})
    return [("h3", "Instability analysis (linear mode connectivity)"),
            ("p", "Two copies trained from the state at step k with different data orders; the barrier is the largest "
                  "error on the straight line between their final weights minus the mean error of the two ends."),
            ("table", head, rows),
            ("figure", drawn[0], "Test error along the interpolation path between the two copies."),
            ("figure", drawn[1], "Test error barrier vs the step k where the copies split; below the dashed line "
                                 "the state is stable to SGD noise.")]


def check_report_dir(out: Path) -> None:
    """A report folder is a folder (or a path to make one) outside the run store: one line otherwise."""
    if out.exists() and not out.is_dir():
        raise TicketlabError(f"cannot write the report into {out}: it is a file, not a folder")
    part = store_part(out)
    if part is not None:
        raise TicketlabError(f"will not write the report into {out}: it is inside the run store ({part}), which "
                             "reports only read; choose an --out folder outside it")


def _ran_text(name: str, exp_dir: Path, entries: list[dict[str, Any]]) -> str:
    """What one experiment trained, in one sentence, from its config.json and the table."""
    cfg = read_config(exp_dir).get("config", {})
    levels = sorted({e["level"] for e in entries})
    seeds = sorted({s for e in entries for s in e["seeds"]})
    controls = sorted({e["variant"] for e in entries} - {"ticket"}, key=figures.variant_key)
    pruning = cfg.get("pruning", {})
    return (f"Experiment {name}: {cfg.get('model', {}).get('name', '?')} on {cfg.get('dataset', {}).get('name', '?')}, "
            f"iterative magnitude pruning ({pruning.get('strategy', '?')}, {pruning.get('rate', '?')} of the weights "
            f"per level), levels {', '.join(map(str, levels)) or 'none'}, "
            f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))})"
            + (f"; controls: {', '.join(controls)}" if controls else "; no controls") + f". Folder: {exp_dir}")


def _summary_blocks(name: str, entries: list[dict[str, Any]], values: dict[tuple[int, str], list[float]]) -> list[tuple]:
    """Per variant: the sparsest level that matches the dense network, by the rule the page states, and whether
    its seeds differ from the dense network's (ticketlab.matching.compare_seeds)."""
    lines = []
    for variant in sorted({e["variant"] for e in entries}, key=figures.variant_key):
        mine = sorted((e for e in entries if e["variant"] == variant), key=lambda e: -e["density"])
        judged = [e for e in mine if e["matching"] is not None]
        if not judged:
            lines.append(f"{variant}: no verdict (no dense level to compare with)")
            continue
        best = min((e for e in judged if e["matching"]), key=lambda e: e["density"], default=None)
        seeds = sorted({e["n"] for e in judged})
        n = f"n = {seeds[0]}" if len(seeds) == 1 else f"n = {seeds[0]}-{seeds[-1]}"
        tested = "" if best is None or (best["level"], variant) == (0, "ticket") else (
            "; its seeds against the dense network's: "
            + matching.compare_seeds(values.get((best["level"], variant), []), values.get((0, "ticket"), [])).text())
        lines.append(f"{variant}: {sum(e['matching'] for e in judged)} of {len(judged)} level(s) *matching*"
                     + (f"; the sparsest at {pct(best['density'])}% of the weights (level {best['level']}, "
                        f"{pct(best['early_stop_test_accuracy']['mean'])}%)" if best else "") + f" ({n} per level)"
                     + tested)
    return [("h3", f"Experiment {name}"), ("list", lines)]


RULE_TEXT = (f"Verdict rule (ticketlab.matching): a level is *matching* when its mean test accuracy at early stop "
             f"is at least the dense mean minus max(the dense seeds' std, {100 * matching.TOLERANCE:g} pp); n is the "
             "number of seeds in the mean. A tolerance rule, not a test: with one seed it compares single runs. "
             f"Whether seeds differ is said by {matching.RULE} (ticketlab.matching.compare_seeds).")


def write_report(paths: list[str | Path], out_dir: str | Path, spread: str = "minmax",
                 title: str | None = None, unread: list[str] | None = None) -> dict[str, Path]:
    """Figures, table.csv/json, report.html (self-contained) and report.md for the runs in `paths`, in the folder
    `out_dir`, which must lie outside the run store (reports only read it). A level or control that could not
    be read (damaged, unfinished, a broken link) is named at the top of the report and appended to `unread`."""
    if spread not in figures.SPREADS:
        raise TicketlabError(f"unknown spread {spread!r}; choose one of: {', '.join(figures.SPREADS)}")
    check_report_dir(Path(out_dir))
    exp_dirs = {d.name: d for d, _ in experiment_dirs(paths)}
    missing: list[str] = []
    every_row = collect(paths, allow_empty=True, unread=missing)  # an experiment may hold only stability analyses
    if unread is not None:
        unread += missing
    rows = healthy(every_row)  # diverged jobs: counted in the table and listed, never plotted or averaged
    if not every_row and not any(stability.stability_results(d) for d in exp_dirs.values()):
        raise TicketlabError(f"no finished jobs found in {', '.join(str(p) for p in paths)}")
    table, overlap = aggregate(every_row), overlap_table(rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = dict(zip(("csv", "json"), _write_tables(flat_table(table), out)))
    fig_blocks = _figure_blocks(rows, table, overlap, out, spread)
    title = title or f"Lottery-ticket report: {', '.join(exp_dirs)}"
    # before any number: the tables below leave these out, and a note may say e.g. 'quick budget'
    warnings = [("bad", f"Not in this report ({len(missing)} job(s) could not be read): {line}") for line in missing]
    warnings += [("note", f"Note ({name}): {n}") for name, d in exp_dirs.items() for n in notes(read_config(d))]
    ran, summary, tables, more, config = [], [], [], [], []
    for name, d in exp_dirs.items():
        entries = [e for e in table if e["experiment"] == name]
        stable = _stability_blocks(d, out, files)
        if not entries and not stable:
            continue
        config += _config_blocks(d)
        if entries:  # an experiment may hold only stability analyses
            mine = [r for r in every_row if r["experiment"] == name]
            ran.append(_ran_text(name, d, entries))
            summary += _summary_blocks(name, entries, seed_values(mine)) + _check_blocks(mine)
            tables += [("h3", f"Experiment {name}")] + _verdict_blocks(entries, spread, seed_values(mine))
            tables += _diverged_blocks(mine)
            tables += _overlap_blocks([o for o in overlap if o["experiment"] == name], entries)
            more += [("h3", f"Experiment {name}")] + fig_blocks.get(name, [])
        else:
            ran.append(f"Experiment {name}: stability analyses only. Folder: {d}")
        if stable:
            tables += [b for b in stable if b[0] != "figure"]
            more += [b for b in stable if b[0] == "figure"]
    compared = across_experiments.accuracy_by_experiment(table, exp_dirs, out, spread)
    if compared is not None:
        files.update({p.name: p for p in compared})
        more.append(("figure", compared, "Test accuracy at early stop of each experiment's tickets vs weights "
                     "remaining; experiments are labelled by the hyper-parameters that differ between them: "
                     + "; ".join(f"{n}: {lab}" for n, lab in across_experiments.labels(exp_dirs).items()) + "."))
    headline = _headline(more, compared)
    more.remove(headline)
    if summary:
        summary.insert(0, ("p", RULE_TEXT))
    command = " ".join(["ticketlab report", *map(shlex.quote, map(str, paths))]
                       + (["--spread", spread] if spread != "minmax" else [])
                       + (["--title", shlex.quote(title)] if not title.startswith("Lottery-ticket report: ") else []))
    page = Page(title, [("list", ran)], headline, summary, tables, config, command, warnings,
                [b for i, b in enumerate(more) if b[0] != "h3" or (i + 1 < len(more) and more[i + 1][0] != "h3")],
                reproduce_text="The report reads the run store only: this command draws it again from the folders "
                               "(add --out DIR); the experiments' own commands are in their config.json.")
    files = {**write_page(page, out), **files}
    for per_exp in fig_blocks.values():
        files.update({p.name: p for _, d, _ in per_exp for p in d})
    return files


def _headline(figures_shown: list[tuple], compared: Any) -> tuple:
    """The figure to show first: experiments side by side when there are several, else accuracy against
    density, else (stability analyses only) the first figure drawn."""
    shown = [b for b in figures_shown if b[0] == "figure"]
    if compared is not None:
        return next(b for b in shown if b[1] is compared)
    return next((b for b in shown if b[1].png.name.startswith("accuracy_vs_density")), shown[0])
