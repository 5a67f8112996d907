"""Structure: turning scores and a budget into a mask, with exact counts and deterministic ties.

`keep_top_k` is the one top-k of the project: exactly k survivors, ties at the threshold kept in order of
their flat index (lower first), so a layer never loses more weights than its budget says, whatever the
scores (threshold-based pruning drops every weight tied at the threshold). `apply_budget` ranks only the
current survivors, so a pruned weight is never revived, whatever its score.
"""

from __future__ import annotations

import torch

from ..masks import Mask
from .allocation import Budget


def keep_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool tensor of `scores`' shape with exactly k True at the highest scores."""
    flat = scores.flatten()
    if not 0 <= k <= flat.numel():
        raise ValueError(f"cannot keep {k} of {flat.numel()} entries")
    order = torch.argsort(flat, descending=True, stable=True)
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[order[:k]] = True
    return keep.view_as(scores)


def _check_groups(mask: Mask, budget: Budget) -> None:
    names = [k for group in budget for k in group]
    if sorted(names) != sorted(mask.keys()):
        raise ValueError(f"budget groups {list(budget)} must hold each layer of the mask once: {list(mask.keys())}")


def apply_budget(scores: dict[str, torch.Tensor], mask: Mask, budget: Budget) -> Mask:
    """The survivors of `mask` with the highest scores, min(budget, survivors) per group; pruned weights stay
    pruned. Scores are compared as float32 (float64 if given); NaN ranks lowest, as -inf."""
    _check_groups(mask, budget)
    out = dict(mask.tensors)
    for group, n in budget.items():
        alive = torch.cat([mask[k].flatten() for k in group])  # (group size,) bool
        flat = torch.cat([scores[k].to(mask[k].device).flatten() for k in group])
        flat = flat.to(torch.float64 if flat.dtype == torch.float64 else torch.float32)
        index = alive.nonzero().squeeze(1)  # survivors' flat positions, increasing: ties by lower index
        ranked = flat[index]
        ranked = ranked.masked_fill(ranked.isnan(), float("-inf"))
        keep = torch.zeros_like(alive)
        keep[index[keep_top_k(ranked, min(n, index.numel()))]] = True
        start = 0
        for k in group:  # split the group's flat mask back into its layers
            size = mask[k].numel()
            out[k] = keep[start:start + size].view_as(mask[k])
            start += size
    return Mask(out)


def budget_met(mask: Mask, budget: Budget) -> bool:
    """Whether every group of `budget` has exactly its number of survivors in `mask`."""
    _check_groups(mask, budget)
    counts = mask.counts()
    return all(sum(counts[k] for k in group) == n for group, n in budget.items())
