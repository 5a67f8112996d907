"""The strong-ticket report (`ticketlab strong`): test accuracy of the learned subnetwork against k (the
fraction of weights kept), mean and range over seeds: a page (report.page: strong.md, report.html/.md) led by
the figure, a pivot of k x method, the verdicts of each k against the method's best k by the stated rule
(ticketlab.matching.compare_seeds), and table.csv/json with one row per (method, k)."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .. import matching
from .page import Page, Picture, configuration, write_page


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (method, k): seeds, density, mean / min / max of final and early-stopping test accuracy (or loss),
    and the per-seed values the verdicts test."""
    out = []
    for method, k in sorted({(r.get("method") or "", r["k"]) for r in rows}):
        mine = [r for r in rows if r["k"] == k and (r.get("method") or "") == method and r["status"] == "ok"]
        entry: dict[str, Any] = {"method": method, "k": k, "n": len(mine),
                                 "density": statistics.fmean(r["density"] for r in mine) if mine else None}
        for key in ("final_test_accuracy", "early_stop_test_accuracy", "final_test_loss"):
            vals = [r[key] for r in mine if r.get(key) is not None]
            entry[key] = ({"mean": statistics.fmean(vals), "min": min(vals), "max": max(vals)} if vals else None)
            entry[f"{key}_values"] = vals
        out.append(entry)
    return out


def table_rows(table: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The long table: one row per (method, k)."""
    head = ["method", "k (kept)", "density %", "n", "final test acc % [min, max]", "early-stop test acc %",
            "final test loss"]
    body = []
    for e in table:
        acc, es, loss = e["final_test_accuracy"], e["early_stop_test_accuracy"], e["final_test_loss"]
        body.append([e["method"], f"{e['k']:g}", _pct(e["density"]), str(e["n"]),
                     "-" if acc is None else f"{_pct(acc['mean'])} [{_pct(acc['min'])}, {_pct(acc['max'])}]",
                     "-" if es is None else _pct(es["mean"]), "-" if loss is None else f"{loss['mean']:.4g}"])
    return head, body


def _metric(table: list[dict[str, Any]]) -> tuple[str, str, float, bool]:
    """(key, label, scale, regression): accuracy, or the test loss of a regression task (no accuracy at all)."""
    if any(e["final_test_accuracy"] is not None for e in table):
        return "final_test_accuracy", "test accuracy (%)", 100, False
    return "final_test_loss", "test loss (mse)", 1, True


def pivot(table: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """k as rows, one column per method; each cell: mean [min, max] (n), the density reached."""
    key, _, scale, _ = _metric(table)
    methods = sorted({e["method"] for e in table})
    by = {(e["k"], e["method"]): e for e in table}
    rows = []
    for k in sorted({e["k"] for e in table}):
        cells = []
        for m in methods:
            e = by.get((k, m))
            s = None if e is None else e[key]
            cells.append("not run" if e is None else "-" if s is None else
                         f"{scale * s['mean']:.4g} [{scale * s['min']:.4g}, {scale * s['max']:.4g}] (n={e['n']})\n"
                         f"density {_pct(e['density'])}%")
        rows.append([f"{k:g}", *cells])
    return ["k (kept)", *methods], rows


def verdicts(table: list[dict[str, Any]]) -> list[str]:
    """Per method: its best k (highest mean accuracy, or lowest loss), and every other k against it by the rule."""
    key, _, scale, regression = _metric(table)
    out = []
    for m in sorted({e["method"] for e in table}):
        mine = [e for e in table if e["method"] == m and e[key] is not None]
        if not mine:
            out.append(f"{m}: no k trained to the end; no verdict.")
            continue
        best = (min if regression else max)(mine, key=lambda e: e[key]["mean"])
        unit = "" if regression else " pp"
        out.append(f"{m or 'strong'}: best k = {best['k']:g} ({scale * best[key]['mean']:.4g}, n = {best['n']}).")
        for e in mine:
            if e is not best:
                said = matching.compare_seeds(e[f"{key}_values"], best[f"{key}_values"])
                out.append(f"{m or 'strong'} k = {e['k']:g} against k = {best['k']:g}: {said.text(scale, unit)}.")
    return out


def figure(table: list[dict[str, Any]], out: Path, title: str, chance: float | None) -> Picture:
    key, label, scale, regression = _metric(table)
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    for i, m in enumerate(sorted({e["method"] for e in table})):
        pts = sorted((e for e in table if e["method"] == m and e[key] is not None), key=lambda e: e["k"])
        mean = [scale * e[key]["mean"] for e in pts]
        ax.errorbar([e["k"] for e in pts], mean, yerr=[[v - scale * e[key]["min"] for v, e in zip(mean, pts)],
                                                       [scale * e[key]["max"] - v for v, e in zip(mean, pts)]],
                    marker="o", capsize=3, color=f"C{i % 10}", label=m or None)
    if chance is not None and not regression:
        ax.axhline(100 * chance, color="grey", ls=":", label="chance")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.set_xlabel("k: fraction of weights kept per layer")
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize="medium")
    picture = Picture(out / "accuracy_vs_k.png")
    fig.savefig(picture.png, dpi=130, bbox_inches="tight")
    return picture


def write_report(rows: list[dict[str, Any]], out_dir: str | Path, title: str, chance: float | None,
                 command: str | None = None) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = summarize(rows)
    head, body = table_rows(table)
    picture = figure(table, out, title, chance)
    _, label, _, regression = _metric(table)
    seeds = sorted({r["seed"] for r in rows})
    bad = [r for r in rows if r["status"] != "ok"]
    ran = [("list", [f"Method: {', '.join(sorted({e['method'] for e in table}))}: a mask learned on frozen weights "
                     "(or, lfss, read from a trained dense run), evaluated without training the weights.",
                     f"k (fraction of each layer's weights kept): {', '.join(f'{k:g}' for k in sorted({e['k'] for e in table}))}.",
                     f"Seeds: {len(seeds)} ({', '.join(map(str, seeds))}); result: {label} at the final step."
                     + (f" {len(bad)} job(s) did not train to the end (diverged): left out." if bad else "")])]
    verdict_blocks = [("p", f"Rule: {matching.RULE} (ticketlab.matching.compare_seeds), each k against the "
                            "method's best k; fewer seeds: 'inconclusive (n = ...)', no claim."),
                      ("list", verdicts(table))]
    pivot_head, pivot_rows = pivot(table)
    tables = [("h3", f"{label} by k and method"), ("table", pivot_head, pivot_rows),
              ("h3", "Every row (as table.csv)"), ("table", head, body)]
    page = Page(title, ran, ("figure", picture, f"{label.capitalize()} against k, the fraction of weights kept per "
                             "layer: mean over seeds, bars min to max" + ("" if regression else "; dotted: chance") + "."),
                verdict_blocks, tables, configuration([r["job_dir"] for r in rows if r.get("job_dir")]),
                command or "ticketlab strong ... (the command line was not recorded)")
    files = write_page(page, out, ("strong", "report"))
    files |= {"csv": out / "table.csv", "json": out / "table.json", "png": picture.png}
    with files["csv"].open("w", newline="") as f:
        csv.writer(f).writerows([head] + body)
    files["json"].write_text(json.dumps({"table": table, "rows": rows, "rule": matching.RULE}, indent=2,
                                        default=str) + "\n")
    return files
