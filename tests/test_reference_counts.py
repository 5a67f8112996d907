"""Counts as the reference implementations compute them (issue 21 items 3, 5 and 7), each reference's formula
written out here: OpenLTH's sparse_global levels (PruningHparams.counting = openlth), Gadhikar et al.'s
balanced and ERK layer densities without re-sharing (sparse_to_sparse STR/main.py), and Synaptic-Flow's
count rounding n - int((1 - d) n) (PruningHparams.rounding = synaptic-flow), per round of SynFlow included."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from ticketlab import PruningHparams, build_config, prune
from ticketlab.config import ModelHparams
from ticketlab.errors import TicketlabError
from ticketlab.pruning import REVISIONS
from ticketlab.identity import changed_fields, digest, lottery_identity
from ticketlab.masks import Mask
from ticketlab.models import construct
from ticketlab.pruning import SCORERS, LayerInfo, budget_for, ladder_density, layers_of
from conftest import small_config

OPENLTH = PruningHparams(strategy="global", rate=0.2, counting="openlth")
SYNFLOW_ROUNDING = PruningHparams(rounding="synaptic-flow")


def infos(sizes: dict[str, int]) -> dict[str, LayerInfo]:
    return {k: LayerInfo(n, (n,), "conv") for k, n in sizes.items()}


# cifar_vgg_11's prunable weights: eight convs and the output layer fc (512 x 10), which OpenLTH ignores
VGG11 = infos({"c0": 1728, "c1": 73_728, "c2": 294_912, "c3": 589_824, "c4": 1_179_648, "c5": 2_359_296,
               "c6": 2_359_296, "c7": 2_359_296, "fc.weight": 5120})


def openlth_levels(total: int, levels: int, rate: float = 0.2) -> list[int]:
    """sparse_global: R <- R - (ceil(rate R) + 1), R every remaining prunable weight (ignored ones too)."""
    remaining, out = total, []
    for _ in range(levels):
        remaining -= math.ceil(rate * remaining) + 1
        out.append(remaining)
    return out


# ---- Item 3: OpenLTH's global counting ---------------------------------------------------------------------

def test_openlth_counting_prunes_ceil_of_every_remaining_weight_plus_one_per_level():
    hp = dataclasses.replace(OPENLTH, ignore=("fc.weight",))
    total = sum(i.size for i in VGG11.values())
    pooled = tuple(k for k in VGG11 if k != "fc.weight")
    for level, remaining in enumerate(openlth_levels(total, 5), start=1):
        budget = budget_for(VGG11, ladder_density(VGG11, hp, level), "global", hp)
        assert budget == {pooled: remaining - 5120, ("fc.weight",): 5120}
        either = dataclasses.replace(hp, rounding="synaptic-flow")  # whole counts: the same under both roundings
        assert budget_for(VGG11, ladder_density(VGG11, either, level), "global", either) == budget
    # ticketlab's closed form (the default) keeps 1,025 more after level 1 and 3,446 more after level 5
    closed = dataclasses.replace(hp, counting="ticketlab")
    extra = [budget_for(VGG11, ladder_density(VGG11, closed, level), "global", closed)[pooled] - (remaining - 5120)
             for level, remaining in enumerate(openlth_levels(total, 5), start=1)]
    assert extra[0] == 1025 and extra[4] == 3446


def test_lenet_with_its_output_layer_ignored_keeps_5_percent_more_after_12_levels_by_the_closed_form():
    layers = infos({"h0": 235_200, "h1": 30_000, "out": 1000})
    hp = PruningHparams(strategy="global", ignore=("out",), counting="openlth")
    assert ladder_density(layers, hp, 12) * 266_200 == openlth_levels(266_200, 12)[-1]
    ratio = ladder_density(layers, dataclasses.replace(hp, counting="ticketlab"), 12) / ladder_density(layers, hp, 12)
    assert ratio == pytest.approx(1.0512, abs=1e-4)


def _openlth_prune(weights: dict[str, np.ndarray], mask: dict[str, np.ndarray], ignored: str) -> dict[str, np.ndarray]:
    """One sparse_global level, written out: threshold = sorted |w| of the unpruned, non-ignored weights at
    index ceil(0.2 x every remaining weight); keep |w| > threshold."""
    number = math.ceil(0.2 * sum(m.sum() for m in mask.values()))
    vector = np.concatenate([np.abs(w)[mask[k]] for k, w in weights.items() if k != ignored])
    threshold = np.sort(vector)[number]
    return {k: mask[k] if k == ignored else mask[k] & (np.abs(w) > threshold) for k, w in weights.items()}


def test_openlth_levels_on_real_weights_are_its_threshold_rule():
    torch.manual_seed(0)  # fixed, distinct weights
    model = nn.Sequential(nn.Linear(8, 10), nn.ReLU(), nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 3))
    hp = PruningHparams(strategy="global", ignore=("4.weight",), counting="openlth")
    layers = layers_of(model)
    weights = {k: model.state_dict()[k].numpy() for k in layers}
    ours, theirs = Mask.ones(model), {k: np.ones(w.shape, bool) for k, w in weights.items()}
    for level in range(1, 5):
        ours = prune(model, ours, density=ladder_density(layers, hp, level), allocation="global", hp=hp)
        theirs = _openlth_prune(weights, theirs, "4.weight")
        assert all(np.array_equal(ours[k].numpy(), theirs[k]) for k in layers)
        if level == 1:  # 158 weights: ceil(0.2 x 158) = 32 at the threshold's index, so 33 pruned
            assert sum(ours.counts().values()) == 158 - 33


def test_an_imp_run_with_openlth_counting_prunes_its_counts_and_checks_them(tmp_path, synthetic):
    from ticketlab import run_lottery

    config = small_config(training={"train_steps": 40, "eval_every": 20},
                          pruning={"strategy": "global", "ignore": ["out.weight"], "counting": "openlth"})
    result = run_lottery(config, data=synthetic, root=tmp_path)
    # mlp_32_16 on 16x16 inputs: 8,192 + 512 pooled weights, 160 output weights ignored: 8,864 in all
    want = openlth_levels(8864, 2)
    assert [round(s["density"] * 8864) for s in result.levels[1:]] == want
    assert [s["layer_counts"]["out.weight"] for s in result.levels[1:]] == [160, 160]
    assert all(s["checks"]["counts_as_requested"] for s in result.levels)


def test_the_openlth_presets_count_as_openlth_in_a_new_folder_and_the_lth_paper_ones_do_not():
    for name in ("cifar_resnet_20", "cifar_vgg_16"):
        config = build_config({"model": {"name": name}})
        assert config.pruning.counting == "openlth" and changed_fields(config.pruning)["counting"] == "openlth"
        before = dataclasses.replace(config, pruning=dataclasses.replace(config.pruning, counting="ticketlab"))
        dense = {"stands for": "the same dense run"}
        assert digest(lottery_identity(dense, config, revisions=REVISIONS)) != \
            digest(lottery_identity(dense, before, revisions=REVISIONS))
    for name in ("lenet_300_100", "conv4"):
        assert "counting" not in changed_fields(build_config({"model": {"name": name}}).pruning)
    # layer-wise IMP has no pooled levels: a preset's openlth is put back, a user's is refused in one line
    assert build_config({"model": {"name": "cifar_vgg_16"}, "pruning": {"strategy": "layerwise"}}).pruning.counting \
        == "ticketlab"
    with pytest.raises(TicketlabError, match="applies only with a pooled strategy"):
        build_config({"pruning": {"counting": "openlth"}})
    with pytest.raises(TicketlabError, match="pruning.rounding must be one of nearest, synaptic-flow"):
        PruningHparams(rounding="ceil")


# ---- Item 5: layer densities, with and without re-sharing ----------------------------------------------------

@pytest.fixture(scope="module")
def conv4():
    with torch.device("meta"):  # shapes only
        return layers_of(construct(ModelHparams("conv4"), (3, 32, 32), 10))


def test_balanced_is_gadhikar_et_al_s_rule_and_falls_short_on_conv4(conv4):
    n = {k: i.size for k, i in conv4.items()}
    N = sum(n.values())
    x = 0.1 * N / len(n)  # X = d N / L per layer, d_l = min(1, X / n_l), nothing re-shared
    want = {k: min(1.0, x / n[k]) for k in n}
    got = budget_for(conv4, 0.1, "balanced")
    assert got == {(k,): math.floor(n[k] * want[k] + 0.5) for k in n}
    assert sum(got.values()) / N == pytest.approx(0.0732, abs=5e-5)  # 7.32%, not 10%
    # balanced-reshared (ticketlab's balanced before) hands the clamped layers' excess to the others: 10%
    shared = budget_for(conv4, 0.1, "balanced-reshared")
    assert abs(sum(shared.values()) - 0.1 * N) <= len(n)
    gap = max(abs(shared[(k,)] - got[(k,)]) / n[k] for k in n)
    assert gap == pytest.approx(0.24, abs=0.01)


def test_erk_gadhikar_clamps_without_resharing_and_rigl_s_erk_reshares(conv4):
    n = {k: i.size for k, i in conv4.items()}
    N = sum(n.values())
    raw = {k: sum(i.shape) / i.size for k, i in conv4.items()}
    c = 0.1 * N / sum(raw[k] * n[k] for k in n)  # C = kept / sum_l raw_l n_l, d_l = clamp(C raw_l, 0, 1)
    want = {k: min(1.0, c * raw[k]) for k in n}
    assert any(c * raw[k] > 1 for k in n)  # a layer is clamped at 10%
    got = budget_for(conv4, 0.1, "erk-gadhikar")
    assert got == {(k,): math.floor(n[k] * want[k] + 0.5) for k in n}
    assert sum(got.values()) < 0.1 * N - 1000
    assert abs(sum(budget_for(conv4, 0.1, "erk").values()) - 0.1 * N) <= len(n)


def test_random_balanced_no_longer_names_the_folders_of_the_old_rule(tmp_path, synthetic):
    from ticketlab import store
    from ticketlab.experiments.pai import METHODS, pai_jobs
    from ticketlab.experiments.plan import dense_experiment, resolve
    from ticketlab.experiments.study import options
    from ticketlab.jobs import Runtime

    def old_folder(config, runtime, name):  # a pai folder as it was named before: dense, method, ignore
        dense_id, _ = dense_experiment(config, runtime, record=False)
        identity = {"dense": dense_id, "method": dataclasses.asdict(METHODS[name]), "ignore": []}
        return store.experiment_dir(runtime.root, "pai", digest(identity))

    names = ["random", "random-balanced", "random-balanced-reshared", "random-erk-gadhikar"]
    folders = {}
    for rounding in ("nearest", "synaptic-flow"):
        config = small_config(pruning={"rounding": rounding})
        runtime = Runtime(options(root=tmp_path))
        runtime.add_data(config.dataset, synthetic)
        folders[rounding], _ = pai_jobs(config, names, [0.1], resolve(config, [0], runtime), runtime, ())
        if rounding == "nearest":
            assert folders[rounding]["random"] == old_folder(config, runtime, "random")  # stored folders stand
            assert folders[rounding]["random-balanced"] != old_folder(config, runtime, "random-balanced")
    assert all(folders["nearest"][m] != folders["synaptic-flow"][m] for m in names)  # the rounding names one


# ---- Item 7: Synaptic-Flow's count rounding -------------------------------------------------------------------

def mlp_1940() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 80), nn.ReLU(), nn.Linear(80, 4), nn.ReLU(), nn.Linear(4, 5))


def test_global_pruning_at_1_percent_keeps_20_of_1940_as_synaptic_flow_and_19_by_nearest():
    model = mlp_1940()
    pooled = tuple(layers_of(model))
    assert budget_for(model, 0.01, "global", SYNFLOW_ROUNDING) == {pooled: 1940 - int((1 - 0.01) * 1940)} \
        == {pooled: 20}
    assert budget_for(model, 0.01, "global") == {pooled: 19}  # round(19.4)


def test_synflow_rounds_keep_n_minus_int_of_the_pruned_share_each_round():
    model, rounds, d = mlp_1940(), 5, 0.01
    seen = []

    def counting_synflow(model, batch, mask, generator):  # the count each round starts from, then SynFlow
        seen.append(sum(mask.counts().values()))
        return SCORERS["synflow"](model, batch, mask, generator)

    batch = (torch.ones(1, 20), torch.zeros(1, dtype=torch.long))
    final = prune(model, density=d, scorer=counting_synflow, allocation="global", hp=SYNFLOW_ROUNDING, batch=batch,
                  schedule="exponential", rounds=rounds)
    counts = seen[1:] + [sum(final.counts().values())]
    # Synaptic-Flow's prune_loop: d_r = d^(r / T), then _global_mask keeps N - int((1 - d_r) N)
    assert counts == [1940 - int((1 - d ** (r / rounds)) * 1940) for r in range(1, rounds + 1)]
    nearest = [round(d ** (r / rounds) * 1940) for r in range(1, rounds + 1)]
    assert counts != nearest and counts[-1] == 20 and nearest[-1] == 19


def test_pyramidal_at_1_percent_gives_lenet_s_output_layer_one_weight_by_the_reference_rule():
    layers = infos({"h0": 235_200, "h1": 30_000, "out": 1000})
    n = [235_200, 30_000, 1000]
    # sparse_to_sparse's root: np.roots of n_L r^L + ... + n_1 r - d N, the real one in (0, 1); d_l = r^l
    roots = np.roots([1000, 30_000, 235_200, -0.01 * sum(n)])
    r = next(float(np.real(x)) for x in roots if np.imag(x) == 0 and 0 < np.real(x) < 1)
    want = {(k,): size - int((1 - r ** (i + 1)) * size) for i, (k, size) in enumerate(zip(layers, n))}
    got = budget_for(layers, 0.01, "pyramidal", SYNFLOW_ROUNDING)
    assert got == want and got[("out",)] == 1
    assert budget_for(layers, 0.01, "pyramidal")[("out",)] == 0  # nearest: round(1000 r^3) = round(0.0014)


def test_the_synaptic_flow_rule_counts_a_whole_number_under_float_error_as_that_number():
    # (1 - 0.8) * 1000 is 199.99999999999997 in float64: 200 pruned, 800 kept, as 80% of 1,000 says
    assert budget_for(infos({"a": 1000}), 0.8, "uniform", SYNFLOW_ROUNDING) == {("a",): 800}


def test_imp_under_the_revised_balanced_names_a_folder_the_old_rule_never_named():
    dense = {"stand-in": "the same dense run"}
    old_rule = build_config({"kind": "lottery", "pruning": {"strategy": "balanced-reshared"}})
    new_rule = build_config({"kind": "lottery", "pruning": {"strategy": "balanced"}})
    named = lottery_identity(dense, new_rule, revisions=REVISIONS)
    assert named["pruning"]["strategy_revision"] == "not-reshared"
    # before the revision, {"strategy": "balanced"} alone named the folder of the re-sharing rule
    assert digest(named) != digest({"dense": dense, "pruning": {"strategy": "balanced"}, "lottery": {}})
    assert "strategy_revision" not in lottery_identity(dense, old_rule, revisions=REVISIONS)["pruning"]


def test_the_last_level_allowed_follows_the_counting_rule():
    from ticketlab.configure import empty_level
    from ticketlab.pruning import layers_of, openlth_remaining
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10))
    layers = layers_of(model)
    hp = PruningHparams(strategy="global", rate=0.2, ignore=("2.weight",), counting="openlth")
    level = empty_level(layers, {}, "global", 0.2, hp.ignore, hp)
    # the first level that leaves the pooled layer empty under OpenLTH's recurrence (300 ignored weights kept)
    assert openlth_remaining(layers, hp, level) == 300 < openlth_remaining(layers, hp, level - 1)
    closed = empty_level(layers, {}, "global", 0.2, hp.ignore)
    assert level < closed  # ceil(0.2 x all, ignored included) + 1 empties the 600 pooled weights sooner
