"""The comparison report (`ticketlab compare`): every method's accuracy against density, its sanity checks,
and what they say about what the method found, in a table, a figure, Markdown and HTML.

Rows come from experiments.compare (read back from the store). Collapsed masks (no input-output path) are
never averaged in: they are counted and flagged. A sanity check "does as well" as its method by the one
matching rule (ticketlab.matching), with the method's own runs in the dense network's place.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import statistics
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ..matching import lowest_matching, matches
from .aggregate import _stats
from .figures import _density_axis, _save

CHECK_STYLE = {"ticket": "-", "check_shuffle": "--", "check_reinit": ":", "check_invert": "-."}
CHECK_TEXT = {"check_shuffle": "shuffled within layers", "check_reinit": "re-initialised",
              "check_invert": "inverted scores (keep the lowest)"}
INCONCLUSIVE = 0.05  # beyond a 5 pp spread of the method's own runs, a verdict says so instead


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["variant"], r["requested_density"]), []).append(r)
    table = []
    for (method, variant, requested), members in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][2],
                                                                                       kv[0][1] != "ticket", kv[0][1])):
        trained = [m for m in members if m["status"] == "ok" and not m["collapsed"]]
        table.append({"method": method, "variant": variant, "requested_density": requested,
                      "density": statistics.fmean(m["density"] for m in members), "n": len(trained),
                      "collapsed": sum(m["collapsed"] for m in members),
                      "other": sum(m["status"] not in ("ok", "collapsed") for m in members),
                      "accuracy": _stats([m["early_stop_test_accuracy"] for m in trained]),
                      "train_cost": _mean([m.get("train_cost") for m in trained]),
                      "train_seconds": _mean([m.get("train_seconds") for m in trained])})
        if any("drawn_at_step" in m for m in members):  # early-bird: when each seed's mask was drawn
            table[-1].update({"drawn_at_step": [m.get("drawn_at_step") for m in members],
                              "found": sum(bool(m.get("found")) for m in members),
                              "iou_with_imp": _mean([m.get("iou_with_imp") for m in members])})
    return table


def early_bird_lines(table: list[dict[str, Any]]) -> list[str]:
    """Plain sentences: when each early-bird ticket was drawn, and how much of IMP's mask it shares."""
    out = []
    for e in table:
        if "drawn_at_step" not in e:
            continue
        steps = ", ".join(str(s) for s in e["drawn_at_step"])
        kept = " of the BN channels" if e["method"] == "early-bird-channel" else ""
        text = (f"{e['method']} at {100 * e['requested_density']:g}%{kept}: the masks settled in {e['found']} of "
                f"{len(e['drawn_at_step'])} seed(s), drawn at step(s) {steps}")
        if e["found"] < len(e["drawn_at_step"]):
            text += " (a seed whose masks never settled uses its trained network's mask)"
        if e["iou_with_imp"] is not None:
            text += f"; IoU with IMP's mask at that density {e['iou_with_imp']:.3f}"
        out.append(text + ".")
    return out


def _mean(values: list[float | None]) -> float | None:
    """The mean, or None when any is unknown (rows read from a store made before costs were recorded)."""
    return statistics.fmean(values) if values and None not in values else None


def verdicts(table: list[dict[str, Any]]) -> list[str]:
    """Plain sentences: what each sanity check says about each method, density by density."""
    out = []
    tickets = {(e["method"], e["requested_density"]): e for e in table if e["variant"] == "ticket"}
    for e in table:
        base = tickets.get((e["method"], e["requested_density"]))
        if e["variant"] == "ticket" or base is None or None in (e["accuracy"]["mean"], base["accuracy"]["mean"]):
            continue
        spread = (base["accuracy"]["max"] or 0) - (base["accuracy"]["min"] or 0)  # of the method's own runs
        delta = e["accuracy"]["mean"] - base["accuracy"]["mean"]
        holds = matches(e["accuracy"]["mean"], base["accuracy"]["mean"], base["accuracy"]["std"])
        what = {"check_shuffle": ("it chose layer densities, not weights", "the positions it chose matter"),
                "check_reinit": ("the initial values do not matter", "the initial values matter"),
                "check_invert": ("its ranking of weights does not matter", "its ranking matters")}[e["variant"]]
        verdict = what[0] if holds else what[1]
        if spread > INCONCLUSIVE:
            verdict = f"inconclusive, the method's own runs spread over {100 * spread:.1f} pp"
        out.append(f"{e['method']} at {100 * e['requested_density']:g}%: {CHECK_TEXT[e['variant']]} "
                   f"{100 * e['accuracy']['mean']:.2f}% vs {100 * base['accuracy']['mean']:.2f}% "
                   f"({100 * delta:+.2f} pp): {verdict}.")
    for e in table:
        if e["collapsed"]:
            out.append(f"{e['method']} ({e['variant']}) at {100 * e['requested_density']:g}%: {e['collapsed']} "
                       f"mask(s) collapsed (no path from input to output): not trained, not averaged.")
    return out


def figure(table: list[dict[str, Any]], dense: float | None, out_dir: Path, chance: float) -> Any:
    """Accuracy vs density: one panel of the methods, one per sanity check (the method's line faded)."""
    variants = ["ticket"] + sorted({e["variant"] for e in table} - {"ticket"})
    fig = Figure(figsize=(5.2 * len(variants), 4.6))
    axes = fig.subplots(1, len(variants), squeeze=False)[0]
    methods = sorted({e["method"] for e in table})
    densities = [100 * e["requested_density"] for e in table]  # ticks at the asked densities (IMP lands near them)
    for ax, variant in zip(axes, variants):
        for i, m in enumerate(methods):
            lines = [("ticket", 1.0, m)] if variant == "ticket" else [("ticket", 0.3, None), (variant, 1.0, m)]
            for v, alpha, label in lines:
                pts = sorted((e for e in table if e["method"] == m and e["variant"] == v), key=lambda e: -e["density"])
                _plot(ax, [e for e in pts if e["accuracy"]["mean"] is not None], CHECK_STYLE.get(v, "-"),
                      f"C{i % 10}", alpha, label)
                bad = [e for e in pts if e["collapsed"]]
                if bad and label:
                    ax.scatter([100 * e["density"] for e in bad], [100 * chance] * len(bad), marker="x", s=60,
                               color=f"C{i % 10}", label=f"{m}: collapsed")
        if dense is not None:
            ax.axhline(100 * dense, color="0.3", ls="--", lw=1, label="dense")
        _density_axis(ax, densities + [100.0])
        ax.set_ylabel("test accuracy at early stop (%)")
        ax.set_title("methods" if variant == "ticket" else CHECK_TEXT[variant], fontsize="medium")
        ax.legend(fontsize="x-small")
    return _save(fig, out_dir, "compare_accuracy_vs_density", "methods")


def cost_figure(table: list[dict[str, Any]], dense: float | None, out_dir: Path) -> Any:
    """Accuracy against training FLOPs (relative to one dense run), one line per method through its densities:
    what it costs to find and train each subnetwork."""
    fig = Figure(figsize=(6, 4.6))
    ax = fig.subplots()
    for i, m in enumerate(sorted({e["method"] for e in table})):
        pts = sorted((e for e in table if e["method"] == m and e["variant"] == "ticket"
                      and e["accuracy"]["mean"] is not None and e["train_cost"] is not None),
                     key=lambda e: e["train_cost"])
        if pts:
            ax.plot([e["train_cost"] for e in pts], [100 * e["accuracy"]["mean"] for e in pts], marker="o", ms=4,
                    color=f"C{i % 10}", label=m)
            for e in pts:
                ax.annotate(f"{100 * e['requested_density']:g}%", (e["train_cost"], 100 * e["accuracy"]["mean"]),
                            fontsize="xx-small", xytext=(3, 3), textcoords="offset points")
    if dense is not None:
        ax.axhline(100 * dense, color="0.3", ls="--", lw=1, label="dense")
    ax.axvline(1.0, color="0.6", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs relative to one dense run (log)")
    ax.set_ylabel("test accuracy at early stop (%)")
    ax.legend(fontsize="x-small")
    ax.grid(True, alpha=0.3)
    return _save(fig, out_dir, "compare_accuracy_vs_training_flops", "methods")


def _plot(ax: Any, pts: list[dict[str, Any]], style: str, color: str, alpha: float, label: str | None) -> None:
    if not pts:
        return
    mean = [100 * e["accuracy"]["mean"] for e in pts]
    ax.errorbar([100 * e["density"] for e in pts], mean,
                yerr=[[m - 100 * e["accuracy"]["min"] for m, e in zip(mean, pts)],
                      [100 * e["accuracy"]["max"] - m for m, e in zip(mean, pts)]],
                ls=style, marker="o", ms=3.5, capsize=2, color=color, alpha=alpha, label=label)


def write_report(comparison: Any, out_dir: str | Path, title: str, chance: float = 0.1) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = summarize(comparison.rows)
    dense_acc = [d["early_stop_test_accuracy"] for d in comparison.dense if d.get("early_stop_test_accuracy") is not None]
    dense = statistics.fmean(dense_acc) if dense_acc else None
    dense_std = statistics.stdev(dense_acc) if len(dense_acc) > 1 else 0.0
    for e in table:  # the one matching rule (ticketlab.matching) against the dense network
        e["matches_dense"] = matches(e["accuracy"]["mean"], dense, dense_std) if e["variant"] == "ticket" else None
    drawn = figure(table, dense, out, chance)
    costs = cost_figure(table, dense, out)
    head = ["method", "check", "requested %", "achieved %", "n", "collapsed", "test acc @ early stop % [min, max]",
            "matches dense", "train FLOPs (x dense)", "train s"]
    body = [[e["method"], e["variant"].removeprefix("check_"), f"{100 * e['requested_density']:g}",
             f"{100 * e['density']:.3g}", str(e["n"]), str(e["collapsed"]),
             "-" if e["accuracy"]["mean"] is None else
             f"{100 * e['accuracy']['mean']:.2f} [{100 * e['accuracy']['min']:.2f}, {100 * e['accuracy']['max']:.2f}]",
             {True: "yes", False: "no", None: "-"}[e["matches_dense"]],
             "-" if e["train_cost"] is None else f"{e['train_cost']:.3g}",
             "-" if e["train_seconds"] is None else f"{e['train_seconds']:.3g}"]
            for e in table]
    sentences = verdicts(table)
    dense_line = (f"Dense network: {100 * dense:.2f}% (mean of {len(dense_acc)} seed(s), std {100 * dense_std:.2f} "
                  f"pp); a ticket matches it at or above {100 * lowest_matching(dense, dense_std):.2f}% "
                  "(ticketlab.matching)." if dense is not None else "")
    md = [f"# {title}", "", dense_line, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(r) + " |" for r in body]
    md += ["", "## What the sanity checks say", ""] + ([f"- {s}" for s in sentences] or ["No sanity checks were run."])
    if birds := early_bird_lines(table):
        md += ["", "## Early-bird tickets", ""] + [f"- {s}" for s in birds]
    md += ["", f"![accuracy vs density]({drawn.png.name})", "",
           "Training cost: FLOPs of the prunable weights' multiply-adds over every training a row took (IMP: each "
           "level up to its own, the dense run included; RigL: its dense gradients at update steps), relative to "
           "one dense run; seconds: this session's training time (a job read back from the store counts what it "
           "spent when it ran).", "", f"![accuracy vs training FLOPs]({costs.png.name})", ""]
    files = {"md": out / "compare.md", "html": out / "compare.html", "csv": out / "table.csv",
             "json": out / "table.json", "png": drawn.png, "svg": drawn.svg, "cost_png": costs.png,
             "cost_svg": costs.svg}
    files["md"].write_text("\n".join(md) + "\n")
    png = base64.b64encode(drawn.png.read_bytes()).decode()
    rows_html = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    files["html"].write_text(
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(dense_line)}</p><table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in head) + f"</tr>{rows_html}</table><h2>What the sanity "
        "checks say</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in sentences) + "</ul>"
        f"<img alt='accuracy vs density' src='data:image/png;base64,{png}'></body></html>\n")
    with files["csv"].open("w", newline="") as f:
        csv.writer(f).writerows([head] + body)
    files["json"].write_text(json.dumps({"table": table, "verdicts": sentences, "dense": dense}, indent=2) + "\n")
    return files
