"""How far masks share weights: intersection over union, per layer and overall.

Pairs compared: the tickets of different replicates at one level, a ticket and the next level's ticket
(same replicate), and a ticket and each of its controls' masks (same replicate and level).
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path
from typing import Any

from ..masks import Mask
from ..store import MASK


def iou(a: Mask, b: Mask) -> dict[str, float]:
    """Per layer and '_overall': |a & b| / |a | b| (1.0 for two empty masks)."""
    out, inter_all, union_all = {}, 0, 0
    for k in a.keys():
        inter, union = int((a[k] & b[k]).sum()), int((a[k] | b[k]).sum())
        out[k] = inter / union if union else 1.0
        inter_all, union_all = inter_all + inter, union_all + union
    out["_overall"] = inter_all / union_all if union_all else 1.0
    return out


def _mean_layers(pairs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.fmean(p[k] for p in pairs) for k in pairs[0]}


def overlap_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows {experiment, level, comparison, pairs, iou: {layer: mean IoU, '_overall': ...}}."""
    masks = {(r["experiment"], r["seed"], r["variant"], r["index"], r["level"]):
             Mask.load(Path(r["job_dir"]) / MASK) for r in rows}
    tickets = {k: m for k, m in masks.items() if k[2] == "ticket"}
    table = []
    for (exp, level) in sorted({(k[0], k[4]) for k in tickets}):
        same_level = [m for k, m in sorted(tickets.items()) if k[0] == exp and k[4] == level]
        groups = {"ticket vs ticket (other seed)": [iou(a, b) for a, b in itertools.combinations(same_level, 2)]}
        nxt = [(m, tickets.get((k[0], k[1], k[2], k[3], level + 1))) for k, m in tickets.items()
               if k[0] == exp and k[4] == level]
        groups["ticket vs next level's ticket"] = [iou(a, b) for a, b in nxt if b is not None]
        for variant in sorted({k[2] for k in masks if k[2] != "ticket" and k[0] == exp and k[4] == level}):
            pairs = [iou(tickets[ticket], m) for k, m in masks.items()
                     if k[0] == exp and k[4] == level and k[2] == variant
                     and (ticket := (exp, k[1], "ticket", 0, level)) in tickets]
            groups[f"ticket vs {variant}"] = pairs
        for comparison, pairs in groups.items():
            if pairs:
                table.append({"experiment": exp, "level": level, "comparison": comparison, "pairs": len(pairs),
                              "iou": _mean_layers(pairs)})
    return table


def expected_random_iou(density: float) -> float:
    """IoU of two independent random masks of this density: d^2 / (2d - d^2)."""
    return density / (2 - density) if density > 0 else 1.0

