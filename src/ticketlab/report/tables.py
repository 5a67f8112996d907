"""Text tables of a study's results, as `ticketlab lottery`, `train` and `stability` print them and as the
experiment kinds' `table` gives them (experiments/study.py, stability_sweep.py)."""

from __future__ import annotations

from typing import Any


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def align(rows: list[tuple[str, ...]]) -> str:
    """Right-aligned columns, two spaces apart; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)


def level_table(levels: list[dict[str, Any]]) -> str:
    """One replicate's levels (summaries)."""
    rows = [("level", "% weights left", "early-stop step", "test acc @ early stop %", "final test acc %")]
    for s in levels:
        if s.get("status") == "diverged":  # no accuracy to show: where it stopped instead
            rows.append((str(s["level"]), f"{100 * s['density']:.1f}", f"diverged at step {s['diverged_at_step']}",
                         "-", "-"))
            continue
        rows.append((str(s["level"]), f"{100 * s['density']:.1f}", str(s["early_stop_step"] if s["early_stop_step"]
                     is not None else "-"), pct(s["early_stop_test_accuracy"]), pct(s["final_test_accuracy"])))
    return align(rows)


def study_table(table: list[dict[str, Any]]) -> str:
    """The aggregated rows of several replicates and controls (report.aggregate)."""
    rows = [("level", "% weights left", "variant", "n", "early-stop step", "test acc @ early stop % [min, max]",
             "final test acc %", "matching")]
    for e in table:
        es, acc, fin = e["early_stop_step"], e["early_stop_test_accuracy"], e["final_test_accuracy"]
        verdict = {True: "yes", False: "no", None: "-"}[e["matching"]]
        n = f"{e['n']} (+{e['diverged']} diverged)" if e.get("diverged") else str(e["n"])
        rows.append((str(e["level"]), f"{100 * e['density']:.1f}", e["variant"], n,
                     "-" if es["mean"] is None else f"{es['mean']:.0f}",
                     f"{pct(acc['mean'])} [{pct(acc['min'])}, {pct(acc['max'])}]", pct(fin["mean"]), verdict))
    return align(rows)


def stability_table(results: list[dict[str, Any]]) -> str:
    """One row per (seed, level, k) of a stability sweep."""
    rows = [("seed", "level", "% weights left", "k", "test barrier %", "train barrier %", "stable",
             "copies' final test acc %")]
    rows += [(str(r["seed"]), str(r["level"]), f"{100 * r['density']:.1f}", str(r["step"]), pct(r["test_barrier"]),
              pct(r["train_barrier"]), "yes" if r["stable"] else "no",
              ", ".join(pct(a) for a in r["copy_final_test_accuracy"])) for r in results]
    return align(rows)
