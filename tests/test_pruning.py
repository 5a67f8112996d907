"""IMP's ladder through the new API: exact counts per level, iterating `prune` reaches it, largest
magnitudes kept, never revives, ties, per-layer rates/overrides/ignore and global counts."""

import pytest
import torch
from torch import nn

from ticketlab import Mask, PruningHparams
from ticketlab.pruning import (ALLOCATIONS, LayerInfo, budget_for, keep_top_k, ladder_density, layer_rates,
                               layers_of, prune)


def layers(sizes: dict[str, int], kinds: dict[str, str] | None = None) -> dict[str, LayerInfo]:
    return {k: LayerInfo(n, (n,), (kinds or {}).get(k, "linear")) for k, n in sizes.items()}


def counts_at_level(hp: PruningHparams, infos: dict[str, LayerInfo], level: int) -> dict[tuple[str, ...], int]:
    return ALLOCATIONS[hp.strategy](infos, ladder_density(infos, hp, level), hp)


LENET = layers({"hidden.0.weight": 784 * 300, "hidden.1.weight": 300 * 100, "out.weight": 100 * 10})
PAPER = PruningHparams(rate=0.2, output_rate=0.1)


class Net(nn.Module):
    """Linear layers of the given (out, in) shapes; the last one is the output layer."""

    def __init__(self, *shapes: tuple[int, int]):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(i, o, bias=False) for o, i in shapes)

    def load(self, weights: list[torch.Tensor]) -> "Net":
        with torch.no_grad():
            for layer, w in zip(self.layers, weights):
                layer.weight.copy_(w)
        return self


@pytest.mark.parametrize("level,percent", [(0, 100.0), (1, 80.0), (2, 64.1), (3, 51.3), (5, 32.9), (7, 21.1),
                                           (9, 13.5), (10, 10.8), (12, 7.0), (15, 3.6), (16, 2.9), (18, 1.9),
                                           (20, 1.2)])
def test_lenet_ladder_matches_the_paper(level, percent):
    counts = counts_at_level(PAPER, LENET, level)
    assert round(100 * sum(counts.values()) / 266_200, 1) == percent
    # exactly the closed form of an integer level, although the allocation only sees a density
    rates = layer_rates(PAPER, {k: "linear" for k in LENET})
    assert counts == {(k,): int(info.size * (1 - rates[k]) ** level + 0.5) for k, info in LENET.items()}


def test_mlp_32_16_level_one_counts():
    model = Net((32, 256), (16, 32), (10, 16))
    infos = layers_of(model)
    budget = budget_for(model, ladder_density(infos, PAPER, 1), "layerwise", PAPER)
    assert list(budget.values()) == [6554, 410, 144]


def test_conv2_ladder_matches_the_paper():
    # Conv-2 on CIFAR-10: convs 1,728 + 36,864 at 10%, FC 16,384*256 + 256*256 at 20%, output 2,560 at 10%.
    infos = layers({"c1": 1728, "c2": 36864, "f1": 16384 * 256, "f2": 256 * 256, "out": 2560},
                   {"c1": "conv", "c2": "conv"})
    hp = PruningHparams(rate=0.2, conv_rate=0.1, output_rate=0.1)
    total = sum(info.size for info in infos.values())
    assert round(100 * sum(counts_at_level(hp, infos, 11).values()) / total, 1) == 8.8
    assert round(100 * sum(counts_at_level(hp, infos, 14).values()) / total, 1) == 4.6


def test_ladder_is_reached_by_iterating_prune():
    g = torch.Generator().manual_seed(0)
    model = Net((30, 40), (10, 30))
    infos = layers_of(model)
    mask = Mask.ones(model)
    for level in range(1, 16):
        model.load([torch.randn(30, 40, generator=g), torch.randn(10, 30, generator=g)])  # "trained" weights
        new = prune(model, mask, density=ladder_density(infos, PAPER, level), scorer="magnitude",
                    allocation=PAPER.strategy, hp=PAPER)
        assert new.counts() == {k[0]: n for k, n in counts_at_level(PAPER, infos, level).items()}
        assert all(torch.all(new[k] <= mask[k]) for k in infos)  # never revives a pruned weight
        mask = new


def test_keeps_the_largest_magnitudes():
    model = Net((2, 3)).load([torch.tensor([[0.5, -3.0, 0.1], [2.0, -0.2, 1.0]])])
    out = prune(model, density=0.5)
    assert out["layers.0.weight"].tolist() == [[False, True, False], [True, False, True]]


def test_the_python_default_is_one_global_ranking_as_compare_and_synaptic_flow():
    model = Net((1, 4), (2, 1)).load([torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[10.0], [20.0]])])
    default = prune(model, density=0.5)
    assert default["layers.1.weight"].all() and default["layers.0.weight"].tolist() == [[False, False, False, True]]
    assert default.counts() != prune(model, density=0.5, allocation="layerwise").counts()


def test_pruned_weights_are_never_revived_even_when_they_score_highest():
    model = Net((2, 3)).load([torch.tensor([[9.0, 8.0, 1.0], [2.0, 3.0, 4.0]])])
    mask = Mask({"layers.0.weight": torch.tensor([[False, False, True], [True, True, True]])})
    out = prune(model, mask, density=2 / 6, allocation="uniform")
    assert out["layers.0.weight"].tolist() == [[False, False, False], [False, True, True]]


def test_ties_never_cost_a_layer_more_than_its_count():
    scores = torch.ones(7, 5)  # every score tied at the threshold
    keep = keep_top_k(scores, 12)
    assert int(keep.sum()) == 12
    assert keep.flatten()[:12].all() and not keep.flatten()[12:].any()  # lower index first: deterministic
    model = Net((7, 5)).load([torch.zeros(7, 5)])
    hp = PruningHparams(rate=0.2)
    out = prune(model, density=ladder_density(layers_of(model), hp, 1), hp=hp)
    assert out.counts()["layers.0.weight"] == 28


def test_global_pruning_ranks_across_layers_and_skips_ignored():
    model = Net((1, 4), (2, 1), (2, 2)).load([torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[10.0], [20.0]]),
                                              torch.tensor([[0.01, 0.02], [0.03, 0.04]])])
    hp = PruningHparams(strategy="global", rate=0.5, ignore=("layers.2.weight",))
    infos = layers_of(model)
    assert ladder_density(infos, hp, 1) == (6 * 0.5 + 4) / 10
    out = prune(model, density=ladder_density(infos, hp, 1), allocation="global", hp=hp)
    assert out["layers.0.weight"].tolist() == [[False, False, False, True]]
    assert out["layers.1.weight"].tolist() == [[True], [True]]
    assert out["layers.2.weight"].all()


def test_per_layer_rates_output_conv_and_overrides():
    kinds = {"c1.weight": "conv", "c2.weight": "conv", "fc.weight": "linear", "out.weight": "linear"}
    hp = PruningHparams(rate=0.2, conv_rate=0.15, output_rate=0.1, layer_rates=(("fc.weight", 0.3),),
                        ignore=("c1.weight",))
    assert layer_rates(hp, kinds) == {"c1.weight": 0.0, "c2.weight": 0.15, "fc.weight": 0.3, "out.weight": 0.1}
    with pytest.raises(Exception, match="unknown layer"):
        layer_rates(PruningHparams(ignore=("nope.weight",)), kinds)
    infos = layers({k: 1000 for k in kinds}, kinds)
    budget = counts_at_level(hp, infos, 2)  # the ignored layer keeps all, the others follow their own rates
    assert budget == {("c1.weight",): 1000, ("c2.weight",): 723, ("fc.weight",): 490, ("out.weight",): 810}
