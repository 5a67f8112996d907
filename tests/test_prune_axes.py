"""The four axes of pruning: user scorers, allocations at any density, schedules, the scorer guard,
error messages and tie-breaks of apply_budget."""

import math

import pytest
import torch
from torch import nn

from ticketlab import Mask, PruningHparams, TicketlabError
from ticketlab.pruning import (SCHEDULES, SCORERS, LayerInfo, apply_budget, budget_counts, budget_for, budget_met,
                               imp_ladder, ladder_density, layers_of, prune, register_scorer)

SIZES = {"a.weight": (10, 10), "b.weight": (5, 10), "o.weight": (2, 5)}  # 100 + 50 + 10 = 160 weights
INFOS = {k: LayerInfo(math.prod(s), s, "linear") for k, s in SIZES.items()}


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))


@pytest.fixture
def scratch_scorer():
    """Names registered by a test, removed afterwards so the registry stays as shipped."""
    names = []
    yield names
    for name in names:
        SCORERS.pop(name, None)


def test_a_user_scorer_is_a_few_lines(scratch_scorer):
    @register_scorer("smallest")
    def smallest(model, batch, mask, generator):  # keep the smallest |w|
        return {k: -s for k, s in SCORERS["magnitude"](model, batch, mask, generator).items()}
    scratch_scorer.append("smallest")

    model = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.1, -0.8, 0.3, 0.6], [-0.2, 0.7, -0.5, 0.4]]))
    small = prune(model, density=0.5, scorer="smallest")["weight"]
    large = prune(model, density=0.5, scorer="magnitude")["weight"]
    assert small.tolist() == [[True, False, True, False], [True, False, False, True]]
    assert torch.equal(small, ~large)  # distinct magnitudes, half kept: exact complements
    with pytest.raises(ValueError, match="already registered"):
        register_scorer("smallest")(smallest)


@pytest.mark.parametrize("allocation,hp,expected", [
    # 0.37 * 160 = 59.2 survivors. Same rate everywhere: every layer at 0.37; 50 * 0.37 = 18.5 rounds up.
    ("layerwise", PruningHparams(rate=0.2), {"a.weight": 37, "b.weight": 19, "o.weight": 4}),
    # L = 4.6557 solves 150 * 0.8^L + 10 * 0.9^L = 59.2: a 35.39 -> 35, b 17.69 -> 18, o 6.12 -> 6.
    ("layerwise", PruningHparams(rate=0.2, output_rate=0.1), {"a.weight": 35, "b.weight": 18, "o.weight": 6}),
    # o ignored: its 10 kept, the others 49.2 / 150 = 0.328 each: 32.8 -> 33, 16.4 -> 16 (49 in all).
    ("uniform", PruningHparams(ignore=("o.weight",)), {"a.weight": 33, "b.weight": 16, "o.weight": 10}),
    ("global", PruningHparams(ignore=("o.weight",)), {"*": 49, "o.weight": 10}),
    ("global", PruningHparams(), {"*": 59}),
])
def test_counts_at_an_arbitrary_density(allocation, hp, expected):
    assert budget_counts(budget_for(INFOS, 0.37, allocation, hp)) == expected


def test_budget_of_a_model_and_budget_met():
    model = net()
    budget = budget_for(model, 0.5, "global")
    assert budget == {("0.weight", "2.weight"): 21}  # (24 + 18) / 2
    mask = prune(model, density=0.5, allocation="global")
    assert budget_met(mask, budget) and not budget_met(Mask.ones(model), budget)
    assert layers_of(model)["0.weight"] == LayerInfo(24, (6, 4), "linear")


def test_exponential_schedule_reaches_the_target_monotonically():
    assert SCHEDULES["exponential"](1.0, 0.2, 5)[-1] == 0.2
    assert SCHEDULES["exponential"](1.0, 0.25, 2) == [0.5, 0.25]
    assert SCHEDULES["linear"](1.0, 0.2, 4)[:2] == [0.8, 0.6]
    seen = []

    def recording(model, batch, mask, generator):
        seen.append(mask)
        return SCORERS["magnitude"](model, batch, mask, generator)

    model = net()
    final = prune(model, density=0.2, scorer=recording, schedule="exponential", rounds=5, allocation="uniform")
    seen.append(final)
    assert len(seen) == 6 and seen[0].density() == 1.0
    assert [round(m.density(), 2) for m in seen] == [1.0, 0.71, 0.52, 0.38, 0.29, 0.21]  # 9 of 42 weights
    assert all(torch.all(new[k] <= old[k]) for old, new in zip(seen, seen[1:]) for k in old.keys())
    assert budget_met(final, budget_for(model, 0.2, "uniform"))


def test_imp_ladder_is_ladder_density_per_level():
    hp = PruningHparams(rate=0.2, output_rate=0.1)
    assert imp_ladder(INFOS, hp, 3) == [ladder_density(INFOS, hp, level) for level in (1, 2, 3)]
    assert ladder_density(INFOS, hp, 1) == (150 * 0.8 + 10 * 0.9) / 160


def _add_one(model, batch, mask, generator):
    with torch.no_grad():
        model[0].weight.add_(1.0)
    return SCORERS["magnitude"](model, batch, mask, generator)


def _eval_mode(model, batch, mask, generator):
    model.eval()
    return SCORERS["magnitude"](model, batch, mask, generator)


def _bn_forward(model, batch, mask, generator):  # a training-mode forward updates the BN statistics
    model(batch[0])
    return SCORERS["magnitude"](model, batch, mask, generator)


def _global_rng(model, batch, mask, generator):
    return {k: torch.rand(p.shape) for k, p in model.named_parameters() if k.endswith("weight") and p.dim() == 2}


@pytest.mark.parametrize("scorer,what", [(_add_one, "weights/buffers of 0.weight"), (_eval_mode, "train/eval mode"),
                                         (_bn_forward, "1.running_mean"), (_global_rng, "global RNG")])
def test_a_scorer_that_changes_the_model_is_refused(scorer, what):
    batch = (torch.randn(8, 4), torch.zeros(8, dtype=torch.long))
    with pytest.raises(RuntimeError, match=f"scorer '{scorer.__name__}' changed the model.*{what}"):
        prune(net(), density=0.5, scorer=scorer, batch=batch)


def test_random_scorer_is_reproducible_and_leaves_the_global_rng_alone():
    model = net()
    a = prune(model, density=0.3, scorer="random", generator=torch.Generator().manual_seed(5))
    b = prune(model, density=0.3, scorer="random", generator=torch.Generator().manual_seed(5))
    c = prune(model, density=0.3, scorer="random", generator=torch.Generator().manual_seed(6))
    assert all(torch.equal(a[k], b[k]) for k in a.keys()) and any(not torch.equal(a[k], c[k]) for k in a.keys())


@pytest.mark.parametrize("kwargs,message", [
    ({"density": 0.5, "scorer": "nope"}, "unknown scorer 'nope'; registered: .*magnitude"),
    ({"density": 0.5, "allocation": "nope"}, "unknown allocation 'nope'; registered: balanced, balanced-reshared, erk, "
                                             "erk-gadhikar, global, layerwise, pyramidal, uniform"),
    ({"density": 0.5, "schedule": "nope"}, "unknown schedule 'nope'; registered: exponential, linear, oneshot"),
    ({"density": 0.0}, r"density must be in \(0, 1\]"),
    ({"density": 1.5}, r"density must be in \(0, 1\]"),
    ({"density": float("nan")}, r"density must be in \(0, 1\]"),
    ({"density": 0.5, "schedule": "linear", "rounds": 0}, "rounds must be"),
    ({"density": 0.5, "allocation": "layerwise", "hp": PruningHparams(rate=0.0)},
     "out of reach of layer-wise pruning"),
    ({"density": 0.3, "allocation": "global", "hp": PruningHparams(ignore=("0.weight",))}, "below the share"),
    ({"density": 0.5, "hp": PruningHparams(ignore=("nope.weight",))}, "unknown layer"),
    ({"density": 0.5, "scorer": lambda *a: {}}, "must return one score tensor per prunable weight"),
])
def test_bad_names_and_densities_say_what_is_wrong(kwargs, message):
    with pytest.raises(TicketlabError, match=message):
        prune(net(), **kwargs)


def test_all_equal_scores_keep_exactly_k_by_lower_index():
    mask = Mask({"a": torch.ones(2, 3), "b": torch.ones(4)})
    scores = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    out = apply_budget(scores, mask, {("a", "b"): 7})  # one group: flat order a then b
    assert out["a"].all() and out["b"].tolist() == [True, False, False, False]
    out = apply_budget(scores, mask, {("a",): 2, ("b",): 3})
    assert out["a"].flatten().tolist() == [True, True, False, False, False, False]
    assert out["b"].tolist() == [True, True, True, False]


def test_nan_scores_rank_last_and_never_revive():
    mask = Mask({"a": torch.tensor([True, True, False, True, True])})
    scores = {"a": torch.tensor([float("nan"), 1.0, 5.0, float("nan"), 0.5], dtype=torch.float64)}
    assert apply_budget(scores, mask, {("a",): 3})["a"].tolist() == [True, True, False, False, True]
    assert apply_budget(scores, mask, {("a",): 5})["a"].tolist() == [True, True, False, True, True]  # min(5, 4)
