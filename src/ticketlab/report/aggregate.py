"""From stored runs to tables: one row per job, then mean / min / max / std per (variant, level).

Reads only the run store (summary.json, metrics.json, config.json); never trains, never keeps state.
A variant is 'ticket' for the IMP levels themselves, or a control's variant ('reinit', 'noise_2', ...).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .. import store
from ..matching import matches
from ..errors import TicketlabError

METRICS = ("early_stop_test_accuracy", "early_stop_step", "final_test_accuracy")
OK, DIVERGED = "ok", "diverged"  # a row's status; diverged: training stopped on a loss or weights not finite


def healthy(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of jobs that trained to the end: what means, figures and overlaps are made of."""
    return [r for r in rows if r.get("status", OK) == OK]


def experiment_dirs(paths: list[str | Path]) -> list[tuple[Path, set[int] | None]]:
    """Each argument is an experiment folder (`lottery_<hash>`) or one of its `seed_<s>` folders."""
    out: dict[Path, set[int] | None] = {}
    for raw in paths:
        p = Path(raw)
        if store.is_experiment(p):
            out[p] = None
        elif store.seed_of(p) is not None and store.is_experiment(p.parent):
            seeds = out.get(p.parent, set())
            if seeds is not None:
                out[p.parent] = seeds | {store.seed_of(p)}
        else:
            raise TicketlabError(f"{p} is not a ticketlab run folder (no config.json in it or its parent)")
    return list(out.items())


def collect(paths: list[str | Path], allow_empty: bool = False,
            unread: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per finished job: experiment, seed, variant, level, index, density, metrics, its folder.
    `unread` receives one line per level or control that could not be read (store.unreadable_jobs)."""
    rows = []
    for exp, seeds in experiment_dirs(paths):
        for seed_dir in store.seed_dirs(exp):
            seed = store.seed_of(seed_dir)
            if seeds is not None and seed not in seeds:
                continue
            if unread is not None:
                unread += store.unreadable_jobs(seed_dir)
            for summary_file in store.job_summaries(seed_dir):
                s = store.read_json(summary_file)  # a key it lacks: one line naming the file
                rows.append({"experiment": exp.name, "seed": seed, "variant": s.get("variant", "ticket"),
                             "index": s.get("control_index", 0), "level": s["level"], "density": s["density"],
                             "layer_density": s["layer_density"], "job_dir": str(summary_file.parent),
                             "checks": s["checks"], "status": s.get("status", OK),  # none before statuses: ok
                             "diverged_at_step": s.get("diverged_at_step"), **{m: s[m] for m in METRICS}})
    if not rows and not allow_empty:
        raise TicketlabError(f"no finished jobs found in {', '.join(str(p) for p in paths)}")
    return rows


def _stats(values: list[float]) -> dict[str, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "min": None, "max": None, "std": None}
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (experiment, variant, level) with n jobs and the statistics of every metric, plus the
    verdict: *matching* (ticketlab.matching) when the mean test accuracy at early stop is within the dense
    spread (the dense replicates' std, at least matching.TOLERANCE) of the dense mean, or above it.

    Diverged jobs are counted apart and left out of everything else: `n` and `seeds` are the jobs that
    trained to the end, `diverged` and `diverged_seeds` the others."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["experiment"], r["variant"], r["level"]), []).append(r)
    table = []
    def order(kv: tuple) -> tuple:  # by experiment and level, the ticket before its controls
        (exp, variant, level), _ = kv
        return exp, level, variant != "ticket", variant

    for (exp, variant, level), everyone in sorted(groups.items(), key=order):
        members = healthy(everyone)
        diverged = [m for m in everyone if m.get("status") == DIVERGED]
        entry = {"experiment": exp, "variant": variant, "level": level, "n": len(members),
                 "diverged": len(diverged), "density": statistics.fmean(m["density"] for m in everyone),
                 "seeds": sorted({m["seed"] for m in members}),
                 "diverged_seeds": sorted({m["seed"] for m in diverged})}
        for metric in METRICS:
            entry[metric] = _stats([m[metric] for m in members])
        table.append(entry)
    for entry in table:
        dense = next((e for e in table if e["experiment"] == entry["experiment"] and e["variant"] == "ticket"
                      and e["level"] == 0), None)
        entry["matching"] = _matching(entry, dense)
    return table


def _matching(entry: dict[str, Any], dense: dict[str, Any] | None) -> bool | None:
    if dense is None:
        return None
    d = dense["early_stop_test_accuracy"]
    return matches(entry["early_stop_test_accuracy"]["mean"], d["mean"], d["std"])


def curves(rows: list[dict[str, Any]], variant: str, level: int,
           experiment: str | None = None) -> list[list[dict[str, float]]]:
    """The stored evaluations (metrics.json) of every job of (variant, level) [of one experiment] that trained
    to the end (a diverged job's curve stops short)."""
    return [store.read_json(Path(r["job_dir"]) / store.METRICS) for r in healthy(rows)
            if r["variant"] == variant and r["level"] == level and experiment in (None, r["experiment"])]
