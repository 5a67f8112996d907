"""The strong-ticket report (`ticketlab strong`): test accuracy of the learned subnetwork against k (the
fraction of weights kept), mean and range over seeds, as a table (Markdown, CSV, JSON) and a figure."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per k: seeds, density, and mean / min / max of final and early-stopping test accuracy (or loss)."""
    out = []
    for k in sorted({r["k"] for r in rows}):
        mine = [r for r in rows if r["k"] == k and r["status"] == "ok"]
        entry: dict[str, Any] = {"k": k, "n": len(mine), "density": statistics.fmean(r["density"] for r in mine)
                                 if mine else None}
        for key in ("final_test_accuracy", "early_stop_test_accuracy", "final_test_loss"):
            vals = [r[key] for r in mine if r.get(key) is not None]
            entry[key] = ({"mean": statistics.fmean(vals), "min": min(vals), "max": max(vals)} if vals else None)
        out.append(entry)
    return out


def table_rows(table: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    head = ["k (kept)", "density %", "n", "final test acc % [min, max]", "early-stop test acc %", "final test loss"]
    body = []
    for e in table:
        acc, es, loss = e["final_test_accuracy"], e["early_stop_test_accuracy"], e["final_test_loss"]
        body.append([f"{e['k']:g}", _pct(e["density"]), str(e["n"]),
                     "-" if acc is None else f"{_pct(acc['mean'])} [{_pct(acc['min'])}, {_pct(acc['max'])}]",
                     "-" if es is None else _pct(es["mean"]), "-" if loss is None else f"{loss['mean']:.4g}"])
    return head, body


def write_report(rows: list[dict[str, Any]], out_dir: str | Path, title: str, chance: float | None) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = summarize(rows)
    head, body = table_rows(table)
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    pts = [e for e in table if e["final_test_accuracy"] is not None]
    regression = not pts
    if regression:  # a regression task: its loss is the result
        pts = [e for e in table if e["final_test_loss"] is not None]
        key, label, scale = "final_test_loss", "test loss (mse)", 1
    else:
        key, label, scale = "final_test_accuracy", "test accuracy (%)", 100
    ks = [e["k"] for e in pts]
    mean = [scale * e[key]["mean"] for e in pts]
    ax.errorbar(ks, mean, yerr=[[m - scale * e[key]["min"] for m, e in zip(mean, pts)],
                                [scale * e[key]["max"] - m for m, e in zip(mean, pts)]], marker="o", capsize=3)
    if chance is not None and not regression:
        ax.axhline(100 * chance, color="grey", ls=":", label="chance")
        ax.legend()
    ax.set_xlabel("k: fraction of weights kept per layer")
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize="medium")
    files = {"md": out / "strong.md", "csv": out / "table.csv", "json": out / "table.json",
             "png": out / "accuracy_vs_k.png"}
    fig.savefig(files["png"], dpi=130, bbox_inches="tight")
    md = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(r) + " |" for r in body] + ["", f"![accuracy vs k]({files['png'].name})", ""]
    files["md"].write_text("\n".join(md) + "\n")
    with files["csv"].open("w", newline="") as f:
        csv.writer(f).writerows([head] + body)
    files["json"].write_text(json.dumps({"table": table, "rows": rows}, indent=2, default=str) + "\n")
    return files
