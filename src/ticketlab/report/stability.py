"""The instability analysis in a report: stored stability.json files -> a table and two figures
(error along the interpolation path; test barrier vs the step where the copies split)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

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
