"""Dynamic sparse training and gradual pruning (training/dynamic.py) on the one loop: exact per-layer counts
at every step, inactive weights, gradients and optimizer moments exactly 0 at every step, RigL's growth by
the gradient of w * m, grown weights starting at 0 and disjoint from the dropped ones, the schedules to the
weight, the skipped optimizer step, FLOPs, and bit-identical resume with the mask in the checkpoint."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from ticketlab.data import DataSplits
from ticketlab.config import TrainingHparams
from ticketlab.masks import Mask, prunable
from ticketlab.training.cost import forward_flops, uses_per_example
from ticketlab.training.dynamic import METHODS, DynamicMask, drop_count, drop_fraction, gmp_sparsity
from ticketlab.training.loop import Checkpointing, Hooks, train

HP = TrainingHparams(optimizer="adam", lr=3e-3, batch_size=16, train_steps=60, eval_every=20)


def _data(n: int = 320, d: int = 10, seed: int = 0) -> DataSplits:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()
    return DataSplits(x[:240], y[:240], x[240:280], y[240:280], x[280:], y[280:], num_classes=3)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 24), nn.ReLU(), nn.Linear(24, 12), nn.ReLU(), nn.Linear(12, 3))


def _random_mask(model: nn.Module, density: float, seed: int = 1) -> Mask:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in prunable(model).items():
        keep = max(1, round(density * p.numel()))
        flat = torch.zeros(p.numel(), dtype=torch.bool)
        flat[torch.randperm(p.numel(), generator=g)[:keep]] = True
        out[name] = flat.view_as(p)
    return Mask(out)


class Checked(DynamicMask):
    """Asserts the invariants after every step, and records every update."""

    log: list

    def after_step(self, step, net, optimizer):  # noqa: ANN001, ANN201
        before = {k: p.detach().clone() for k, p in self.params.items()}
        super().after_step(step, net, optimizer)
        if not hasattr(self, "log"):
            self.log = []
        counts = self.mask.counts()
        if self.spec.method != "gmp":
            assert counts == self.targets, (step, counts)
        for name, p in self.params.items():
            off = ~self.mask.tensors[name]
            assert p.detach()[off].abs().max().item() == 0.0 if off.any() else True
            assert p.grad[off].abs().max().item() == 0.0 if off.any() else True
            for value in optimizer.state[p].values():
                if torch.is_tensor(value) and value.shape == p.shape and off.any():
                    assert value[off].abs().max().item() == 0.0, (step, name)
        if self.updates_at(step):
            self.log.append((step, {k: {kk: vv.clone() for kk, vv in v.items()} for k, v in self.last.items()},
                             before, {k: optimizer.state[p] for k, p in self.params.items()}))


def _policy(name: str, model: nn.Module, density: float = 0.3, cls=Checked, **changes) -> DynamicMask:  # noqa: ANN001
    spec = dataclasses.replace(METHODS[name], **({} if name == "deepr" else {"every": 10}), **changes)
    start = Mask.ones(model) if name == "gmp" else _random_mask(model, density)
    targets = {k: max(1, round(density * p.numel())) for k, p in prunable(model).items()}
    return cls(start, spec, targets, HP.train_steps, 7, (10,), HP.batch_size)


@pytest.mark.parametrize("name", ["set", "set-magnitude", "rigl"])
def test_every_step_keeps_each_layers_count_and_zeroes_inactive_weights_grads_and_moments(name):
    model = _net()
    policy = _policy(name, model)
    result = train(model, _data(), HP, data_seed=0, policy=policy)
    assert len(policy.log) == policy.updates == 5  # steps 0, 10, 20, 30, 40 (end = 0.75 * 60 = 45)
    assert result.checks == {"weight": 0.0, "grad": 0.0, "optimizer_state": 0.0}
    changed = sum(int(layer["dropped"].sum()) for _, last, _, _ in policy.log for layer in last.values())
    assert changed > 0  # the mask really moved
    for step, last, _, _ in policy.log:
        for layer in last.values():
            assert not (layer["dropped"] & layer["grown"]).any()  # disjoint (regrow_dropped off)
            assert int(layer["dropped"].sum()) == int(layer["grown"].sum())


def test_rigl_grows_where_the_gradient_of_the_masked_weights_is_largest_and_skips_the_step():
    model = _net()
    policy = _policy("rigl", model, cls=DynamicMask)
    data = _data()
    grads_seen = {}

    class Spy(DynamicMask):
        def after_backward(self, step, net):  # noqa: ANN001, ANN201
            if self.updates_at(step):  # the gradient of w * m: the loss's gradient with the weights as they are
                x, y = data.train_x[self.order_indices(step)], data.train_y[self.order_indices(step)]
                w = {k: p.detach().clone().requires_grad_(True) for k, p in self.params.items()}
                out = torch.func.functional_call(net, {**dict(net.named_parameters()), **w}, (x,))
                torch.nn.functional.cross_entropy(out, y).backward()
                grads_seen[step] = {k: v.grad for k, v in w.items()}
                self.before = {k: p.detach().clone() for k, p in self.params.items()}
                self.old = {k: v.clone() for k, v in self.mask.tensors.items()}
            super().after_backward(step, net)

        def after_step(self, step, net, optimizer):  # noqa: ANN001, ANN201
            super().after_step(step, net, optimizer)
            if step == 20:
                for name, p in self.params.items():
                    old, new = self.old[name], self.mask.tensors[name]
                    grown, dropped = new & ~old, old & ~new
                    n = int(grown.sum())
                    active = int(old.sum())
                    assert int(dropped.sum()) == n == math.floor(drop_fraction(self.spec, 20, 45) * active)
                    score = torch.where(~old, grads_seen[20][name].abs(), -torch.inf).flatten()
                    assert set(grown.flatten().nonzero().flatten().tolist()) == \
                        set(torch.sort(score, descending=True, stable=True).indices[:n].tolist())
                    kept = old & new  # no optimizer step on an update step: kept weights did not move
                    assert torch.equal(p.detach()[kept], self.before[name][kept])
                    assert p.detach()[grown].abs().max().item() == 0.0  # grown weights start at 0 ...
                    for value in optimizer.state[p].values():  # ... with zero moments
                        if torch.is_tensor(value) and value.shape == p.shape:
                            assert value[grown].abs().max().item() == 0.0
                self.checked = True

    from ticketlab.data import BatchOrder
    spy = Spy(policy.mask, policy.spec, policy.targets, HP.train_steps, 7, (10,), HP.batch_size)
    order = BatchOrder(len(data.train_x), HP.batch_size, 0, data.train_x.device)
    spy.order_indices = order.indices
    train(model, data, HP, data_seed=0, policy=spy)
    assert spy.checked


def test_the_drop_fraction_follows_the_cosine_schedule_and_stops_at_the_end():
    spec = METHODS["rigl"]
    assert drop_fraction(spec, 0, 750) == pytest.approx(0.3)
    assert drop_fraction(spec, 375, 750) == pytest.approx(0.15)
    assert drop_fraction(spec, 750, 750) == pytest.approx(0.0, abs=1e-12)
    # jaxpruner's published values at t = 100/250/500 of 750 (REFERENCE.md 11)
    assert [round(drop_fraction(spec, t, 750), 3) for t in (100, 250, 500)] == [0.287, 0.225, 0.075]
    assert drop_fraction(METHODS["set"], 500, 750) == 0.3
    assert drop_count(spec, 0.3, 101, 1000) == 30  # google-research/rigl: floor(0.3 * 101)
    assert drop_count(dataclasses.replace(spec, counting="round"), 0.3, 101, 1000) == 30  # rint(70.7) = 71 kept


def test_gmp_follows_the_cubic_schedule_to_the_weight_and_ends_on_the_budget():
    model = _net()
    policy = _policy("gmp", model)
    result = train(model, _data(), HP, data_seed=0, policy=policy)
    assert policy.end_step == 40  # t_end = t0 + n * Delta t at or before 0.75 of training
    assert policy.mask.counts() == policy.targets and [step for step, *_ in policy.log] == [0, 10, 20, 30, 40]
    assert gmp_sparsity(0.7, 0, 0, 40) == 0.0 and gmp_sparsity(0.7, 40, 0, 40) == pytest.approx(0.7)
    assert gmp_sparsity(0.7, 10, 0, 40) == pytest.approx(0.7 * (1 - 0.75 ** 3))
    sizes = {k: p.numel() for k, p in prunable(model).items()}
    for at in (10, 20, 30):  # after each update, every layer holds round(N (1 - s_t)) weights
        dropped = {k: sum(int(last[k]["dropped"].sum()) for s, last, _, _ in policy.log if s <= at) for k in sizes}
        for k, n in sizes.items():
            assert n - dropped[k] == round(n * (1 - gmp_sparsity(1 - policy.targets[k] / n, at, 0, 40)))
    # the network is the method's subnetwork only after the last pruning step: no early stop before it
    assert [e["step"] for e in result.evals if e.get("mask_settled") is False] == [0, 20, 40]
    assert result.early_stop["step"] == 60


def test_flops_count_the_active_weights_of_every_step():
    model = _net()
    policy = _policy("set", model, cls=DynamicMask, fraction=0.0)  # updates that change nothing: a fixed mask
    train(model, _data(), HP, data_seed=0, policy=policy)
    uses = uses_per_example(model, (10,))
    assert uses == {"0.weight": 1, "2.weight": 1, "4.weight": 1}
    assert policy.flops == 3 * forward_flops(uses, policy.mask.counts()) * HP.batch_size * HP.train_steps
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    assert uses_per_example(conv, (1, 8, 8)) == {"0.weight": 64, "2.weight": 1}


@pytest.mark.parametrize("name", ["set", "rigl", "gmp"])
def test_a_killed_run_resumes_bit_identically_masks_included(tmp_path, name):
    data = _data()
    whole_model = _net()
    whole = _policy(name, whole_model, cls=DynamicMask)
    expected = train(whole_model, data, HP, data_seed=0, policy=whole)

    class Killed(Exception):
        pass

    def kill(step, total):  # noqa: ANN001, ANN202
        if step == 35:
            raise Killed

    model = _net()
    ckpt = Checkpointing(tmp_path / "ckpt.pt", every=10)
    with pytest.raises(Killed):
        train(model, data, HP, data_seed=0, policy=_policy(name, model, cls=DynamicMask), checkpoint=ckpt,
              hooks=Hooks(progress=kill))
    model = _net()  # a new process: fresh weights, the starting mask; the checkpoint holds the rest
    resumed_policy = _policy(name, model, cls=DynamicMask)
    resumed = train(model, data, HP, data_seed=0, policy=resumed_policy, checkpoint=ckpt)
    assert resumed.evals == expected.evals
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), whole_model.state_dict().values()))
    assert all(torch.equal(resumed_policy.mask[k], whole.mask[k]) for k in whole.mask.keys())
    assert (resumed_policy.flops, resumed_policy.updates) == (whole.flops, whole.updates)


def test_deep_r_keeps_k_active_every_step_and_never_flips_a_sign():
    class Signs(Checked):  # Checked: exact counts and zero inactive weights, gradients, moments every step
        def after_step(self, step, net, optimizer):  # noqa: ANN001, ANN201
            super().after_step(step, net, optimizer)
            for name, p in self.params.items():
                on = self.mask.tensors[name]
                assert torch.equal(torch.sign(p.detach()[on]), self.signs[name][on]), (step, name)

    model = _net()
    policy = _policy("deepr", model, cls=Signs, noise=1e-2)
    train(model, _data(), dataclasses.replace(HP, optimizer="sgd", lr=0.5), data_seed=0, policy=policy)
    assert policy.updates == HP.train_steps
    moved = sum(int(last["grown"].sum()) for _, history, _, _ in policy.log for last in history.values())
    assert moved > 0  # links went dormant and others woke


def test_deep_r_noise_scales_with_the_learning_rate_and_woken_links_start_at_1e_12():
    spreads = []
    for lr in (0.1, 0.4):
        layer = nn.Linear(200, 50, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.full_like(layer.weight, 1.0))
        full = Mask({"weight": torch.ones(50, 200, dtype=torch.bool)})
        policy = DynamicMask(full, dataclasses.replace(METHODS["deepr"], l1=0.0, noise=0.05), {"weight": 10_000}, 10,
                             3, (200,), 1)
        policy.network(layer)
        policy.rewire(0, lr)
        spreads.append(float((layer.weight.detach() - 1.0).std()))
    assert spreads[0] == pytest.approx(0.1 * 0.05, rel=0.05) and spreads[1] == pytest.approx(0.4 * 0.05, rel=0.05)
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -1e-9, 0.0, 0.0]]))
    start = Mask({"weight": torch.tensor([[True, True, False, False]])})
    policy = DynamicMask(start, dataclasses.replace(METHODS["deepr"], l1=1.0, noise=0.0), {"weight": 2}, 10, 3,
                         (4,), 1)
    policy.network(layer)
    policy.rewire(0, 0.01)  # theta of the second: 1e-9 - 0.01 < 0: dormant; one of the three dormant wakes
    w = layer.weight.detach()[0]
    woken = int(policy.last["weight"]["grown"].nonzero()[0, 1])
    assert w[0] == pytest.approx(0.49) and policy.mask.counts() == {"weight": 2}
    assert woken in (1, 2, 3) and abs(float(w[woken])) == pytest.approx(1e-12)
    assert all(float(w[i]) == 0.0 for i in (1, 2, 3) if i != woken)


def test_deep_r_refuses_to_rewire_less_often_than_every_step():
    from ticketlab.errors import TicketlabError

    with pytest.raises(TicketlabError, match="DEEP R rewires after every step"):
        dataclasses.replace(METHODS["deepr"], every=10).check()


def test_top_picks_what_a_stable_sort_picks_ties_to_the_lower_index_never_minus_infinity():
    from ticketlab.masks import top_k as top

    g = torch.Generator().manual_seed(0)
    x = torch.randn(5000, generator=g)
    x[::7] = 0.5  # many ties
    x = torch.where(torch.rand(5000, generator=g) < 0.2, -torch.inf, x)
    finite = int(torch.isfinite(x).sum())
    for k in (0, 1, 100, 714, 2000, finite, finite + 10):
        want = torch.zeros(5000, dtype=torch.bool)
        want[torch.sort(x, descending=True, stable=True).indices[:min(k, finite)]] = True
        assert torch.equal(top(x, k), want), k
