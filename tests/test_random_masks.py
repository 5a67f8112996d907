"""Random masks with the published layer densities: exact per-layer counts from each formula."""

import math

import pytest
import torch
from torch import nn

from ticketlab import PruningHparams, prune
from ticketlab.pruning import budget_for, layers_of

LENET = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
N = 784 * 300 + 300 * 100 + 100 * 10  # 266,200


def counts(allocation, density, hp=PruningHparams()):
    return {g[0]: n for g, n in budget_for(LENET, density, allocation, hp).items()}


def test_erk_densities_follow_sum_over_product_of_the_shape():
    got = counts("erk", 0.05)
    raw = {"1.weight": (784 + 300) / (784 * 300), "3.weight": (300 + 100) / (300 * 100), "5.weight": 110 / 1000}
    sizes = {"1.weight": 235_200, "3.weight": 30_000, "5.weight": 1000}
    scale = 0.05 * N / sum(raw[k] * sizes[k] for k in raw)
    assert all(scale * raw[k] < 1 for k in raw)  # no layer capped at this density
    assert got == {k: math.floor(scale * raw[k] * sizes[k] + 0.5) for k in raw}
    # at 20% the output layer's formula asks for more than it has: it keeps all, the rest share what is left
    capped = counts("erk", 0.2)
    assert capped["5.weight"] == 1000 and abs(sum(capped.values()) - 0.2 * N) <= 2


def test_balanced_reshared_gives_every_layer_the_same_count_capped_at_dense():
    got = counts("balanced-reshared", 0.05)  # X = 13,310 per layer: the output layer (1,000) keeps all
    assert got["5.weight"] == 1000
    assert got["1.weight"] == got["3.weight"] == round((0.05 * N - 1000) / 2)
    assert counts("balanced-reshared", 0.001)["1.weight"] == round(0.001 * N / 3)  # X = 88.7: nobody capped


def test_pyramidal_densities_are_powers_of_one_ratio():
    got = counts("pyramidal", 0.1)
    r = got["1.weight"] / 235_200
    assert got["3.weight"] == pytest.approx(30_000 * r ** 2, abs=1) and got["5.weight"] == pytest.approx(1000 * r ** 3, abs=1)
    assert abs(sum(got.values()) - 0.1 * N) <= 2


@pytest.mark.parametrize("allocation", ["erk", "balanced", "pyramidal", "uniform"])
def test_random_masks_have_the_budgets_counts_and_respect_ignored_layers(allocation):
    hp = PruningHparams(ignore=("5.weight",))
    mask = prune(LENET, density=0.1, scorer="random", allocation=allocation, hp=hp,
                 generator=torch.Generator().manual_seed(3))
    budget = {g[0]: n for g, n in budget_for(LENET, 0.1, allocation, hp).items()}
    assert mask.counts() == budget and budget["5.weight"] == 1000
    assert layers_of(LENET).keys() == budget.keys()
