"""Early-bird tickets (training/early_bird.py, experiments/early_bird.py): the distance, the rule (5 masks,
the newest within epsilon of each older one), the search stopping where it is drawn, resume, and the ticket
in `compare` with its search's cost and its overlap with IMP's mask."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from ticketlab.config import TrainingHparams
from ticketlab.data import DataSplits
from ticketlab.experiments.compare import run_compare
from ticketlab.masks import Mask
from ticketlab.training.early_bird import EarlyBirdFound, EarlyBirdSearch, distance, magnitude_mask
from ticketlab.training.loop import Checkpointing, Hooks, train

from conftest import small_config


def _data() -> DataSplits:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g)
    y = (x[:, 0] > 0).long()
    return DataSplits(x[:200], y[:200], x[200:250], y[200:250], x[250:], y[250:], num_classes=2)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))


def test_the_mask_is_one_global_ranking_and_the_distance_counts_differing_positions():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.1, -0.9], [0.5, 0.2]]))
        net[1].weight.copy_(torch.tensor([[0.3, -0.05]]))
    mask = magnitude_mask(net, 0.5)  # keep 3 of 6 by |w|, over both layers at once
    assert mask["0.weight"].tolist() == [[False, True], [True, False]] and mask["1.weight"].tolist() == [[True, False]]
    other = Mask({"0.weight": torch.tensor([[True, True], [True, False]]), "1.weight": torch.tensor([[False, False]])})
    assert distance(mask, other) == pytest.approx(2 / 6)


def test_the_search_stops_at_the_fifth_epoch_start_once_the_masks_agree():
    hp = TrainingHparams(optimizer="sgd", lr=1e-12, batch_size=20, train_steps=200, eval_every=50)
    search = EarlyBirdSearch(0.3, steps_per_epoch=10)  # weights barely move: every mask is the same
    with pytest.raises(EarlyBirdFound) as found:
        train(_net(), _data(), hp, data_seed=0, policy=search)
    assert (found.value.step, found.value.epoch) == (40, 4) and found.value.distances == [0.0] * 4
    assert search.history == [None, None, None, None, 0.0]
    moving = EarlyBirdSearch(0.3, steps_per_epoch=10, epsilon=0.0)  # never close enough at a real LR
    train(_net(), _data(), dataclasses.replace(hp, lr=0.5, train_steps=60), data_seed=0, policy=moving)
    assert len(moving.history) == 6 and moving.history[4] > 0


def test_a_killed_search_resumes_with_its_masks(tmp_path):
    hp = TrainingHparams(optimizer="adam", lr=1e-3, batch_size=20, train_steps=300, eval_every=10)
    with pytest.raises(EarlyBirdFound) as whole:
        train(_net(), _data(), hp, data_seed=0, policy=EarlyBirdSearch(0.3, 10, epsilon=0.05))

    def kill(step, total):  # noqa: ANN001, ANN202
        if step == 37:
            raise KeyboardInterrupt

    ckpt = Checkpointing(tmp_path / "ckpt.pt", every=10)
    with pytest.raises(KeyboardInterrupt):
        train(_net(), _data(), hp, data_seed=0, policy=EarlyBirdSearch(0.3, 10, epsilon=0.05), checkpoint=ckpt,
              hooks=Hooks(progress=kill))
    resumed = EarlyBirdSearch(0.3, 10, epsilon=0.05)
    with pytest.raises(EarlyBirdFound) as again:
        train(_net(), _data(), hp, data_seed=0, policy=resumed, checkpoint=ckpt)
    assert (again.value.step, again.value.distances) == (whole.value.step, whole.value.distances)
    assert all(torch.equal(again.value.mask[k], whole.value.mask[k]) for k in whole.value.mask.keys())


def test_early_bird_tickets_in_compare_with_their_search_cost_and_overlap_with_imp(tmp_path, synthetic):
    config = small_config(training={"train_steps": 150, "eval_every": 50, "batch_size": 250}, pruning={"rate": 0.5})
    result = run_compare(config, ["imp", "early-bird"], [0.25], checks=(), data=synthetic, root=tmp_path)
    (row,) = [r for r in result.rows if r["method"] == "early-bird"]
    folder = result.experiments["early-bird"] / "seed_0" / "density_0.25"
    search = json.loads((folder / "search" / "summary.json").read_text())
    ticket = json.loads((folder / "summary.json").read_text())
    assert search["found"] and search["step"] % search["steps_per_epoch"] == 0 and search["step"] < 150
    assert ticket["early_bird_step"] == search["step"] and search["largest_distances"][-1] <= 0.1
    assert row["density"] == pytest.approx(0.25, abs=1e-3) and row["status"] == "ok"
    # cost: the dense search up to its step, then the ticket's training at its density
    assert row["train_cost"] == pytest.approx(search["step"] / 150 + ticket["density"], rel=1e-6)
    assert 0.0 < row["iou_with_imp"] <= 1.0
    imp_mask = Mask.load(result.experiments["imp"] / "seed_0" / "level_2" / "mask.safetensors")
    eb_mask = Mask.load(folder / "mask.safetensors")
    both = sum(int((imp_mask[k] & eb_mask[k]).sum()) for k in imp_mask.keys())
    either = sum(int((imp_mask[k] | eb_mask[k]).sum()) for k in imp_mask.keys())
    assert row["iou_with_imp"] == pytest.approx(both / either)
