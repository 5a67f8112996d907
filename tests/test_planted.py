"""Planted tickets: the tasks' data, the ground-truth counts of the reference, the planted subnetwork computing
the target exactly, recovery (precision / recall), the mse loss path, and plant + seek end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ticketlab import build_config
from ticketlab.cli import main
from ticketlab.config import DatasetHparams, TrainingHparams
from ticketlab.data import load_dataset
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.models.planted import construct, evaluate_layers, planted_mask, recovery, target
from ticketlab.training.evaluate import evaluate, training_loss
from ticketlab.training.loop import train


@pytest.mark.parametrize("task, planted, total", [("circle", 108, 5300), ("helix", 120, 5200), ("relu", 4, 5100)])
def test_ground_truth_counts_of_the_reference(task, planted, total):
    masks = construct(task, 5, 50, seed=0).masks
    assert sum(int(m.sum()) for m in masks) == planted
    assert sum(m.size for m in masks) == total


@pytest.mark.parametrize("task", ["circle", "helix", "relu"])
def test_planted_subnetwork_alone_computes_the_target(task):
    data = load_dataset(DatasetHparams(name=task, val_size=900))
    name = f"planted_{task}_5_50"
    model = build_model(build_config({"model": {"name": name}}).model, data.input_shape, data.num_classes, 7).double()
    mask = planted_mask(name, 7)
    full = model(data.test_x.double())
    with torch.no_grad():
        for k, p in model.named_parameters():
            if k in mask:
                p.mul_(mask[k].double())
    goal = evaluate_layers(target(task, 5), data.test_x.double().numpy())
    planting = construct(task, 5, 50, 7)
    out = model(data.test_x.double()).detach().numpy() / planting.output_scale
    # the module holds float32 weights: equal to float32 rounding (float64 construction: below 1e-12)
    assert np.abs(out - goal).max() < 1e-5 * max(1.0, np.abs(goal).max())
    exact = evaluate_layers([(w * m, b) for (w, b), m in zip(planting.layers, planting.masks)],
                            data.test_x.double().numpy()) / planting.output_scale
    assert np.abs(exact - goal).max() < 1e-12 * max(1.0, np.abs(goal).max())
    assert np.abs(full.detach().numpy() - goal).max() > 1e-3  # the rest of the network is not the target


def test_circle_target_classifies_the_circle_data():
    data = load_dataset(DatasetHparams(name="circle", val_size=900))
    logits = evaluate_layers(target("circle", 5), data.test_x.double().numpy())
    assert (logits.argmax(1) == data.test_y.numpy()).mean() > 0.95


def test_planting_is_deterministic_and_seeded():
    a, b, c = (construct("circle", 5, 50, s).layers for s in (3, 3, 4))
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))
    assert not np.array_equal(a[1][0], c[1][0])


def test_precision_and_recall_on_hand_made_masks():
    planted = {"a": torch.tensor([1, 1, 0, 0], dtype=torch.bool), "b": torch.tensor([1, 0], dtype=torch.bool)}
    kept = {"a": torch.tensor([1, 0, 1, 1], dtype=torch.bool), "b": torch.tensor([1, 1], dtype=torch.bool)}
    r = recovery(kept, planted)
    assert (r["found"], r["kept"], r["planted"]) == (2, 5, 3)
    assert r["precision"] == 2 / 5 and r["recall"] == 2 / 3
    nothing = recovery({k: torch.zeros_like(v) for k, v in planted.items()}, planted)
    assert math.isnan(nothing["precision"]) and nothing["recall"] == 0


def test_mse_loss_path_trains_regression_and_has_no_accuracy():
    data = load_dataset(DatasetHparams(name="helix", val_size=900))
    assert data.train_y.dtype == torch.float32 and data.train_y.shape[1] == 3
    config = build_config({"model": {"name": "planted_helix_5_50"}, "training": {"train_steps": 100}})
    assert config.training.loss == "mse" and config.dataset.name == "helix"
    model = build_model(config.model, data.input_shape, data.num_classes, 0)
    before, acc = evaluate(model, data.test_x, data.test_y)
    assert math.isnan(acc) and before > 0
    hp = TrainingHparams(lr=1e-3, batch_size=32, train_steps=100, eval_every=50, loss="mse")
    result = train(model, data, hp, Mask.ones(model), data_seed=0)
    assert result.final["test_loss"] < before and math.isnan(result.final["test_accuracy"])
    with pytest.raises(TicketlabError, match="loss = \"mse\""):
        training_loss("cross_entropy", torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(TicketlabError, match="regression targets"):
        training_loss("mse", torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))


def test_plant_and_seek_commands_end_to_end(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["plant", "--task", "relu", "--out", str(runs), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["planted_weights"], record["weights"]) == (4, 5100)
    assert record["subnetwork_vs_target_max_abs"] < 1e-9
    assert main(["seek", "--task", "relu", "--methods", "imp,random,edge-popup", "--densities", "0.05",
                 "--replicates", "2", "--train-steps", "40", "--eval-every", "20", "--threads", "1",
                 "--workers", "1", "--quiet", "--out", str(runs), "--report-dir", str(tmp_path / "rep"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["rows"]
    assert {(r["method"], r["seed"]) for r in rows} == {(m, s) for m in ("imp", "random", "edge-popup")
                                                          for s in (0, 1)}
    assert all(r["planted"] == 4 and 0 <= r["recall"] <= 1 for r in rows)
    assert all(r["accuracy"] is None and r["loss"] > 0 for r in rows)  # regression: loss, no accuracy
    assert (tmp_path / "rep" / "seek.png").stat().st_size > 0
    assert main(["seek", "--task", "relu", "--methods", "snip", "--out", str(runs), "--quiet"]) == 2


def test_output_layer_is_planted_as_plant_n_seek_plants_it():
    """A 2-3-2 random network and a 2-1-2 target, each step of the reference's plant_target written out: the
    L1-closest sign-agreeing unit with c = v.w / v.v, the fallback c = |w / v| on the first planted connection
    (own index, else the first unused unit), and the outputs put back in the target's order."""
    from ticketlab.models.planted import plant
    w0, b0 = np.array([[0.2, -0.5, 0.4], [-0.3, 0.1, -0.9]]), np.array([0.1, 0.2, 0.3])
    w1, b1 = np.array([[-0.6, 0.7], [0.3, 0.2], [-0.1, 0.5]]), np.array([-0.2, 0.05])
    goal = [(np.array([[1.0], [-2.0]]), np.array([0.5])), (np.array([[3.0, 4.0]]), np.array([0.0, 1.0]))]
    layers, masks, scale = plant(goal, [(w0, b0), (w1, b1)])
    # hidden: units 0 and 2 agree in sign with (0.5, 1, -2); unit 0 is closer in L1 (0.081 against 0.129)
    c0 = (0.5 * 0.1 + 1 * 0.2 + 2 * 0.3) / (0.5 ** 2 + 1 + 4)
    assert np.allclose(layers[0][0][:, 0], [c0, -2 * c0]) and np.isclose(layers[0][1][0], 0.5 * c0)
    # output 0 (0, 3 / c0) matches unit 1 (weight 0.7 > 0); output 1 (1, 4 / c0) finds no sign match in unit 0
    # (weight -0.6): fallback to the first unused unit, c = 0.6 / (4 / c0)
    assert np.allclose(scale, [0.7 * c0 / 3, 0.6 * c0 / 4])
    assert np.allclose(layers[1][0][0], [0.7, 0.6]) and np.allclose(layers[1][1], [0.0, 0.6 * c0 / 4])
    assert np.allclose(layers[1][0][1:], [[0.2, 0.3], [0.5, -0.1]])  # the rest of the units, permuted with them
    assert masks[1].tolist() == [[True, True], [False, False], [False, False]]
    x = np.random.default_rng(0).uniform(-1, 1, size=(50, 2))
    ticket = [(w * m, b) for (w, b), m in zip(layers, masks)]
    assert np.allclose(evaluate_layers(ticket, x), scale * evaluate_layers(goal, x), atol=1e-12)
    exact, _, ones = plant(goal, [(w0, b0), (w1, b1)], output="exact")
    assert ones.tolist() == [1.0, 1.0] and np.allclose(exact[1][0][0], [3 / c0, 4 / c0])


def test_scaled_planting_keeps_the_init_scale_and_hides_the_ticket_from_magnitude():
    """Circle, depth 5, width 50, seeds 0-2: scaled planting keeps planted weights and outputs on the init's
    scale, so |w| at init finds about the ticket's density of it (the reference: 7.4%); exact planting
    (c = 1 at the output) gives output weights above 1e4 that magnitude finds for that alone (75%)."""
    data = load_dataset(DatasetHparams(name="circle", val_size=900))
    for seed in range(3):
        for output in ("scaled", "exact"):
            p = construct("circle", 5, 50, seed, output)
            weights = np.concatenate([np.abs(w).ravel() for w, _ in p.layers])
            planted = np.concatenate([m.ravel() for m in p.masks])
            found = planted[np.argsort(-weights, kind="stable")[:int(planted.sum())]].mean()
            biggest = max(np.abs(w[m]).max() for (w, _), m in zip(p.layers, p.masks))
            logits = np.abs(evaluate_layers(p.layers, data.test_x.double().numpy())).max()
            if output == "scaled":
                assert biggest < 30 and logits < 50 and found < 0.2
                assert np.all((p.output_scale > 1e-7) & (p.output_scale < 1e-2))
            else:
                assert biggest > 1e4 and logits > 1e4 and found > 0.7


def test_planted_folders_carry_the_construction_and_the_output_rule(tmp_path):
    from ticketlab.experiments.seek import plant_record
    from ticketlab.identity import model_signature
    from ticketlab.models.planted import CONSTRUCTION
    hp = build_config({"model": {"name": "planted_relu_5_50"}}).model
    assert model_signature(build_model(hp, (1,), 1, 0))["construction"] == CONSTRUCTION == 2
    scaled, exact = (plant_record("relu", 5, 50, 0, tmp_path, output) for output in ("scaled", "exact"))
    assert scaled["folder"] != exact["folder"] and exact["output_scale"] == [1.0]
    assert scaled["subnetwork_vs_target_max_abs"] < 1e-12 and scaled["output_scale"][0] < 1e-2
    with pytest.raises(TicketlabError, match="planted model"):
        build_config({"model": {"name": "lenet_300_100", "planted_output": "exact"}})
