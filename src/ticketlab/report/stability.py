"""The instability analysis in a report: stored stability.json files -> a table and two figures
(error along the interpolation path; test barrier vs the step where the copies split)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .. import matching
from ..store import stability_files
from .figures import Drawn, _save


def stability_results(exp_dir: Path) -> list[dict[str, Any]]:
    """Every finished stability analysis of an experiment (each records its seed and settings)."""
    out = [json.loads(f.read_text()) for f in stability_files(exp_dir)]
    return sorted(out, key=lambda r: (r["level"], r["step"], r["seed"], r["points"], r["threshold"]))


def table_rows(results: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    head = ["level", "% weights left", "split step k", "seed", "test barrier %", "train barrier %", "stable"]
    rows = [[str(r["level"]), f"{100 * r['density']:.1f}", str(r["step"]), str(r["seed"]),
             f"{100 * r['test_barrier']:.2f}", f"{100 * r['train_barrier']:.2f}",
             f"{'yes' if r['stable'] else 'no'} (< {100 * r['threshold']:g}%)"] for r in results]
    return head, rows


def path_figure(results: list[dict[str, Any]], out_dir: Path, experiment: str) -> Drawn:
    """Test error (%) along the linear path between the two copies, one line per (level, k, seed)."""
    fig = Figure(figsize=(8, 4.6))
    ax = fig.subplots()
    for i, r in enumerate(results):
        ax.plot(r["alphas"], [100 * e for e in r["test_error"]], color=f"C{i % 10}", lw=1.4,
                label=f"level {r['level']} ({100 * r['density']:.1f}% left), k={r['step']}, seed {r['seed']}")
    return _finish(fig, ax, "interpolation α (0: copy 0, 1: copy 1)", "test error (%)",
                   "Error along the linear path between two copies trained from step k", out_dir, "stability_path",
                   experiment)


def barrier_figure(results: list[dict[str, Any]], out_dir: Path, experiment: str) -> Drawn:
    """Test barrier (%) vs split step k, one line per level (mean over seeds, min-max bars)."""
    fig = Figure(figsize=(8, 4.6))
    ax = fig.subplots()
    for i, level in enumerate(sorted({r["level"] for r in results})):
        steps = sorted({r["step"] for r in results if r["level"] == level})
        values = [[100 * r["test_barrier"] for r in results if r["level"] == level and r["step"] == k]
                  for k in steps]
        means = [statistics.fmean(v) for v in values]
        err = [[m - min(v) for m, v in zip(means, values)], [max(v) - m for m, v in zip(means, values)]]
        x = [max(k, 0.5) for k in steps]  # k = 0 drawn at 0.5 on the log axis
        density = next(r["density"] for r in results if r["level"] == level)
        ax.errorbar(x, means, yerr=err, marker="o", capsize=3, color=f"C{i % 10}",
                    label=f"level {level} ({100 * density:.1f}% left)")
    threshold = 100 * results[0]["threshold"]
    ax.axhline(threshold, color="0.3", ls="--", lw=1, label=f"stability threshold ({threshold:g}%)")
    ax.set_xscale("log")
    return _finish(fig, ax, "split step k (log scale; k = 0 drawn at 0.5)", "test error barrier (%)",
                   "Instability vs the step where the copies split (bars: min to max over seeds)", out_dir,
                   "stability_barrier", experiment)


def _finish(fig: Figure, ax: Any, xlabel: str, ylabel: str, title: str, out_dir: Path, name: str,
            experiment: str) -> Drawn:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n{experiment}", fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return _save(fig, out_dir, name, experiment)


# ---- The sweep over k and levels (Frankle et al. 2020, section 5) -------------------------------------------


def sweep_figure(rows: list[dict[str, Any]], dense: dict[str, Any] | None, threshold: float, out_dir: Path,
                 experiment: str) -> Drawn:
    """Left: test barrier vs the rewind/split step k, one line per density (level). Right: final test
    accuracy of the subnetwork trained from k vs density, one line per k, with the dense accuracy and the
    matching band. Filled markers: stable (left) or matching (right)."""
    fig = Figure(figsize=(13, 4.8))
    left, right = fig.subplots(1, 2)
    levels = sorted({r["level"] for r in rows})
    steps = sorted({r["step"] for r in rows})
    for i, level in enumerate(levels):
        mine = sorted((r for r in rows if r["level"] == level), key=lambda r: r["step"])
        x = [max(r["step"], 0.5) for r in mine]
        y = [100 * r["test_barrier"] for r in mine]
        err = [[100 * (r["test_barrier"] - r["test_barrier_min"]) for r in mine],
               [100 * (r["test_barrier_max"] - r["test_barrier"]) for r in mine]]
        color = f"C{i % 10}"
        left.errorbar(x, y, yerr=err, color=color, capsize=3, lw=1.4,
                      label=f"{100 * mine[0]['density']:.1f}% left (level {level})")
        for xi, yi, r in zip(x, y, mine):
            left.plot(xi, yi, "o", color=color, mfc=color if r["stable"] else "white")
    left.axhline(100 * threshold, color="0.3", ls="--", lw=1, label=f"stable below {100 * threshold:g}%")
    left.set_xscale("log")
    left.set_xlabel("rewind / split step k (log; k = 0 drawn at 0.5)")
    left.set_ylabel("test error barrier (%)")
    left.set_title("Instability of IMP subnetworks rewound to k", fontsize="medium")
    left.grid(True, alpha=0.3)
    left.legend(fontsize="small")
    with_acc = [r for r in rows if r["test_accuracy"] is not None]
    for i, k in enumerate(steps):
        mine = sorted((r for r in with_acc if r["step"] == k), key=lambda r: -r["density"])
        if not mine:
            continue
        color = f"C{i % 10}"
        x = [100 * r["density"] for r in mine]
        y = [100 * r["test_accuracy"] for r in mine]
        right.plot(x, y, color=color, lw=1.4, label=f"k = {k}")
        for xi, yi, r in zip(x, y, mine):
            right.plot(xi, yi, "o", color=color, mfc=color if r["matching"] else "white")
    if dense is not None:
        right.axhline(100 * dense["mean"], color="0.2", lw=1, label="dense network")
        right.axhspan(100 * dense["matching_below"], 100 * dense["mean"], color="0.85", alpha=0.6,
                      label=f"matching (within max(1 std, {100 * matching.TOLERANCE:g} pp))")
    right.set_xscale("log")
    right.invert_xaxis()
    right.set_xlabel("weights left (%, log)")
    right.set_ylabel("final test accuracy (%)")
    right.set_title("Accuracy of the subnetwork trained from k", fontsize="medium")
    right.grid(True, alpha=0.3)
    if right.get_legend_handles_labels()[1]:  # no accuracy and no dense run (analyses only): no legend to draw
        right.legend(fontsize="small")
    fig.suptitle(f"Sparse stability sweep (filled: stable / matching)\n{experiment}", fontsize="medium")
    return _save(fig, out_dir, "stability_sweep", experiment)


def sweep_table(rows: list[dict[str, Any]], dense: dict[str, Any] | None) -> str:
    """The sweep as a Markdown table."""
    lines = ["| level | % weights left | k | seeds | test barrier % | stable | test acc % | matching |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = "" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}"
        match = "" if r["matching"] is None else ("yes" if r["matching"] else "no")
        lines.append(f"| {r['level']} | {100 * r['density']:.1f} | {r['step']} | {r['seeds']} | "
                     f"{100 * r['test_barrier']:.2f} | {'yes' if r['stable'] else 'no'} | {acc} | {match} |")
    if dense is not None:
        lines.append(f"\nDense: {100 * dense['mean']:.2f}% (n = {dense['n']}, std {100 * dense['std']:.2f} pp); "
                     f"matching: at least {100 * dense['matching_below']:.2f}%.")
    return "\n".join(lines) + "\n"
