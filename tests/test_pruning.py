"""The pruning ladder, exact counts, tie-breaks and per-layer rates."""

import pytest
import torch

from ticketlab import Mask, PruningHparams, keep_top_k, magnitude_prune
from ticketlab.pruning import layer_rates, target_counts

LENET = {"hidden.0.weight": 784 * 300, "hidden.1.weight": 300 * 100, "out.weight": 100 * 10}
LENET_KINDS = dict.fromkeys(LENET, "linear")
PAPER = PruningHparams(rate=0.2, output_rate=0.1)


@pytest.mark.parametrize("level,percent", [(0, 100.0), (1, 80.0), (2, 64.1), (3, 51.3), (5, 32.9), (7, 21.1),
                                           (9, 13.5), (10, 10.8), (12, 7.0), (15, 3.6), (16, 2.9), (18, 1.9),
                                           (20, 1.2)])
def test_lenet_ladder_matches_the_paper(level, percent):
    counts = target_counts(PAPER, LENET, LENET_KINDS, level)
    assert round(100 * sum(counts.values()) / 266_200, 1) == percent


def test_ladder_is_reached_by_iterating_the_pruning_function():
    g = torch.Generator().manual_seed(0)
    shapes = {"a.weight": (30, 40), "out.weight": (10, 30)}
    mask = Mask({k: torch.ones(s, dtype=torch.bool) for k, s in shapes.items()})
    kinds = dict.fromkeys(shapes, "linear")
    for level in range(1, 16):
        weights = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
        new = magnitude_prune(weights, mask, PAPER, kinds, level)
        assert new.counts() == target_counts(PAPER, {k: 30 * 40 if k == "a.weight" else 300 for k in shapes},
                                             kinds, level)
        assert all(torch.all(new[k] <= mask[k]) for k in shapes)  # never revives a pruned weight
        mask = new


def test_keeps_the_largest_magnitudes():
    w = torch.tensor([[0.5, -3.0, 0.1], [2.0, -0.2, 1.0]])
    mask = Mask({"l.weight": torch.ones(2, 3)})
    out = magnitude_prune({"l.weight": w}, mask, PruningHparams(rate=0.5), {"l.weight": "linear"}, 1)
    assert out["l.weight"].tolist() == [[False, True, False], [True, False, True]]


def test_ties_never_cost_a_layer_more_than_its_count():
    scores = torch.ones(7, 5)  # every score tied at the threshold
    keep = keep_top_k(scores, 12)
    assert int(keep.sum()) == 12
    assert keep.flatten()[:12].all() and not keep.flatten()[12:].any()  # lower index first: deterministic
    mask = Mask({"l.weight": torch.ones(7, 5)})
    out = magnitude_prune({"l.weight": torch.zeros(7, 5)}, mask, PruningHparams(rate=0.2), {"l.weight": "linear"}, 1)
    assert out.counts()["l.weight"] == 28


def test_global_pruning_ranks_across_layers_and_skips_ignored():
    weights = {"a.weight": torch.tensor([[1.0, 2.0, 3.0, 4.0]]), "b.weight": torch.tensor([[10.0, 20.0]]),
               "out.weight": torch.tensor([[0.01, 0.02]])}
    mask = Mask({k: torch.ones_like(v) for k, v in weights.items()})
    hp = PruningHparams(strategy="global", rate=0.5, ignore=("out.weight",))
    out = magnitude_prune(weights, mask, hp, dict.fromkeys(weights, "linear"), 1)
    assert out["a.weight"].tolist() == [[False, False, False, True]]
    assert out["b.weight"].tolist() == [[True, True]]
    assert out["out.weight"].all()


def test_per_layer_rates_output_conv_and_overrides():
    kinds = {"c1.weight": "conv", "c2.weight": "conv", "fc.weight": "linear", "out.weight": "linear"}
    hp = PruningHparams(rate=0.2, conv_rate=0.15, output_rate=0.1, layer_rates=(("fc.weight", 0.3),),
                        ignore=("c1.weight",))
    assert layer_rates(hp, kinds) == {"c1.weight": 0.0, "c2.weight": 0.15, "fc.weight": 0.3, "out.weight": 0.1}
    with pytest.raises(Exception, match="unknown layer"):
        layer_rates(PruningHparams(ignore=("nope.weight",)), kinds)


def test_conv2_ladder_matches_the_paper():
    # Conv-2 on CIFAR-10: convs 1,728 + 36,864 at 10%, FC 16,384*256 + 256*256 at 20%, output 2,560 at 10%.
    sizes = {"c1": 1728, "c2": 36864, "f1": 16384 * 256, "f2": 256 * 256, "out": 2560}
    kinds = {"c1": "conv", "c2": "conv", "f1": "linear", "f2": "linear", "out": "linear"}
    hp = PruningHparams(rate=0.2, conv_rate=0.1, output_rate=0.1)
    total = sum(sizes.values())
    assert round(100 * sum(target_counts(hp, sizes, kinds, 11).values()) / total, 1) == 8.8
    assert round(100 * sum(target_counts(hp, sizes, kinds, 14).values()) / total, 1) == 4.6
