"""The Plant 'n' Seek report (`ticketlab seek`): per method and density, test accuracy (or test loss for a
regression task) and the recovery of the planted mask (precision and recall of the kept weights), mean and
range over seeds; a three-panel figure against density with the ground-truth density marked. The page
(report.page: seek.md, report.html/.md) leads with that figure, then the verdicts of each method against the
dense network by the stated rule (ticketlab.matching.compare_seeds), then a pivot of method x density with
precision and recall; table.csv/json keep one row per (method, density)."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .. import matching
from .page import Page, Picture, configuration, write_page


def _stats(values: list[float]) -> dict[str, float] | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarize(rows: list[dict[str, Any]], regression: bool) -> list[dict[str, Any]]:
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["requested_density"]), []).append(r)
    out = []
    for (method, requested), members in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        ok = [m for m in members if m["status"] == "ok"]
        ran = [m for m in members if m["status"] != "not run"]
        out.append({"method": method, "requested_density": requested,
                    "density": statistics.fmean(m["density"] for m in ran) if ran else float("nan"), "n": len(ok),
                    "collapsed": sum(m["status"] == "collapsed" for m in members),
                    "result": _stats([m["loss" if regression else "accuracy"] for m in ok]),
                    "values": [m["loss" if regression else "accuracy"] for m in ok],  # per seed: the verdicts
                    # recovery is a property of the mask: counted for collapsed masks too
                    "precision": _stats([m["precision"] for m in members]),
                    "recall": _stats([m["recall"] for m in members]),
                    "not_run": len(members) - len(ran)})
    return out


def _cell(s: dict[str, float] | None, scale: float, digits: str) -> str:
    if s is None:
        return "-"
    return f"{scale * s['mean']:{digits}} [{scale * s['min']:{digits}}, {scale * s['max']:{digits}}]"


def pivot(table: list[dict[str, Any]], scale: float, digits: str) -> tuple[list[str], list[list[str]]]:
    """Methods as rows, densities as columns; each cell: the result, precision and recall (mean [min, max]),
    n and what was not trained."""
    densities = sorted({e["requested_density"] for e in table}, reverse=True)
    by = {(e["method"], e["requested_density"]): e for e in table}
    rows = []
    for m in sorted({e["method"] for e in table}):
        cells = []
        for d in densities:
            e = by.get((m, d))
            if e is None:
                cells.append("not run")
                continue
            lines = [f"{_cell(e['result'], scale, digits)} (n={e['n']})", f"P {_cell(e['precision'], 100, '.1f')}",
                     f"R {_cell(e['recall'], 100, '.1f')}", f"at {100 * e['density']:.3g}%"]
            if e["collapsed"] or e["not_run"]:
                lines.append(f"✗ {e['collapsed']} collapsed / {e['not_run']} not run")
            cells.append("\n".join(lines))
        rows.append([m, *cells])
    return ["method", *(f"{100 * d:g}% kept" for d in densities)], rows


def verdicts(table: list[dict[str, Any]], dense: list[float], regression: bool) -> list[str]:
    """Each (method, density) against the trained dense network, by the rule; and the best recall per density."""
    scale, unit = (1, "") if regression else (100, " pp")
    out = []
    for e in sorted(table, key=lambda e: (-e["requested_density"], e["method"])):
        said = matching.compare_seeds(e["values"], dense)
        out.append(f"{e['method']} at {100 * e['requested_density']:g}% against the dense network: "
                   f"{said.text(scale, unit)}.")
    for d in sorted({e["requested_density"] for e in table}, reverse=True):
        found = [e for e in table if e["requested_density"] == d and e["recall"] is not None]
        if found:
            best = max(found, key=lambda e: e["recall"]["mean"])
            out.append(f"Best recall of the planted weights at {100 * d:g}%: {best['method']} "
                       f"({100 * best['recall']['mean']:.1f}%, precision {100 * best['precision']['mean']:.1f}%).")
    return out


def write_report(result: Any, out_dir: str | Path, title: str, command: str | None = None) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    regression = result.regression
    table = summarize(result.rows, regression)
    truth = statistics.fmean(p["density"] for p in result.planted)
    what = "test loss (mse)" if regression else "test acc %"
    scale, digits = (1, ".4g") if regression else (100, ".1f")
    head = ["method", "requested %", "achieved %", "n", "collapsed / not run", f"{what} [min, max]", "precision %",
            "recall %"]
    body = [[e["method"], f"{100 * e['requested_density']:g}", f"{100 * e['density']:.3g}", str(e["n"]),
             f"{e['collapsed']} / {e['not_run']}", _cell(e["result"], scale, digits), _cell(e["precision"], 100, ".1f"),
             _cell(e["recall"], 100, ".1f")] for e in table]
    base = _stats([b["loss" if regression else "accuracy"] for b in result.baseline])
    dense_values = [d.get("early_stop_test_loss" if regression else "early_stop_test_accuracy") for d in result.dense]
    dense = _stats(dense_values)
    lines = [f"Ground truth: {result.planted[0]['planted_weights']} of {result.planted[0]['weights']} weights "
             f"planted ({100 * truth:.3g}%); the planted subnetwork alone, untrained: {what} "
             f"{_cell(base, scale, digits)}; the dense network trained: {_cell(dense, scale, digits)} "
             f"({len(result.planted)} seed(s)).",
             "Precision = planted weights among those kept; recall = planted weights kept among all planted. "
             "A collapsed mask (no input-output path) is not trained: no accuracy, but its recovery is counted."]
    fig = Figure(figsize=(13, 4))
    axes = fig.subplots(1, 3)
    for method in sorted({e["method"] for e in table}):
        mine = sorted((e for e in table if e["method"] == method), key=lambda e: e["requested_density"])
        for ax, key, sc in ((axes[0], "result", scale), (axes[1], "precision", 100), (axes[2], "recall", 100)):
            pts = [e for e in mine if e[key] is not None]
            if pts:
                ax.plot([100 * e["density"] for e in pts], [sc * e[key]["mean"] for e in pts], marker="o", label=method)
    for ax, label in zip(axes, (what, "precision %", "recall %")):
        ax.axvline(100 * truth, color="grey", ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("weights kept (%, log); dotted: planted ticket")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(title, fontsize="medium")
    picture = Picture(out / "seek.png")
    fig.savefig(picture.png, dpi=130, bbox_inches="tight")
    methods = sorted({e["method"] for e in table})
    densities = sorted({e["requested_density"] for e in table}, reverse=True)
    seeds = sorted({r["seed"] for r in result.rows if "seed" in r})
    ran = [("list", [f"Methods: {', '.join(methods)}, on a network with a planted ticket, each at "
                     f"{', '.join(f'{100 * d:g}%' for d in densities)} of the weights kept; {len(seeds)} seed(s).",
                     *lines])]
    warnings = [("note", f"Not run: {n}") for n in result.notes]
    verdict_blocks = [("p", f"Rule: {matching.RULE} (ticketlab.matching.compare_seeds) on the "
                            f"{'test loss' if regression else 'test accuracy'}, each method against the trained "
                            "dense network's seeds; fewer seeds: 'inconclusive (n = ...)', no claim."),
                      ("list", verdicts(table, dense_values, regression))]
    pivot_head, pivot_rows = pivot(table, scale, digits)
    tables = [("h3", f"{what}, precision (P) and recall (R) of the planted weights, by method and density"),
              ("p", "Each cell: the result mean [min, max] (n), precision and recall in % (mean [min, max]), the "
                    "density reached, and masks not trained."),
              ("table", pivot_head, pivot_rows), ("h3", "Every row (as table.csv)"), ("table", head, body)]
    page = Page(title, ran, ("figure", picture, f"Against the share of weights kept (log): {what}, precision and "
                             "recall of the planted weights, mean over seeds; dotted: the planted ticket's density."),
                verdict_blocks, tables, configuration([r["job_dir"] for r in result.rows if r.get("job_dir")]),
                command or "ticketlab seek ... (the command line was not recorded)", warnings)
    files = write_page(page, out, ("seek", "report"))
    files |= {"csv": out / "table.csv", "json": out / "table.json", "png": picture.png}
    with files["csv"].open("w", newline="") as f:
        csv.writer(f).writerows([head] + body)
    files["json"].write_text(json.dumps({"table": table, "rows": result.rows, "planted": result.planted,
                                         "baseline": result.baseline, "rule": matching.RULE}, indent=2,
                                        default=str) + "\n")
    return files
