"""Strong lottery tickets by construction (existence/, experiments/construct.py, `ticketlab construct`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from ticketlab import store
from ticketlab.cli import main
from ticketlab.errors import TicketlabError
from ticketlab.existence import build, constructions, solve
from ticketlab.existence.measure import error_bound, per_weight_tolerance, row_norm
from ticketlab.existence.targets import Layer, layers_of
from ticketlab.experiments.construct import ConstructPlan, identity, load_target, run_construct_plan
from ticketlab.identity import digest

W1 = np.array([[0.5, -0.3], [0.2, 0.8], [-0.6, 0.1], [0.4, 0.4]])  # a 2-4-2 target with fixed weights
W2 = np.array([[0.3, -0.5, 0.2, 0.1], [-0.2, 0.4, 0.6, -0.3]])


def target_module(b1=None, b2=None) -> nn.Module:  # noqa: ANN001
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(W1))
        net[2].weight.copy_(torch.from_numpy(W2))
        net[0].bias.copy_(torch.zeros(4) if b1 is None else torch.tensor(b1))
        net[2].bias.copy_(torch.zeros(2) if b2 is None else torch.tensor(b2))
    return net


def block_sums(built, l: int, i: int, k: int) -> tuple[float, float]:  # noqa: ANN001
    """The two subset sums (neurons with u > 0, with u < 0) the kept weights of block l give W_ki."""
    (a, _), (v, _) = built.source[2 * l], built.source[2 * l + 1]
    (ma, _), (mv, _) = built.masks[2 * l], built.masks[2 * l + 1]
    terms = a[:, i] * ma[:, i] * v[k] * mv[k]
    return float(terms[a[:, i] > 0].sum()), float(terms[a[:, i] < 0].sum())


@pytest.mark.parametrize("eps", [1e-1, 1e-2])
def test_the_subnetwork_is_within_eps_of_the_target_and_its_errors_within_the_bound(eps):
    net = target_module()
    built, rep = build(net, eps, seed=0, samples=2000)
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (500, 2)))
    sub = nn.Sequential(*[m for i, (w, b) in enumerate(built.subnetwork())
                          for m in ([nn.Linear(w.shape[1], w.shape[0]).double()] + [nn.ReLU()] * (i < 3))])
    with torch.no_grad():
        for lin, (w, b) in zip(sub[::2], built.subnetwork()):
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        measured = float((sub(x) - net(x)).abs().max())
    assert measured <= rep["sup_error"] + 1e-12 or measured <= eps  # fresh inputs: still within eps
    assert measured <= eps and rep["sup_error"] <= rep["bound"] <= eps and rep["within_eps"]
    # each recorded per-weight error is the distance of the kept weights' subset sums to the target weight
    for l, w in enumerate((W1, W2)):
        for k in range(w.shape[0]):
            for i in range(w.shape[1]):
                plus, minus = block_sums(built, l, i, k)
                assert built.weight_errors[l][k, i] == pytest.approx(max(abs(plus - w[k, i]), abs(minus - w[k, i])),
                                                                     abs=1e-12)
    tau = built.tolerance
    assert all(float(d.max()) <= tau for d in built.weight_errors)
    # the bound written out for 2 layers on ||x||_inf <= 1: e1 = ||D1|| 1, e2 = ||W2|| e1 + ||D2|| (||W1|| + e1)
    d1, d2 = row_norm(built.weight_errors[0]), row_norm(built.weight_errors[1])
    e1 = d1 * 1.0
    assert built.bound == pytest.approx(row_norm(W2) * e1 + d2 * (row_norm(W1) * 1.0 + e1), rel=1e-12)
    # the tolerance is the uniform tau at which that bound is eps: d_in tau per row in each layer
    e1 = 2 * tau
    assert row_norm(W2) * e1 + 4 * tau * (row_norm(W1) + e1) == pytest.approx(eps, rel=1e-6)
    assert rep["kept"] == built.kept() < rep["source_weights"]
    assert rep["source_widths"] == [2, 2 * built.width_factor, 4, 4 * built.width_factor, 2]


def test_a_one_layer_target_gets_eps_over_its_fan_in_per_weight():
    target = [Layer(np.array([[0.3, -0.7, 0.2]]), np.zeros(1))]
    assert per_weight_tolerance(target, 0.03) == pytest.approx(0.03 / 3, rel=1e-6)
    assert error_bound(target, [np.array([[0.01, 0.002, 0.0]])], [np.zeros(1)]) == pytest.approx(0.012)


def test_a_target_with_biases_is_built_through_constant_neurons():
    net = target_module(b1=[0.1, -0.2, 0.3, 0.0], b2=[0.05, -0.1])
    built, rep = build(net, 1e-2, seed=0, samples=2000)
    assert rep["sup_error"] <= rep["bound"] <= 1e-2
    assert all(float(b.max()) <= built.tolerance for b in built.bias_errors)
    assert built.masks[0][1].any() and not built.masks[1][1].any()  # only constant neurons keep a bias


def test_enumeration_and_milp_agree():
    values = np.array([0.5, 0.25, 0.125, 0.0625])  # binary digits: 0.6875 = 0.5 + 0.125 + 0.0625 exactly
    for solver in ("enumerate", "milp"):
        s = solve(values, 0.6875, solver)
        assert s.error == 0.0 and s.chosen.tolist() == [True, False, True, True] and s.optimal
    rng = np.random.default_rng(3)
    values = rng.uniform(-1, 1, 12) * rng.uniform(-1, 1, 12)
    for z in (0.3, -0.55, 0.9):
        e, m = solve(values, z, "enumerate"), solve(values, z, "milp")
        assert m.optimal and m.error == pytest.approx(e.error, abs=1e-9)
        assert m.error == pytest.approx(abs(z - values[m.chosen].sum()), abs=0)
    with pytest.raises(TicketlabError, match="unknown subset-sum solver"):
        solve(values, 0.1, "greedy")


def test_targets_that_are_not_relu_mlps_are_refused_in_one_line():
    with pytest.raises(TicketlabError, match="holds a Conv2d"):
        layers_of(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(2, 2)))
    with pytest.raises(TicketlabError, match="without a ReLU"):
        layers_of(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 2)))
    with pytest.raises(TicketlabError, match="unknown construction"):
        constructions.construct(layers_of(target_module()), "l-plus-1", 0.1, 0)


def test_the_construction_is_a_stored_resumable_run(tmp_path, monkeypatch, capsys):
    weights = tmp_path / "target.safetensors"
    store.save_weights(weights, target_module())
    plan = ConstructPlan(target=str(weights), eps=0.1)
    row = run_construct_plan(plan, root=tmp_path / "runs")
    folder = tmp_path / "runs" / f"construct_{digest(identity(plan, load_target(str(weights))))}" / "seed_0"
    assert row["folder"] == str(folder) and store.is_done(folder) and row["within_eps"]
    init, final = store.load_weights(folder / store.INIT), store.load_weights(folder / store.FINAL)
    mask = store.load_weights(folder / store.MASK)
    assert sorted(init) == ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight", "6.bias", "6.weight"]
    assert all(torch.equal(final[k], init[k] * mask[k]) for k in mask)
    assert int(sum(m.sum() for m in mask.values())) == row["kept"]
    assert init["0.weight"].abs().max() <= 1 and init["0.weight"].shape == (2 * row["width_factor"], 2)

    def fail(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("a finished construction was computed again")

    monkeypatch.setattr("ticketlab.experiments.construct.construct", fail)
    assert run_construct_plan(plan, root=tmp_path / "runs") == row  # read back
    # the command reads the same folder back, and says bad input in one line
    assert main(["construct", "--target", str(weights), "--eps", "0.1", "--out", str(tmp_path / "runs"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["folder"] == str(folder)
    assert main(["construct", "--target", "planted_square_3_5", "--out", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.startswith("ticketlab: error: --target 'planted_square_3_5' is neither")
    assert main(["construct", "--target", str(weights), "--eps", "0", "--out", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err == "ticketlab: error: --eps must be a positive number, got 0.0\n"
    monkeypatch.undo()
    other = run_construct_plan(ConstructPlan(target=str(weights), eps=0.05), root=tmp_path / "runs")
    assert other["folder"] != row["folder"]  # eps is part of the identity


def test_a_planted_target_and_a_stored_level_are_targets(tmp_path):
    layers = load_target("planted_relu_3_50")
    assert [lay.weight.tolist() for lay in layers] == [[[1.0]], [[1.0]]]
    level = tmp_path / "level_1"
    level.mkdir()
    store.save_weights(level / store.FINAL, target_module())
    store.save_weights(level / store.MASK, {"0.weight": torch.tensor([[1.0, 0], [1, 1], [1, 1], [1, 1]]).double(),
                                            "2.weight": torch.ones(2, 4).double()})
    masked = load_target(str(level))
    assert masked[0].weight[0].tolist() == [0.5, 0.0] and masked[1].weight.tolist() == W2.tolist()
