"""Pruning: which weights to keep (scores), how many (counts per level), and the exact top-k."""

from .magnitude import layer_rates, magnitude_prune, target_counts
from .topk import keep_top_k

__all__ = ["keep_top_k", "layer_rates", "magnitude_prune", "target_counts"]
