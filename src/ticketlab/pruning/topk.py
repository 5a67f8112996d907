"""The one top-k of the project: exactly k survivors, ties broken deterministically.

Ties at the threshold are kept in order of their flat index (lower first), so a layer never loses more
weights than its count says, whatever the scores (a known defect of threshold-based pruning, which
drops every weight tied at the threshold).
"""

from __future__ import annotations

import torch


def keep_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool tensor of `scores`' shape with exactly k True at the highest scores."""
    flat = scores.flatten()
    if not 0 <= k <= flat.numel():
        raise ValueError(f"cannot keep {k} of {flat.numel()} entries")
    order = torch.argsort(flat, descending=True, stable=True)
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[order[:k]] = True
    return keep.view_as(scores)


def round_half_up(x: float) -> int:
    return int(x + 0.5)
