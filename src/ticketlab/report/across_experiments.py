"""Several experiments of one study report (`ticketlab report` given several experiment folders) on one
figure, e.g. one per retraining mode (Renda et al.'s comparison): the ticket's test accuracy at early stop vs
weights remaining, each experiment labelled by the settings that differ between them. (Not the report of
`ticketlab compare`: that is report.methods.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ..store import read_config
from .figures import Drawn, _density_axis, _err, _save, _spread_text


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def labels(exp_dirs: dict[str, Path]) -> dict[str, str]:
    """Each experiment named by the hyper-parameters whose values differ between the experiments."""
    flat = {name: _flatten(read_config(d)["config"]) for name, d in exp_dirs.items()}
    keys = sorted({k for f in flat.values() for k in f})
    differ = [k for k in keys if len({str(f.get(k)) for f in flat.values()}) > 1 and k != "lottery.levels"]
    return {name: ", ".join(f"{k.split('.')[-1]}={f.get(k)}" for k in differ) or name for name, f in flat.items()}


def accuracy_by_experiment(table: list[dict[str, Any]], exp_dirs: dict[str, Path], out_dir: Path,
                           spread: str = "minmax") -> Drawn | None:
    """None when there is only one experiment to show."""
    names = [n for n in exp_dirs if any(e["experiment"] == n and e["variant"] == "ticket" for e in table)]
    if len(names) < 2:
        return None
    label = labels({n: exp_dirs[n] for n in names})
    fig = Figure(figsize=(8, 4.6))
    ax = fig.subplots()
    densities = []
    for i, name in enumerate(names):
        pts = sorted((e for e in table if e["experiment"] == name and e["variant"] == "ticket"
                      and e["early_stop_test_accuracy"]["mean"] is not None), key=lambda e: -e["density"])
        densities += [100 * e["density"] for e in pts]
        err = list(zip(*[_err(e["early_stop_test_accuracy"], spread, 100) for e in pts]))
        ax.errorbar([100 * e["density"] for e in pts], [100 * e["early_stop_test_accuracy"]["mean"] for e in pts],
                    yerr=err, marker="o", ms=4, capsize=3, color=f"C{i % 10}", label=label[name])
    _density_axis(ax, densities)
    ax.set_ylabel("test accuracy at early stop (%)")
    ax.set_title(f"Tickets of each experiment (error bars: {_spread_text(spread)})", fontsize="medium")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return _save(fig, out_dir, "accuracy_by_experiment", "all")
