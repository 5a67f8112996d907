"""The comparison report (`ticketlab compare`): every method's accuracy against density, its sanity checks,
and what they say about what the method found, in a table, a figure, Markdown and HTML.

Rows come from experiments.compare (read back from the store). Collapsed masks (no input-output path) are
never averaged in: they are counted and flagged. Whether a sanity check, or a method against the dense
network, differs is said by one stated rule (ticketlab.matching.compare_seeds: Welch's t-test, inconclusive
below 3 seeds a side), named beside every verdict. The page (report.page) leads with the figure, then the
verdicts, then two pivots (method x density; sanity check x density); table.csv/json keep one row per
(method, check, density).
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .. import matching
from ..matching import lowest_matching, matches
from .aggregate import _stats
from .figures import _density_axis, _save
from .page import Page, configuration, write_page

CHECK_STYLE = {"ticket": "-", "check_shuffle": "--", "check_reinit": ":", "check_invert": "-."}
CHECK_TEXT = {"check_shuffle": "shuffled within layers", "check_reinit": "re-initialised",
              "check_invert": "inverted scores (keep the lowest)"}
# what a check that does worse than its method shows, and what a check that does not shows (no evidence, not proof)
MEANING = {"check_shuffle": ("the positions it chose matter", "no evidence that the positions it chose matter "
                             "(it may have chosen only layer densities)"),
           "check_reinit": ("the initial values matter", "no evidence that the initial values matter"),
           "check_invert": ("its ranking matters", "no evidence that its ranking matters")}


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
                      "values": [m["early_stop_test_accuracy"] for m in trained],  # per seed: for the verdicts
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


def check_verdict(entry: dict[str, Any], base: dict[str, Any]) -> tuple[matching.SeedComparison, str]:
    """A sanity check's seeds against its method's, by the stated rule, and what that shows."""
    said = matching.compare_seeds(entry.get("values", []), base.get("values", []))
    worse, no_evidence = MEANING[entry["variant"]]
    meaning = {matching.LOWER: worse, matching.SAME: no_evidence, matching.INCONCLUSIVE: said.text(),
               matching.HIGHER: "the check does better than the method"}[said.outcome]
    return said, meaning


def verdicts(table: list[dict[str, Any]]) -> list[str]:
    """Plain sentences: what each sanity check says about each method, density by density, each with the rule,
    its level and n (ticketlab.matching.compare_seeds); then the collapsed masks."""
    out = []
    tickets = {(e["method"], e["requested_density"]): e for e in table if e["variant"] == "ticket"}
    for e in table:
        base = tickets.get((e["method"], e["requested_density"]))
        if e["variant"] == "ticket" or base is None or None in (e["accuracy"]["mean"], base["accuracy"]["mean"]):
            continue
        said, meaning = check_verdict(e, base)
        delta = e["accuracy"]["mean"] - base["accuracy"]["mean"]
        head = (f"{e['method']} at {100 * e['requested_density']:g}%: {CHECK_TEXT[e['variant']]} "
                f"{100 * e['accuracy']['mean']:.2f}% vs {100 * base['accuracy']['mean']:.2f}%")
        if said.outcome == matching.INCONCLUSIVE:
            out.append(f"{head} ({100 * delta:+.2f} pp): {meaning}.")
        else:
            out.append(f"{head}: {meaning}; {said.text()}.")
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


def _acc_lines(e: dict[str, Any]) -> list[str]:
    """A pivot cell's first lines: mean [min, max] (n), the density reached, collapsed masks."""
    acc = e["accuracy"]
    lines = ["-" if acc["mean"] is None else
             f"{100 * acc['mean']:.2f} [{100 * acc['min']:.2f}, {100 * acc['max']:.2f}] (n={e['n']})",
             f"at {100 * e['density']:.3g}%"]
    if e["collapsed"]:
        lines.append(f"✗ {e['collapsed']} collapsed")
    return lines


def pivots(table: list[dict[str, Any]], dense_values: list[float]) -> tuple[list[tuple], list[tuple]]:
    """The two tables people scan: method x density (each cell: mean [min, max], achieved density, collapsed
    marks, the verdict against dense) and sanity check x density (the verdict against the method's own seeds)."""
    densities = sorted({e["requested_density"] for e in table}, reverse=True)
    cols = [f"{100 * d:g}% kept" for d in densities]
    by = {(e["method"], e["variant"], e["requested_density"]): e for e in table}
    methods = sorted({e["method"] for e in table})
    main = []
    for m in methods:
        cells = []
        for d in densities:
            e = by.get((m, "ticket", d))
            if e is None:
                cells.append("not run")
                continue
            said = matching.compare_seeds(e.get("values", []), dense_values)
            cells.append("\n".join(_acc_lines(e) + [f"vs dense: {said.text()}"]))
        main.append([m, *cells])
    checks = []
    for m in methods:
        for v in sorted({e["variant"] for e in table if e["method"] == m} - {"ticket"}):
            cells = []
            for d in densities:
                e, base = by.get((m, v, d)), by.get((m, "ticket", d))
                if e is None:
                    cells.append("not run")
                    continue
                lines = _acc_lines(e)
                if base is not None and e["accuracy"]["mean"] is not None and base["accuracy"]["mean"] is not None:
                    said, meaning = check_verdict(e, base)
                    lines.append(f"vs {m}: {said.text()}")
                    if said.outcome != matching.INCONCLUSIVE:
                        lines.append(meaning)
                cells.append("\n".join(lines))
            checks.append([f"{m}: {CHECK_TEXT.get(v, v)}", *cells])
    return ([("table", ["method", *cols], main)],
            [("table", ["sanity check", *cols], checks)] if checks else [])


def write_report(comparison: Any, out_dir: str | Path, title: str, chance: float = 0.1,
                 command: str | None = None) -> dict[str, Path]:
    """compare.html/.md (and the same page as report.html/.md), table.csv/json (one row per method, check and
    density), the figures. `command`: the command line that made it, shown on the page."""
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
                  "(ticketlab.matching)." if dense is not None else "No dense run finished: no verdict against it.")
    main, checks = pivots(table, dense_acc)
    methods = sorted({e["method"] for e in table})
    seeds = sorted({r["seed"] for r in comparison.rows if "seed" in r})
    ran = [("list", [f"Methods: {', '.join(methods)}, each at "
                     f"{', '.join(f'{100 * d:g}%' for d in sorted({e['requested_density'] for e in table}, reverse=True))}"
                     " of the weights kept, trained alike from the same initialisation as the dense network.",
                     "Sanity checks: " + (", ".join(CHECK_TEXT[v] for v in sorted({e["variant"] for e in table}
                                                                               - {"ticket"})) or "none") + ".",
                     f"Seeds: {len(seeds)} ({', '.join(map(str, seeds))}); accuracy: test accuracy at the early-stop "
                     "step (minimum validation loss).", dense_line])]
    rule = (f"Rule for every verdict below and in the tables: {matching.RULE} (ticketlab.matching.compare_seeds); "
            "a method is compared with the dense network's seeds, a sanity check with its method's seeds at the "
            "same density. Fewer seeds: 'inconclusive (n = ...)', no claim.")
    verdict_blocks = [("p", rule), ("list", sentences or ["No sanity checks were run."])]
    if birds := early_bird_lines(table):
        verdict_blocks += [("h3", "Early-bird tickets"), ("list", birds)]
    tables = [("h3", "Methods against the dense network (test accuracy at early stop, %)"),
              ("p", "Each cell: mean [min, max] over seeds (n), the density reached, collapsed masks (✗: no path "
                    "from input to output, not trained), and the verdict against the dense network."), *main]
    if checks:
        tables += [("h3", "Sanity checks against their method"), *checks]
    tables += [("h3", "Every row (as table.csv)"),
               ("p", "matches dense: the matching rule (ticketlab.matching: mean at least the dense mean minus "
                     f"max(dense std, {100 * matching.TOLERANCE:g} pp)). Training cost: FLOPs of the prunable "
                     "weights' multiply-adds over every training a row took (IMP: each level up to its own, the "
                     "dense run included; RigL: its dense gradients at update steps), relative to one dense run; "
                     "seconds: this session's training time (a job read back from the store counts what it spent "
                     "when it ran)."), ("table", head, body)]
    page = Page(title, ran, ("figure", drawn, "Test accuracy at early stop against the share of weights kept: the "
                             "methods (left), then each sanity check with its method's line faded. Bars: min to max "
                             "over seeds; dashed: the dense network; ×: collapsed masks, drawn at chance."),
                verdict_blocks, tables, configuration([r["job_dir"] for r in comparison.rows if r.get("job_dir")]
                                                      + list(comparison.experiments.values())),
                command or "ticketlab compare ... (the command line was not recorded)",
                figures=[("figure", costs, "Test accuracy against training FLOPs relative to one dense run, one line "
                          "per method through its densities.")])
    files = write_page(page, out, ("compare", "report"))
    files |= {"csv": out / "table.csv", "json": out / "table.json", "png": drawn.png, "svg": drawn.svg,
              "cost_png": costs.png, "cost_svg": costs.svg}
    with files["csv"].open("w", newline="") as f:
        csv.writer(f).writerows([head] + body)
    files["json"].write_text(json.dumps({"table": table, "verdicts": sentences, "dense": dense,
                                         "rule": matching.RULE}, indent=2) + "\n")
    return files
