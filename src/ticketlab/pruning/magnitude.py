"""Magnitude pruning: keep the largest |w| among the surviving weights, layer-wise or global.

How many survive level L is a closed form of the level, not a product of rounded steps, so the densities
follow the paper's ladder exactly: layer-wise, layer l keeps round(n_l * (1 - r_l)^L) weights
(LeNet 20/20/10%: 51.3% after 3 levels, 21.1% after 7, 7.0% after 12, 3.6% after 15); global keeps
round(N * (1 - r)^L) of the non-ignored weights, chosen by one ranking across layers.
"""

from __future__ import annotations

import torch

from ..config import PruningHparams
from ..errors import TicketlabError
from ..masks import Mask
from .topk import keep_top_k, round_half_up


def layer_rates(hp: PruningHparams, kinds: dict[str, str]) -> dict[str, float]:
    """The pruning rate of each prunable weight: override > output layer > conv > default; ignored: 0."""
    names = list(kinds)
    unknown = [n for n, _ in hp.layer_rates if n not in kinds] + [n for n in hp.ignore if n not in kinds]
    if unknown:
        raise TicketlabError(f"pruning names unknown layer(s) {', '.join(unknown)}; prunable: {', '.join(names)}")
    rates = {}
    for name in names:
        rate = hp.conv_rate if kinds[name] == "conv" and hp.conv_rate is not None else hp.rate
        if name == names[-1] and hp.output_rate is not None:
            rate = hp.output_rate
        rates[name] = rate
    rates.update(dict(hp.layer_rates))
    rates.update({name: 0.0 for name in hp.ignore})
    return rates


def target_counts(hp: PruningHparams, sizes: dict[str, int], kinds: dict[str, str], level: int) -> dict[str, int]:
    """Layer-wise: survivors per layer at `level`. Global: the prunable total under key '*' plus ignored layers."""
    rates = layer_rates(hp, kinds)
    if hp.strategy == "layerwise":
        return {k: round_half_up(n * (1 - rates[k]) ** level) for k, n in sizes.items()}
    pooled = sum(n for k, n in sizes.items() if k not in hp.ignore)
    return {"*": round_half_up(pooled * (1 - hp.rate) ** level), **{k: sizes[k] for k in hp.ignore}}


def magnitude_prune(weights: dict[str, torch.Tensor], mask: Mask, hp: PruningHparams, kinds: dict[str, str],
                    level: int) -> Mask:
    """The mask of `level`: the current survivors of `mask` ranked by |weight|, cut to the level's counts."""
    counts = target_counts(hp, mask.sizes(), kinds, level)
    have = mask.counts()
    # Pruned weights rank below every survivor, so they are never revived.
    scores = {k: torch.where(mask[k], weights[k].detach().abs().float(), -1.0) for k in mask.keys()}
    if hp.strategy == "layerwise":
        return Mask({k: keep_top_k(scores[k], min(counts[k], have[k])) for k in mask.keys()})
    pooled = [k for k in mask.keys() if k not in hp.ignore]
    flat = torch.cat([scores[k].flatten() for k in pooled])
    keep_flat = keep_top_k(flat, min(counts["*"], sum(have[k] for k in pooled)))
    out, start = dict(mask.tensors), 0
    for k in pooled:
        n = scores[k].numel()
        out[k] = keep_flat[start:start + n].view_as(scores[k])
        start += n
    return Mask(out)
