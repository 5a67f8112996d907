"""Early-bird tickets (training/early_bird.py, experiments/early_bird.py): the distance, the rule (5 masks,
the newest within epsilon of each older one), the search stopping where it is drawn, resume, and the ticket
in `compare` with its search's cost and its overlap with IMP's mask; the channel variant's mask (network
slimming's threshold), its L1 term, and its ticket with those channels removed exactly."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from ticketlab.config import ModelHparams, TrainingHparams
from ticketlab.data import DataSplits
from ticketlab.errors import TicketlabError
from ticketlab.experiments.compare import run_compare
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.training.early_bird import (SPARSITY, EarlyBirdFound, EarlyBirdSearch, batch_norms, channel_mask,
                                           channel_ticket, distance, magnitude_mask, normalised_layers)
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


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                         nn.BatchNorm1d(8), nn.Linear(8, 2))


def test_the_channel_mask_is_network_slimmings_threshold_over_every_bn_layer():
    net = nn.Sequential(nn.BatchNorm1d(3), nn.BatchNorm1d(2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([0.1, -0.5, 0.3]))
        net[1].weight.copy_(torch.tensor([0.2, 0.9]))
    # 5 scales, density 0.6: threshold = ascending |γ| at int(5 * 0.4) = 2, i.e. 0.3; kept: |γ| > 0.3 strictly
    mask = channel_mask(net, 0.6)
    assert mask["0.weight"].tolist() == [False, True, False] and mask["1.weight"].tolist() == [False, True]
    with pytest.raises(TicketlabError, match="batch-norm"):
        channel_mask(_net(), 0.5)


def test_the_channel_search_adds_the_l1_subgradient_to_the_bn_scales_only():
    data = _data()
    grads = []
    for policy in (EarlyBirdSearch(0.5, 1000), EarlyBirdSearch(0.5, 1000, variant="channels")):
        net = _bn_net()
        with torch.no_grad():
            net[1].weight.copy_(torch.linspace(-1, 1, 8))
        policy.network(net)
        nn.functional.cross_entropy(net(data.train_x[:20]), data.train_y[:20]).backward()
        policy.after_backward(1, net)
        grads.append({k: p.grad.clone() for k, p in net.named_parameters()})
    plain, slimmed = grads
    for k in plain:
        scale = k in ("1.weight", "5.weight")
        sign = torch.sign(torch.linspace(-1, 1, 8)) if k == "1.weight" else torch.ones(8)
        expected = plain[k] + SPARSITY * sign if scale else plain[k]
        assert torch.equal(slimmed[k], expected), k


def test_the_bn_is_matched_to_the_layer_whose_output_it_reads():
    # 1 reads 0's output; 5 reads a ReLU's output, so no layer's filters are masked for it
    assert normalised_layers(_bn_net(), (6,)) == {"1": "0.weight"}


def test_a_channel_ticket_trains_with_its_channels_exactly_removed():
    net = _bn_net()
    channels = Mask({"1.weight": torch.tensor([1, 0, 1, 1, 0, 1, 1, 1]), "5.weight": torch.tensor([0, 1] * 4)})
    policy = channel_ticket(net, channels, (6,))
    assert policy.mask["0.weight"][[1, 4]].sum() == 0 and policy.mask["0.weight"].sum() == 6 * 6
    assert bool(policy.mask["3.weight"].all()) and policy.channel_density() == 10 / 16
    hp = TrainingHparams(optimizer="adam", lr=1e-2, batch_size=20, train_steps=40, eval_every=20)
    result = train(net, _data(), hp, data_seed=0, policy=policy)
    assert result.checks == {"weight": 0.0, "grad": 0.0, "optimizer_state": 0.0}
    for bn, removed in (("1", [1, 4]), ("5", [0, 2, 4, 6])):
        assert not net.get_submodule(bn).weight[removed].any() and not net.get_submodule(bn).bias[removed].any()
    net.eval()
    with torch.no_grad():
        hidden = net[:2](_data().test_x)
    assert not hidden[:, [1, 4]].any()  # a removed channel's output is exactly 0


def test_channel_early_bird_tickets_in_compare_and_refused_without_batch_norm(tmp_path, synthetic):
    config = small_config(model={"name": "cifar_resnet_8_2"}, training={"train_steps": 60, "eval_every": 30,
                                                                        "batch_size": 100})
    result = run_compare(config, ["early-bird-channel"], [0.5], checks=(), data=synthetic, root=tmp_path)
    (row,) = [r for r in result.rows if r["method"] == "early-bird-channel"]
    folder = result.experiments["early-bird-channel"] / "seed_0" / "density_0.5"
    search = json.loads((folder / "search" / "summary.json").read_text())
    ticket = json.loads((folder / "summary.json").read_text())
    drawn = Mask.load(folder / "search" / "mask.safetensors")
    model = build_model(ModelHparams("cifar_resnet_8_2"), synthetic.input_shape, 10, seed=0)
    assert set(drawn.keys()) == {f"{name}.weight" for name in batch_norms(model)}  # a mask over BN channels
    assert ticket["channel_density"] == pytest.approx(drawn.density()) == search["density"]
    assert ticket["early_bird_step"] == search["step"] and row["status"] == "ok"
    assert 0 < ticket["density"] < 1 and ticket["checks"]["pruned_max_abs"] == {"weight": 0.0, "grad": 0.0,
                                                                        "optimizer_state": 0.0}
    with pytest.raises(TicketlabError, match="no batch norm"):
        run_compare(small_config(), ["early-bird-channel"], [0.5], checks=(), data=synthetic, root=tmp_path)
