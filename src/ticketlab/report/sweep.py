"""Sweep reports (`ticketlab sweep`): test and training error against a swept setting, the interpolation
threshold, sparse double descent (dip and peak) and the smallest matching ticket per starting width.

Rows come from experiments.sweep (one per trained job, read back from the store); this module never trains.
Errors are 1 - accuracy at the final step: test error on the clean test labels, training error on the labels
the network was trained on (the noisy ones under label noise) and on the clean training labels.
Only jobs that trained to the end (status ok) enter means; spreads are the std and min/max over seeds. Jobs that
did not (diverged, collapsed) and jobs not run (built on such a job) are counted in the table, apart.

Definitions used in the tables and figures:
  interpolation threshold  the smallest value of the swept setting (in increasing order) whose mean training
                           error is at most `tolerance` (default 0.5%), per line of the figure
  dip and peak             on test accuracy against sparsity (increasing): the peak is the point after the
                           largest rise of accuracy over its running minimum, the dip that minimum before it;
                           a dip is a point the curve descended into (lower than the sparsity before it), and
                           the rise must exceed 1 pp, so a curve that only rises, or only falls, has neither
  matching ticket          a level whose mean early-stop test accuracy is at least the same width's dense mean
                           minus max(its std over seeds, 0.2 pp): ticketlab.matching, as every report

The page (report.page: sweep.md, report.html/.md) leads with the error figure, then these findings with their
definitions, then the table with the swept setting as rows; sweep.csv/json and rows.csv keep the long form.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .. import matching
from .aggregate import _stats
from .figures import _density_axis, _save
from .page import Page, configuration, hparams, write_page

INTERPOLATION_TOLERANCE = 0.005  # training error at most this counts as interpolating (0.5% of the training labels)
MIN_RISE = 0.01  # a peak rises more than 1 pp above its dip (one seed's curve wiggles by a few tenths)
LOG_SETTINGS = ("model.width", "density", "dataset.subsample")  # drawn on a log x axis


def _group_key(row: dict[str, Any], by: list[str]) -> tuple:
    return tuple(row[k] for k in by)


def _label(by: list[str], key: tuple) -> str:
    return ", ".join(f"{k.split('.')[-1]} {v}" for k, v in zip(by, key)) or "all"


def summarize(rows: list[dict[str, Any]], x: str, by: list[str]) -> list[dict[str, Any]]:
    """One entry per (line, x value): n, parameter counts, stats of test/train error (fractions)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(_group_key(r, by) + (r[x],), []).append(r)
    out = []
    for key, members in sorted(groups.items(), key=lambda kv: tuple(_sortable(v) for v in kv[0])):
        ok = [m for m in members if m["status"] == "ok"]
        not_run = sum(m["status"] == "not run" for m in members)
        entry = {**dict(zip(by, key[:-1])), x: key[-1], "n": len(ok), "not_ok": len(members) - len(ok) - not_run,
                 "not_run": not_run,
                 "params": members[0]["params"], "weights": members[0]["weights"],
                 "surviving": round(sum(m["surviving"] for m in members) / len(members)),
                 "density": sum(m["density"] for m in members) / len(members)}
        for name, metric in (("test_error", "final_test_accuracy"), ("train_error", "final_train_accuracy"),
                             ("train_error_clean", "final_train_accuracy_clean"),
                             ("early_stop_test_error", "early_stop_test_accuracy")):
            entry[name] = _stats([None if m.get(metric) is None else 1 - m[metric] for m in ok])
        entry["train_loss"] = _stats([m.get("final_train_loss") for m in ok])
        out.append(entry)
    return out


def _value(v: Any) -> str:
    """A swept value as text: numbers compactly ({:g}), anything else (an optimizer's name) as it is."""
    return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _sortable(v: Any) -> tuple:
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))


def interpolation_threshold(entries: list[dict[str, Any]], x: str, tolerance: float = INTERPOLATION_TOLERANCE) -> Any:
    """The smallest x whose mean training error is <= tolerance (entries of one line), or None."""
    for e in sorted(entries, key=lambda e: e[x]):
        if e["train_error"]["mean"] is not None and e["train_error"]["mean"] <= tolerance:
            return e[x]
    return None


def dip_and_peak(sparsity: list[float], accuracy: list[float | None],
                 min_rise: float = MIN_RISE) -> tuple[int | None, int | None]:
    """Indices (into the given lists) of the dip and the peak of an accuracy curve against sparsity: the peak
    is where accuracy rose most above its running minimum, the dip is that minimum; (None, None) when it
    never rises again by more than `min_rise` (a wiggle of one seed is not a second descent)."""
    pts = sorted((s, a, i) for i, (s, a) in enumerate(zip(sparsity, accuracy)) if a is not None)
    best, dip, peak = 0.0, None, None
    low = None  # the lowest point so far that the curve descended into (lower than the point before it)
    for j, (s, a, i) in enumerate(pts):
        if low is not None and a - low[1] > best:
            best, dip, peak = a - low[1], low[2], i
        if j > 0 and a < pts[j - 1][1] and (low is None or a < low[1]):
            low = (s, a, i)
    return (dip, peak) if best > min_rise else (None, None)


def _pct(stat: dict[str, Any], key: str = "mean") -> str:
    return "-" if stat[key] is None else f"{100 * stat[key]:.2f}"


def _pm(stat: dict[str, Any]) -> str:
    return "-" if stat["mean"] is None else f"{100 * stat['mean']:.2f} ± {100 * (stat['std'] or 0):.2f}"


# ---- the sweep figure: error against the swept setting --------------------------------------------------------


def sweep_figure(table: list[dict[str, Any]], x: str, by: list[str], out: Path, tolerance: float,
                 name: str = "sweep") -> Any:
    fig = Figure(figsize=(8.5, 5))
    ax = fig.subplots()
    lines = sorted({_group_key(e, by) for e in table}, key=lambda k: tuple(_sortable(v) for v in k))
    for i, key in enumerate(lines):
        pts = sorted((e for e in table if _group_key(e, by) == key), key=lambda e: e[x])
        color = f"C{i % 10}"
        for metric, style, what in (("test_error", "-", "test"), ("train_error", "--", "train")):
            shown = [e for e in pts if e[metric]["mean"] is not None]
            if not shown:
                continue
            xs = [e[x] for e in shown]
            mean = [100 * e[metric]["mean"] for e in shown]
            std = [100 * (e[metric]["std"] or 0) for e in shown]
            ax.plot(xs, mean, ls=style, marker="o" if what == "test" else "s", ms=4, color=color,
                    label=f"{what} error, {_label(by, key)}")
            ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], color=color,
                            alpha=0.15, lw=0)
        at = interpolation_threshold(pts, x, tolerance)
        if at is not None:
            ax.axvline(at, color=color, ls=":", lw=1.2, label=f"interpolation threshold, {_label(by, key)}: {_value(at)}")
    if x in LOG_SETTINGS:
        ax.set_xscale("log")
    ax.set_xlabel(x + (" (log scale)" if x in LOG_SETTINGS else ""))
    ax.set_ylabel("error (%) at the final step")
    ax.grid(True, alpha=0.3)
    if x != "density" and lines:  # parameter counts on a second axis, top (those of the first line)
        first = sorted((e for e in table if _group_key(e, by) == lines[0]), key=lambda e: e[x])
        if first and all(isinstance(e[x], (int, float)) for e in first):
            top = ax.secondary_xaxis("top")
            top.set_xticks([e[x] for e in first], [_short(e["params"]) for e in first], fontsize="x-small")
            top.set_xlabel("parameters", fontsize="small")
    ax.set_title("Test error (solid) and training error (dashed) at the final step; band: ± 1 std over seeds",
                 fontsize="medium")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="x-small")
    return _save(fig, out, name, "sweep")


def _short(n: int) -> str:
    return f"{n / 1e6:.2g}M" if n >= 1e6 else f"{n / 1e3:.3g}k" if n >= 1e3 else str(n)


# ---- sparse double descent: accuracy against sparsity ----------------------------------------------------------


def double_descent(table: list[dict[str, Any]], by: list[str]) -> list[dict[str, Any]]:
    """Per line (e.g. per retraining mode): dense, dip and peak test accuracy (mean over seeds) and where."""
    out = []
    for key in sorted({_group_key(e, by) for e in table}, key=lambda k: tuple(_sortable(v) for v in k)):
        pts = sorted((e for e in table if _group_key(e, by) == key), key=lambda e: -e["density"])
        acc = [None if e["test_error"]["mean"] is None else 1 - e["test_error"]["mean"] for e in pts]
        dip, peak = dip_and_peak([1 - e["density"] for e in pts], acc)
        dense = pts[0] if pts and pts[0]["density"] == 1.0 else None

        def at(i: int | None) -> dict[str, Any] | None:
            if i is None:
                return None
            return {"sparsity": 1 - pts[i]["density"], "test_accuracy": acc[i],
                    "test_accuracy_std": pts[i]["test_error"]["std"],
                    "train_accuracy": None if pts[i]["train_error"]["mean"] is None else 1 - pts[i]["train_error"]["mean"],
                    "surviving": pts[i]["surviving"]}
        out.append({**dict(zip(by, key)), "line": _label(by, key),
                    "dense_test_accuracy": None if dense is None or dense["test_error"]["mean"] is None
                    else 1 - dense["test_error"]["mean"], "dip": at(dip), "peak": at(peak),
                    "sparsest": at(len(pts) - 1) if pts else None})
    return out


def sparsity_figure(table: list[dict[str, Any]], by: list[str], dd: list[dict[str, Any]], out: Path) -> Any:
    fig = Figure(figsize=(8.5, 5))
    ax = fig.subplots()
    lines = [d["line"] for d in dd]
    for i, (key, found) in enumerate(zip(sorted({_group_key(e, by) for e in table},
                                                key=lambda k: tuple(_sortable(v) for v in k)), dd)):
        pts = sorted((e for e in table if _group_key(e, by) == key), key=lambda e: -e["density"])
        color = f"C{i % 10}"
        for metric, style, what in (("test_error", "-", "test"), ("train_error", "--", "train")):
            shown = [e for e in pts if e[metric]["mean"] is not None]
            xs = [100 * e["density"] for e in shown]
            acc = [100 * (1 - e[metric]["mean"]) for e in shown]
            std = [100 * (e[metric]["std"] or 0) for e in shown]
            ax.plot(xs, acc, ls=style, marker="o" if what == "test" else None, ms=3.5, color=color,
                    label=f"{what} accuracy, {lines[i]}")
            if what == "test":
                ax.fill_between(xs, [a - s for a, s in zip(acc, std)], [a + s for a, s in zip(acc, std)],
                                color=color, alpha=0.15, lw=0)
        for mark, marker in (("dip", "v"), ("peak", "^")):
            if found[mark] is not None:
                ax.scatter([100 * (1 - found[mark]["sparsity"])], [100 * found[mark]["test_accuracy"]], marker=marker,
                           s=90, color=color, edgecolor="black", zorder=5,
                           label=f"{mark}, {lines[i]}: {100 * found[mark]['test_accuracy']:.1f}% at "
                                 f"{100 * found[mark]['sparsity']:.1f}% sparsity")
    _density_axis(ax, [100 * e["density"] for e in table])
    ax.set_ylabel("accuracy (%) at the final step")
    ax.set_title("Test accuracy (clean labels, solid, ± 1 std) and training accuracy (trained labels, dashed)\n"
                 "against weights remaining", fontsize="medium")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="x-small")
    return _save(fig, out, "sparse_double_descent", "sweep")


# ---- how small can a ticket be ----------------------------------------------------------------------------------


def smallest_tickets(table: list[dict[str, Any]], by: list[str]) -> list[dict[str, Any]]:
    """Per line (e.g. per starting width): the sparsest level whose mean early-stop test accuracy matches the
    line's dense one (ticketlab.matching: mean - max(std, 0.2 pp)), with its surviving weight count."""
    out = []
    for key in sorted({_group_key(e, by) for e in table}, key=lambda k: tuple(_sortable(v) for v in k)):
        pts = sorted((e for e in table if _group_key(e, by) == key), key=lambda e: -e["density"])
        if not pts or pts[0]["density"] != 1.0 or pts[0]["early_stop_test_error"]["mean"] is None:
            continue
        d = pts[0]["early_stop_test_error"]
        bar = matching.lowest_matching(1 - d["mean"], d["std"])  # the std of errors is the std of accuracies
        matched = [e for e in pts if e["early_stop_test_error"]["mean"] is not None
                   and matching.matches(1 - e["early_stop_test_error"]["mean"], 1 - d["mean"], d["std"])]
        best = min(matched, key=lambda e: e["density"])
        out.append({**dict(zip(by, key)), "line": _label(by, key), "dense_weights": pts[0]["weights"],
                    "dense_params": pts[0]["params"], "dense_accuracy": 1 - d["mean"], "bar": bar,
                    "density": best["density"], "surviving": best["surviving"],
                    "accuracy": 1 - best["early_stop_test_error"]["mean"],
                    "sparsest_tried": pts[-1]["density"]})
    return out


def tickets_figure(tickets: list[dict[str, Any]], x: str, out: Path) -> Any:
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    ax.plot([t["dense_weights"] for t in tickets], [t["surviving"] for t in tickets], marker="o", label="smallest "
            "matching ticket")
    ax.plot([t["dense_weights"] for t in tickets], [t["dense_weights"] for t in tickets], ls="--", color="0.5",
            label="dense (starting) network")
    for t in tickets:
        ax.annotate(t["line"], (t["dense_weights"], t["surviving"]),
                    fontsize="x-small", xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("prunable weights of the starting network (log)")
    ax.set_ylabel("surviving weights of the smallest matching ticket (log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("How small can a ticket be, from how large a start?", fontsize="medium")
    return _save(fig, out, "smallest_ticket", "sweep")


# ---- the report --------------------------------------------------------------------------------------------------


def choose_x(sweep: Any) -> str:
    """Lottery sweeps: density; else model.width if swept, else the first setting with several values."""
    if sweep.levels > 0:
        return "density"
    if "model.width" in sweep.axes:
        return "model.width"
    return next((k for k, v in sweep.axes.items() if len(v) > 1), next(iter(sweep.axes)))


def write_report(sweep: Any, out_dir: str | Path, title: str = "Sweep", tolerance: float = INTERPOLATION_TOLERANCE,
                 x: str | None = None, command: str | None = None) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x = x or choose_x(sweep)
    by = [k for k in sweep.axes if k != x]
    table = summarize(sweep.rows, x, by)
    files: dict[str, Path] = {}
    drawn = sweep_figure(table, x, by, out, tolerance)
    files |= {"png": drawn.png, "svg": drawn.svg}
    thresholds = {_label(by, k): interpolation_threshold([e for e in table if _group_key(e, by) == k], x, tolerance)
                  for k in sorted({_group_key(e, by) for e in table}, key=lambda k: tuple(_sortable(v) for v in k))}
    head = [*by, x, "params", "weights", "surviving", "n", "test error % (mean ± std)", "train error % (mean ± std)",
            "train error, clean labels %", "early-stop test error %"]
    body = [[*(str(e[k]) for k in by), f"{e[x]:.4g}" if isinstance(e[x], float) else str(e[x]), str(e["params"]),
             str(e["weights"]), str(e["surviving"]), _count(e),
             _pm(e["test_error"]), _pm(e["train_error"]), _pct(e["train_error_clean"]),
             _pct(e["early_stop_test_error"])] for e in table]
    seeds = len({r["seed"] for r in sweep.rows})
    ran = [("list", [f"Swept: {', '.join(f'{k} = {v}' for k, v in sweep.axes.items())}; {seeds} seed(s)"
                     + (f"; {sweep.levels} IMP levels" if sweep.levels else "; dense runs"),
                     "Errors are 1 - accuracy at the final step: test error on the clean test labels, training error "
                     "on the labels the network was trained on."])]
    summary: list[tuple] = [("p", f"Interpolation threshold (smallest {x} whose mean training error is at most "
                                  f"{100 * tolerance:g}%):"),
                            ("list", [f"{line}: {'not reached' if at is None else _value(at)}"
                                      for line, at in thresholds.items()])]
    best = []
    for key in sorted({_group_key(e, by) for e in table}, key=lambda k: tuple(_sortable(v) for v in k)):
        shown = [e for e in table if _group_key(e, by) == key and e["test_error"]["mean"] is not None]
        if shown:
            low = min(shown, key=lambda e: e["test_error"]["mean"])
            best.append(f"{_label(by, key)}: lowest test error at {x} = {_value(low[x])} ({_pm(low['test_error'])}%, "
                        f"n = {low['n']})")
    summary += [("p", "Lowest mean test error (a description of the means, not a test):"), ("list", best)]
    tables: list[tuple] = [("h3", f"By {x}"), ("table", head, body)]
    more: list[tuple] = []
    notes = list(getattr(sweep, "notes", []) or [])
    warnings: list[tuple] = []
    if notes:
        warnings = [("h2", "Not run"), ("bad", "Jobs built on a collapsed or diverged job were not run (rows with "
                                               "status \"not run\", counted apart in the table's n):"),
                    ("list", notes)]
    extra: dict[str, Any] = {"thresholds": thresholds}
    if sweep.levels > 0:
        dd = double_descent(table, by)
        sdd = sparsity_figure(table, by, dd, out)
        files |= {"sdd_png": sdd.png, "sdd_svg": sdd.svg}
        summary += [("p", "Sparse double descent (dip: the lowest point the curve descended into before its largest "
                          f"rise; peak: the top of that rise, more than {100 * MIN_RISE:g} pp above the dip):"),
                    ("list", [f"{d['line']}: dip {_at(d['dip'])}, peak {_at(d['peak'])}" for d in dd])]
        tables += [("h3", "Sparse double descent"),
                   ("table", ["line", "dense test acc %", "dip: test acc % (sparsity %)",
                              "peak: test acc % (sparsity %)", "sparsest: test acc % (sparsity %)"],
                    [[d["line"], _p(d["dense_test_accuracy"]), _at(d["dip"]), _at(d["peak"]), _at(d["sparsest"])]
                     for d in dd])]
        more.append(("figure", sdd, "Test accuracy (solid, band ± 1 std over seeds) and training accuracy (dashed) "
                                    "against weights remaining, with the dip and the peak marked."))
        tickets = smallest_tickets(table, by)
        extra |= {"double_descent": dd, "smallest_tickets": tickets}
        if tickets:
            rule = ("Matching (ticketlab.matching): mean early-stop test accuracy at least the same line's dense mean "
                    f"minus max(std over seeds, {100 * matching.TOLERANCE:g} pp), n = {seeds} seed(s) a level.")
            summary += [("p", "Smallest matching ticket. " + rule),
                        ("list", [f"{t['line']}: {t['surviving']} of {t['dense_weights']} weights "
                                  f"({100 * t['density']:.3g}%), {_p(t['accuracy'])}% against dense "
                                  f"{_p(t['dense_accuracy'])}% (n = {seeds})" for t in tickets])]
            tables += [("h3", "Smallest matching ticket"), ("p", rule),
                       ("table", ["line", "dense weights", "dense acc %", "smallest matching: weights left",
                                  "density %", "acc %", "sparsest tried %"],
                        [[t["line"], str(t["dense_weights"]), _p(t["dense_accuracy"]), str(t["surviving"]),
                          f"{100 * t['density']:.3g}", _p(t["accuracy"]), f"{100 * t['sparsest_tried']:.3g}"]
                         for t in tickets])]
            if len(tickets) > 1 and "model.width" in by:
                tf = tickets_figure(tickets, "model.width", out)
                files |= {"tickets_png": tf.png, "tickets_svg": tf.svg}
                more.append(("figure", tf, "Surviving weights of the smallest matching ticket against the starting "
                                           "network's prunable weights (log-log); dashed: the dense network."))
    base = getattr(sweep, "base", None)
    settings = [(k, str(v)) for k, v in hparams(base.to_dict())] if base is not None else None
    page = Page(title, ran, ("figure", drawn, f"Test error (solid) and training error (dashed) at the final step "
                             f"against {x}; band: ± 1 std over seeds; dotted: the interpolation threshold."),
                summary, tables, configuration([r["job_dir"] for r in sweep.rows if r.get("job_dir")], settings),
                command or "ticketlab sweep ... (the command line was not recorded)", warnings, more)
    files |= write_page(page, out, ("sweep", "report"))
    files["csv"] = out / "sweep.csv"
    with files["csv"].open("w", newline="") as f:
        csv.writer(f).writerows([head] + body)
    files["rows_csv"] = out / "rows.csv"
    keys = list(dict.fromkeys(k for r in sweep.rows for k in r))
    with files["rows_csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(sweep.rows)
    files["json"] = out / "sweep.json"
    files["json"].write_text(json.dumps({"axes": sweep.axes, "x": x, "levels": sweep.levels, "tolerance": tolerance,
                                         "table": table, "notes": notes, **extra}, indent=2, default=str) + "\n")
    return files


def _count(e: dict[str, Any]) -> str:
    extra = [f"+{e['not_ok']} not ok"] if e["not_ok"] else []
    extra += [f"+{e['not_run']} not run"] if e.get("not_run") else []
    return str(e["n"]) + (f" ({', '.join(extra)})" if extra else "")


def _p(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def _at(p: dict[str, Any] | None) -> str:
    return "-" if p is None else f"{_p(p['test_accuracy'])} ({100 * p['sparsity']:.1f})"
