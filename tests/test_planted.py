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
    _, masks, _ = construct(task, 5, 50, seed=0)
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
    out = model(data.test_x.double()).detach().numpy()
    # the module holds float32 weights: equal to float32 rounding (float64 construction: below 1e-12)
    assert np.abs(out - goal).max() < 1e-5 * max(1.0, np.abs(goal).max())
    layers, masks, _ = construct(task, 5, 50, 7)
    exact = evaluate_layers([(w * m, b) for (w, b), m in zip(layers, masks)], data.test_x.double().numpy())
    assert np.abs(exact - goal).max() < 1e-12 * max(1.0, np.abs(goal).max())
    assert np.abs(full.detach().numpy() - goal).max() > 1e-3  # the rest of the network is not the target


def test_circle_target_classifies_the_circle_data():
    data = load_dataset(DatasetHparams(name="circle", val_size=900))
    logits = evaluate_layers(target("circle", 5), data.test_x.double().numpy())
    assert (logits.argmax(1) == data.test_y.numpy()).mean() > 0.95


def test_planting_is_deterministic_and_seeded():
    a, b, c = (construct("circle", 5, 50, s)[0] for s in (3, 3, 4))
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
