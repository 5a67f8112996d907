"""Figures of a study, drawn from the stored rows / aggregated table only: each writes a PNG and an SVG.

Every function draws one figure per experiment found in its input and returns {experiment: Drawn(png, svg)}.
Files are named `<figure>-<experiment>.{png,svg}`. Accuracies and densities are shown in percent.
`spread` picks the error bars: "minmax" (min to max over the jobs, the LTH paper's convention) or "std".
Matplotlib's object API is used (no pyplot): no global state, PNGs rendered by Agg, nothing needs a display.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, NamedTuple

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, NullLocator

from ..errors import TicketlabError
from .aggregate import curves
from .overlap import expected_random_iou

SPREADS = ("minmax", "std")
CONTROL_ORDER = ("ticket", "reinit", "sign_reinit", "random_prune", "shuffle", "oneshot")
LABELS = {"ticket": "ticket (IMP)", "reinit": "random re-initialisation",
          "sign_reinit": "re-init, ticket's signs", "random_prune": "random pruning",
          "shuffle": "shuffled mask", "oneshot": "one-shot pruning"}
STYLE = {"ticket": ("C0", "o"), "reinit": ("C1", "s"), "sign_reinit": ("C2", "D"), "random_prune": ("C3", "^"),
         "shuffle": ("C4", "v"), "oneshot": ("C5", "P")}


class Drawn(NamedTuple):
    png: Path
    svg: Path


def variant_key(variant: str) -> tuple[int, float, str]:
    """Ticket first, then the controls in a fixed order, noise last by scale: same order in every figure."""
    if variant.startswith("noise_"):
        return (len(CONTROL_ORDER), float(variant[6:]), variant)
    return (CONTROL_ORDER.index(variant) if variant in CONTROL_ORDER else len(CONTROL_ORDER) + 1, 0.0, variant)


def variant_label(variant: str) -> str:
    return f"noise {variant[6:]}× init std" if variant.startswith("noise_") else LABELS.get(variant, variant)


def _style(variant: str, i: int) -> tuple[str, str]:
    return STYLE.get(variant, (f"C{6 + i % 4}", "X"))  # noise scales and unknown variants: the spare colours


def _check_spread(spread: str) -> None:
    if spread not in SPREADS:
        raise TicketlabError(f"unknown spread {spread!r}; choose one of: {', '.join(SPREADS)}")


def _err(stat: dict[str, float | None], spread: str, scale: float = 1.0) -> tuple[float, float]:
    """(below, above) the mean, for error bars and bands."""
    if stat["mean"] is None:
        return 0.0, 0.0
    if spread == "std":
        return stat["std"] * scale, stat["std"] * scale
    return (stat["mean"] - stat["min"]) * scale, (stat["max"] - stat["mean"]) * scale


def _spread_text(spread: str) -> str:
    return "min to max over runs" if spread == "minmax" else "mean ± 1 std over runs"


def _save(fig: Figure, out_dir: str | Path, name: str, experiment: str) -> Drawn:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = Drawn(out_dir / f"{name}-{experiment}.png", out_dir / f"{name}-{experiment}.svg")
    fig.savefig(drawn.png, dpi=130, bbox_inches="tight")
    fig.savefig(drawn.svg, bbox_inches="tight", metadata={"Date": None})  # no date: same runs, same file
    return drawn


def _by_experiment(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        out.setdefault(item["experiment"], []).append(item)
    return out


def _density_axis(ax: Any, densities_pct: list[float], pad: float = 1.08) -> None:
    """Log x-axis from 100% down (the LTH paper's convention), ticks at the levels' densities."""
    ticks = sorted(set(round(d, 2) for d in densities_pct), reverse=True)
    step = max(1, -(-len(ticks) // 10))  # at most ~10 labels, always keeping the dense 100%
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks[::step]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.set_xlim(max(ticks) * pad, min(ticks) / pad)  # inverted: sparser to the right
    ax.set_xlabel("weights remaining (%, log scale)")
    ax.grid(True, alpha=0.3)


def _finish(fig: Figure, ax: Any, title: str, experiment: str) -> None:
    ax.set_title(f"{title}\n{experiment}", fontsize="medium")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")  # outside: never hides data


def _metric_vs_density(table: list[dict[str, Any]], out_dir: Path, spread: str, metric: str, scale: float,
                       ylabel: str, title: str, name: str) -> dict[str, Drawn]:
    _check_spread(spread)
    drawn = {}
    for exp, entries in _by_experiment(table).items():
        fig = Figure(figsize=(8, 4.6))
        ax = fig.subplots()
        variants = sorted({e["variant"] for e in entries}, key=variant_key)
        ds = [max(e["density"], 1e-6) for e in entries]  # a log axis has no 0
        half = 0.02 * (math.log10(max(ds) / min(ds)) + 0.1)  # dodges span 4% of the axis (in decades)
        width = 2 * half / max(len(variants) - 1, 1)
        for i, variant in enumerate(variants):
            pts = sorted((e for e in entries if e["variant"] == variant and e[metric]["mean"] is not None),
                         key=lambda e: -e["density"])
            if not pts:
                continue
            dodge = 10 ** (width * (i - (len(variants) - 1) / 2))  # small offset so error bars don't hide each other
            x = [e["density"] * 100 * dodge for e in pts]
            y = [e[metric]["mean"] * scale for e in pts]
            err = list(zip(*[_err(e[metric], spread, scale) for e in pts]))
            color, marker = _style(variant, i)
            ax.errorbar(x, y, yerr=err, color=color, marker=marker, ms=5, capsize=3, lw=1.6 if i == 0 else 1.2,
                        label=variant_label(variant))
        dense = next((e for e in entries if e["variant"] == "ticket" and e["level"] == 0), None)
        if dense is not None and dense[metric]["mean"] is not None:
            mean, (lo, hi) = dense[metric]["mean"] * scale, _err(dense[metric], spread, scale)
            ax.axhline(mean, color="0.3", ls="--", lw=1, label="dense network (level 0), mean")
            ax.axhspan(mean - lo, mean + hi, color="0.5", alpha=0.12, lw=0, label=f"dense: {_spread_text(spread)}")
        _density_axis(ax, [e["density"] * 100 for e in entries], pad=10 ** half * 1.08)
        ax.set_ylabel(ylabel)
        _finish(fig, ax, f"{title} (error bars: {_spread_text(spread)})", exp)
        drawn[exp] = _save(fig, out_dir, name, exp)
    return drawn


def accuracy_vs_density(table: list[dict[str, Any]], out_dir: str | Path, spread: str = "minmax") -> dict[str, Drawn]:
    """Test accuracy at early stop (%) of the ticket and every control vs weights remaining."""
    return _metric_vs_density(table, Path(out_dir), spread, "early_stop_test_accuracy", 100.0,
                              "test accuracy at early stop (%)", "Test accuracy at early stop", "accuracy_vs_density")


def early_stop_vs_density(table: list[dict[str, Any]], out_dir: str | Path, spread: str = "minmax") -> dict[str, Drawn]:
    """Early-stop step (minimum validation loss) of the ticket and every control vs weights remaining."""
    return _metric_vs_density(table, Path(out_dir), spread, "early_stop_step", 1.0,
                              "early-stop step (training iterations)", "Early-stop iteration", "early_stop_vs_density")


def pick_levels(levels: list[int], most: int = 4) -> list[int]:
    """Up to `most` levels spread evenly from the first to the last (always both ends)."""
    levels = sorted(set(levels))
    if len(levels) <= most:
        return levels
    return sorted({levels[round(i * (len(levels) - 1) / (most - 1))] for i in range(most)})


def training_curves(rows: list[dict[str, Any]], out_dir: str | Path, spread: str = "minmax",
                    levels: list[int] | None = None, variant: str = "ticket") -> dict[str, Drawn]:
    """Test accuracy (%) over training steps of `variant` at chosen levels: mean line, band over replicates."""
    _check_spread(spread)
    drawn = {}
    for exp, exp_rows in _by_experiment(rows).items():
        mine = [r for r in exp_rows if r["variant"] == variant]
        present = {r["level"] for r in mine}
        chosen = [lvl for lvl in (levels or pick_levels(list(present))) if lvl in present]
        fig = Figure(figsize=(8, 4.6))
        ax = fig.subplots()
        for i, level in enumerate(chosen):
            runs = curves(mine, variant, level)  # given this experiment's rows only: curves() doesn't filter
            by_step: dict[int, list[float]] = {}
            for evals in runs:
                for e in evals:  # rows between sparse test evaluations (test_every) hold no test accuracy
                    if e["test_accuracy"] is not None:
                        by_step.setdefault(e["step"], []).append(e["test_accuracy"] * 100)
            steps = sorted(by_step)
            if not steps:
                continue
            stats = [_point_stats(by_step[s]) for s in steps]
            density = statistics.fmean(r["density"] for r in mine if r["level"] == level) * 100
            color = f"C{i}"
            ax.plot(steps, [s["mean"] for s in stats], color=color, lw=1.6,
                    label=f"{density:.2f}% remaining (level {level}, n={len(runs)})")
            lo_hi = [_err(s, spread) for s in stats]
            ax.fill_between(steps, [s["mean"] - e[0] for s, e in zip(stats, lo_hi)],
                            [s["mean"] + e[1] for s, e in zip(stats, lo_hi)], color=color, alpha=0.18, lw=0)
        ax.set_xlabel("training step (iteration)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
        _finish(fig, ax, f"Test accuracy during training, {variant_label(variant)} (band: {_spread_text(spread)})", exp)
        drawn[exp] = _save(fig, out_dir, "training_curves", exp)
    return drawn


def _point_stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def layer_density(rows: list[dict[str, Any]], out_dir: str | Path) -> dict[str, Drawn]:
    """Per-layer density (% remaining, log y) of the ticket at every level, mean over replicates."""
    drawn = {}
    for exp, exp_rows in _by_experiment(rows).items():
        tickets = [r for r in exp_rows if r["variant"] == "ticket"]
        levels = sorted({r["level"] for r in tickets})
        fig = Figure(figsize=(8, 4.6))
        ax = fig.subplots()
        layers = list(dict.fromkeys(k for r in tickets for k in r["layer_density"]))  # the model's order
        for i, layer in enumerate(layers):
            y = [statistics.fmean(r["layer_density"][layer] * 100 for r in tickets
                                  if r["level"] == lvl and layer in r["layer_density"]) for lvl in levels]
            ax.plot(levels, y, marker="o", ms=4, color=f"C{i % 10}", label=layer)
        overall = [statistics.fmean(r["density"] * 100 for r in tickets if r["level"] == lvl) for lvl in levels]
        ax.plot(levels, overall, ls="--", color="black", lw=1.2, label="all prunable weights")
        ax.set_yscale("log")
        for axis_set in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):  # plain numbers, not 9x10^1
            axis_set(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        ax.set_xticks(levels if len(levels) <= 21 else levels[::2])
        ax.set_xlabel("IMP level (pruning rounds)")
        ax.set_ylabel("weights remaining in the layer (%, log scale)")
        ax.grid(True, which="both", alpha=0.3)
        _finish(fig, ax, "Per-layer density of the ticket (mean over replicates)", exp)
        drawn[exp] = _save(fig, out_dir, "layer_density", exp)
    return drawn


def _same_mask(comparison: str) -> bool:
    """Controls that reuse the ticket's mask: IoU 1 by construction, a flat line that would hide others."""
    variant = comparison.removeprefix("ticket vs ")
    return variant in ("reinit", "sign_reinit") or variant.startswith("noise_")


def mask_overlap(overlap: list[dict[str, Any]], table: list[dict[str, Any]], out_dir: str | Path) -> dict[str, Drawn]:
    """Overall IoU of masks per comparison vs the ticket's weights remaining at that level, with the IoU
    two independent random masks of that density would have (dashed)."""
    density = {(e["experiment"], e["level"]): e["density"] for e in table if e["variant"] == "ticket"}
    drawn = {}
    for exp, entries in _by_experiment(overlap).items():
        fig = Figure(figsize=(8, 4.6))
        ax = fig.subplots()
        comparisons = [c for c in dict.fromkeys(e["comparison"] for e in entries) if not _same_mask(c)]
        for i, comparison in enumerate(comparisons):
            pts = sorted(((density[(exp, e["level"])] * 100, e["iou"]["_overall"]) for e in entries
                          if e["comparison"] == comparison and (exp, e["level"]) in density), reverse=True)
            if pts:  # distinct markers and dashes: several comparisons can lie on top of each other
                ax.plot(*zip(*pts), marker="osD^vP"[i % 6], ms=5, ls=("-", ":", "-.")[i % 3], lw=1.4,
                        color=f"C{i % 10}", label=comparison)
        ds = sorted({d for (e, _), d in density.items() if e == exp}, reverse=True)
        ax.plot([d * 100 for d in ds], [expected_random_iou(d) for d in ds], ls="--", color="0.35",
                label="two random masks of this density (expected)")
        _density_axis(ax, [d * 100 for d in ds])
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("mask overlap (IoU, all prunable weights)")
        _finish(fig, ax, "Mask overlap (intersection over union), mean over pairs\n"
                "(reinit, sign_reinit, noise not shown: they keep the ticket's mask, IoU = 1)", exp)
        drawn[exp] = _save(fig, out_dir, "mask_overlap", exp)
    return drawn
