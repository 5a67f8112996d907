"""Strong tickets: edge-popup's exact per-layer top-k, frozen weights (bitwise), the straight-through gradient,
supermasks, large_final_same_sign, resume, and the `strong` command end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from ticketlab import build_config
from ticketlab.cli import main
from ticketlab.experiments.plan import resolve
from ticketlab.experiments.registry import make_options
from ticketlab.experiments.strong import strong_jobs
from ticketlab.jobs import Runtime
from ticketlab.config import TrainingHparams
from ticketlab.data import DataSplits
from ticketlab.errors import TicketlabError
from ticketlab.masks import prunable
from ticketlab.training.supermask import (MaskedNet, StrongSpec, kept_count, large_final_same_sign, learn_mask,
                                          prepare_frozen, topk_mask)


def _data(n: int = 256, d: int = 8, classes: int = 3, seed: int = 0) -> DataSplits:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    return DataSplits(x[:160], y[:160], x[160:200], y[160:200], x[200:], y[200:], num_classes=classes)


def _bn_net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


HP = TrainingHparams(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=32, train_steps=30,
                     eval_every=10)


def test_kept_count_rounds_half_up_and_keeps_one():
    assert kept_count(10, 0.25) == 3 and kept_count(10, 0.24) == 2 and kept_count(1000, 0.0001) == 1
    assert kept_count(7, 1.0) == 7


def test_topk_keeps_exactly_k_and_breaks_ties_by_lower_index():
    scores = torch.tensor([[1.0, 3.0, 3.0], [3.0, 0.5, 2.0]])
    m = topk_mask(scores, 2)
    assert m.tolist() == [[0, 1, 1], [0, 0, 0]]  # three 3.0s: the two lowest flat indices win
    assert int(topk_mask(scores, 4).sum()) == 4


def test_edge_popup_mask_keeps_exactly_k_per_layer():
    model = prepare_frozen(_bn_net(), StrongSpec(k=0.3))
    net = MaskedNet(model, StrongSpec(k=0.3), torch.Generator().manual_seed(0))
    mask = net.binary_mask()
    for name, p in prunable(model).items():
        assert mask.counts()[name] == kept_count(p.numel(), 0.3) == math.floor(0.3 * p.numel() + 0.5)


def test_straight_through_gradient_reaches_every_score():
    model = prepare_frozen(_bn_net(), StrongSpec(k=0.5))
    net = MaskedNet(model, StrongSpec(k=0.5), torch.Generator().manual_seed(0))
    data = _data()
    nn.functional.cross_entropy(net(data.train_x), data.train_y).backward()
    mask = net.binary_mask()
    for s, name in zip(net.scores, net.names):
        assert s.grad is not None
        pruned = ~mask[name]
        assert bool((s.grad[pruned] != 0).any())  # pruned weights' scores learn too (straight-through)
    assert all(p.grad is None for p in model.parameters())


def test_edge_popup_never_changes_a_weight_and_updates_bn_statistics():
    model = prepare_frozen(_bn_net(), StrongSpec(k=0.5))
    bn = model[1]
    assert bool((bn.weight == 1).all()) and bool((bn.bias == 0).all())  # non-affine
    before = {k: v.clone() for k, v in model.named_parameters()}
    stats = bn.running_mean.clone()
    learned = learn_mask(model, _data(), HP, StrongSpec(k=0.5), seed=3)
    assert learned.weights_changed == []
    assert all(torch.equal(v, before[k]) for k, v in model.named_parameters())  # bitwise
    assert not torch.equal(bn.running_mean, stats)
    assert learned.result.final["step"] == 30 and 0 <= learned.result.final["test_accuracy"] <= 1


def test_signed_constant_keeps_signs_at_the_kaiming_constant():
    model = _bn_net()
    signs = torch.sign(model[0].weight.detach().clone())
    prepare_frozen(model, StrongSpec(weights="signed_constant", k=0.25, scale_fan=True))
    w = model[0].weight
    assert torch.equal(torch.sign(w), signs)
    assert torch.allclose(w.abs(), torch.full_like(w, math.sqrt(2 / 8) / math.sqrt(0.25)))


def test_the_scale_fan_rules_are_the_papers_fan_and_the_codes_and_the_default_keeps_its_folders(tmp_path):
    paper, code = _bn_net(), _bn_net()
    prepare_frozen(paper, StrongSpec(weights="signed_constant", k=0.3, scale_fan=True))
    prepare_frozen(code, StrongSpec(weights="signed_constant", k=0.3, scale_fan=True, scale_fan_rule="hidden-networks"))
    # the paper: sqrt(2 / (fan_in k)); hidden-networks' code: fan_in (1 - prune_rate) = fan_in (1 - k)
    assert torch.allclose(paper[0].weight.abs(), torch.full_like(paper[0].weight, math.sqrt(2 / (8 * 0.3))))
    assert torch.allclose(code[0].weight.abs(), torch.full_like(code[0].weight, math.sqrt(2 / (8 * 0.7))))
    assert paper[0].weight.abs().max() / code[0].weight.abs().max() == pytest.approx(math.sqrt(0.7 / 0.3))  # 1.53
    for bad, message in ((StrongSpec(weights="signed_constant", scale_fan_rule="hidden-networks"), "only with "
                          "--scale-fan"), (StrongSpec(weights="signed_constant", k=1.0, scale_fan=True,
                                                      scale_fan_rule="hidden-networks"), "needs k < 1"),
                         (StrongSpec(weights="signed_constant", scale_fan=True, scale_fan_rule="x"), "unknown")):
        with pytest.raises(TicketlabError, match=message):
            bad.check()
    # folders of the default rule are named as before there were two rules (pinned: computed by b739203)
    config = build_config({"kind": "train", "dataset": {"name": "synthetic", "val_size": 500},
                           "model": {"name": "mlp_32_16"}, "training": {"train_steps": 20}})
    runtime = Runtime(make_options(root=tmp_path))
    reps = resolve(config, [0], runtime)
    names = [strong_jobs(config, spec, [spec.k], reps, runtime)[0][spec.k].name for spec in
             (StrongSpec(weights="signed_constant", k=0.3, scale_fan=True), StrongSpec(k=0.5),
              StrongSpec(weights="signed_constant", k=0.3, scale_fan=True, scale_fan_rule="hidden-networks"))]
    assert names[:2] == ["strong_12a0ec6f0cec09ae", "strong_c1cb7b8bf17c556f"] and names[2] not in names[:2]


def test_supermask_learns_a_binary_mask_without_moving_weights():
    model = prepare_frozen(_bn_net(), StrongSpec("supermask", k=0.5))
    before = {k: v.clone() for k, v in model.named_parameters()}
    learned = learn_mask(model, _data(), HP, StrongSpec("supermask", k=0.5), seed=0)
    assert all(torch.equal(v, before[k]) for k, v in model.named_parameters())
    assert 0 < learned.mask.density() < 1


def test_large_final_same_sign_on_hand_made_weights():
    init = {"w": torch.tensor([[1.0, -1.0, 1.0, -1.0]])}
    final = {"w": torch.tensor([[5.0, 4.0, 0.5, -3.0]])}  # signs kept at 0, 2, 3; flipped at 1
    mask = large_final_same_sign(init, final, 0.5)
    assert mask["w"].tolist() == [[True, False, False, True]]  # |5| and |-3|: the largest same-sign ones


def test_resume_from_a_checkpoint_is_identical(tmp_path):
    spec = StrongSpec(k=0.4)
    ref = learn_mask(prepare_frozen(_bn_net(), spec), _data(), HP, spec, seed=5)

    class Killed(Exception):
        pass

    def kill(step: int, total: int) -> None:
        if step == 25:
            raise Killed

    with pytest.raises(Killed):
        learn_mask(prepare_frozen(_bn_net(), spec), _data(), HP, spec, seed=5, checkpoint=tmp_path / "c.pt",
                   checkpoint_every=10, progress=kill)
    assert (tmp_path / "c.pt").is_file()
    again = learn_mask(prepare_frozen(_bn_net(), spec), _data(), HP, spec, seed=5, checkpoint=tmp_path / "c.pt",
                       checkpoint_every=10)
    assert all(torch.equal(ref.mask[k], again.mask[k]) for k in ref.mask.keys())
    assert ref.result.evals == again.result.evals


SMALL = ["--dataset", "synthetic", "--model", "mlp_32_16", "--val-size", "500", "--train-steps", "60",
         "--eval-every", "30", "--batch-size", "32", "--threads", "1", "--workers", "1", "--quiet"]


def test_strong_command_end_to_end_with_export_and_report(tmp_path, capsys):
    runs, rep = tmp_path / "runs", tmp_path / "rep"
    assert main(["strong", *SMALL, "--k", "0.3,0.6", "--weights", "signed_constant", "--out", str(runs),
                 "--report-dir", str(rep), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    rows = table["rows"]
    assert sorted(r["k"] for r in rows) == [0.3, 0.6]
    assert all(0.05 < r["final_test_accuracy"] <= 1 for r in rows)
    assert (rep / "accuracy_vs_k.png").stat().st_size > 0
    job = Path(rows[0]["job_dir"])
    summary = json.loads((job / "summary.json").read_text())
    assert summary["checks"]["weights_changed"] == [] and summary["checks"]["counts_as_requested"]
    from ticketlab.store import load_weights
    assert all(torch.equal(a, b) for a, b in zip(load_weights(job / "init.safetensors").values(),
                                                 load_weights(job / "final.safetensors").values()))
    assert main(["export", str(job.parent), "--level", "0", "--format", "safetensors",
                 "--out", str(tmp_path / "ticket.safetensors")]) == 0
    assert main(["report", str(job.parent.parent), "--out", str(tmp_path / "report")]) == 0
    # a second run reads everything back
    assert main(["strong", *SMALL, "--k", "0.3,0.6", "--weights", "signed_constant", "--out", str(runs),
                 "--report-dir", str(rep)]) == 0
    assert "done:" not in capsys.readouterr().err


def test_a_strong_ticket_that_diverges_is_stored_as_diverged_and_said_in_one_line(tmp_path, capsys):
    """Scores at an absurd LR overflow: the job is finished as "diverged" (no accuracy, no mask), a rerun
    reads it back instead of training it again, and the command ends with one line naming it."""
    runs, rep = tmp_path / "runs", tmp_path / "rep"
    argv = ["strong", *SMALL, "--k", "0.5", "--lr", "1e30", "--out", str(runs), "--report-dir", str(rep)]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("ticketlab: error: 1 strong ticket(s) diverged (seed 0 k=0.5 at step ")
    assert any("diverged at step" in line for line in err[:-1])
    (summary_file,) = runs.glob("strong_*/seed_0/level_0/summary.json")
    summary = json.loads(summary_file.read_text())
    assert summary["status"] == "diverged" and summary["final_test_accuracy"] is None
    assert summary["diverged_at_step"] >= 0 and not (summary_file.parent / "mask.safetensors").exists()
    assert main(argv) == 2  # read back, not trained again
    assert "diverged at step" not in "\n".join(capsys.readouterr().err.splitlines()[:-1])


def test_hidden_networks_rounding_is_getsubnet_s_count():
    # GetSubnet: j = int((1 - k) n) scores set to 0, the other n - j kept
    for n, k in ((1001, 0.3), (10, 0.3), (2500, 0.0204), (200, 0.0204), (7, 0.5), (100, 0.05)):
        assert kept_count(n, k, "hidden-networks") == max(1, n - int((1 - k) * n))
    assert (kept_count(1001, 0.3), kept_count(1001, 0.3, "hidden-networks")) == (300, 301)  # 300.3: one more
    assert (kept_count(200, 0.0204), kept_count(200, 0.0204, "hidden-networks")) == (4, 5)
    model = prepare_frozen(_bn_net(), StrongSpec(k=0.3))
    net = MaskedNet(model, StrongSpec(k=0.3, rounding="hidden-networks"), torch.Generator().manual_seed(0))
    assert net.binary_mask().counts() == {"0.weight": 128 - int(0.7 * 128), "3.weight": 48 - int(0.7 * 48)}
    with pytest.raises(TicketlabError, match="no effect on supermask"):
        StrongSpec("supermask", rounding="hidden-networks").check()


def test_bias_mask_is_a_top_k_over_biases_that_learns_and_leaves_weight_scores_as_they_were():
    model = prepare_frozen(_bn_net(), StrongSpec(k=0.3))
    plain = MaskedNet(model, StrongSpec(k=0.3), torch.Generator().manual_seed(0))
    net = MaskedNet(model, StrongSpec(k=0.3, bias_mask=True), torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(plain.scores, net.scores))  # bias scores drawn after
    assert net.biases == {"0.weight": "0.bias", "3.weight": "3.bias"}
    for s, fan in zip(net.bias_scores, (8, 16)):  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as a layer's bias
        assert float(s.detach().abs().max()) <= 1 / math.sqrt(fan)
    masks = net.binary_bias_mask()
    assert {k: int(v.sum()) for k, v in masks.items()} == {"0.bias": kept_count(16, 0.3), "3.bias": kept_count(3, 0.3)}
    data = _data()
    params = dict(model.named_parameters())
    weights = {k: params[k] * m.float() for k, m in net.binary_mask().tensors.items()}
    biases = {k: params[k] * m.float() for k, m in masks.items()}
    expected = torch.func.functional_call(model, {**weights, **biases}, (data.test_x,))
    assert torch.allclose(net(data.test_x), expected)
    nn.functional.cross_entropy(net(data.train_x), data.train_y).backward()
    assert all(s.grad is not None and bool((s.grad != 0).any()) for s in net.bias_scores)  # straight-through
    with pytest.raises(TicketlabError, match="does not apply to supermask"):
        StrongSpec("supermask", bias_mask=True).check()


def test_bias_mask_runs_store_the_masks_and_zero_the_masked_biases(tmp_path, capsys):
    runs = tmp_path / "runs"
    common = ["--dataset", "synthetic", "--model", "mlp_32_16", "--val-size", "500", "--train-steps", "20",
              "--eval-every", "10", "--batch-size", "32",
              "--k", "0.3", "--threads", "1", "--quiet", "--out", str(runs)]
    assert main(["strong", *common, "--bias-mask", "--rounding", "hidden-networks",
                 "--report-dir", str(tmp_path / "a")]) == 0
    assert main(["strong", *common, "--report-dir", str(tmp_path / "b")]) == 0
    jobs = sorted(runs.glob("strong_*/seed_0/level_0"))
    assert len(jobs) == 2  # the two settings, two folders
    job = next(j for j in jobs if (j / "bias_mask.safetensors").exists())
    summary = json.loads((job / "summary.json").read_text())
    assert summary["bias_mask"] and summary["rounding"] == "hidden-networks"
    from safetensors.torch import load_file
    masks, final, init = (load_file(job / f) for f in ("bias_mask.safetensors", "final.safetensors",
                                                       "init.safetensors"))
    assert {k: int(v.sum()) for k, v in masks.items()} == summary["bias_counts"]
    for name, m in masks.items():
        assert torch.equal(final[name], init[name] * m.to(init[name].dtype))
        assert int(m.sum()) == kept_count(m.numel(), 0.3, "hidden-networks")


def test_an_evaluation_computes_its_masks_once_and_gives_what_every_batch_sorting_gave():
    from ticketlab.training.evaluate import evaluate
    from ticketlab.training.supermask import ScoresPolicy
    data = _data()
    for spec in (StrongSpec(k=0.3, bias_mask=True), StrongSpec("supermask", k=0.5)):
        policy = ScoresPolicy(spec, seed=1)
        net = policy.network(prepare_frozen(_bn_net(), spec))
        fresh = evaluate(net, data.test_x, data.test_y, batch_size=7)  # masks recomputed for each batch
        calls = []
        masks = net.masks
        net.masks = lambda *a, **k: calls.append(1) or masks(*a, **k)
        cached = evaluate(policy.evaluation(net), data.test_x, data.test_y, batch_size=7)
        assert cached == fresh and len(calls) == 1  # bitwise the same, from one computation of the masks
        policy.before_forward(0, net)
        assert net.cached is None  # a training step computes its own
