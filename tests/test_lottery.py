"""IMP end to end on the generated data: rewinding, the store's reuse of finished work, self-checks."""

import json

import pytest

import torch

from ticketlab import Mask, run_lottery
from ticketlab.models import build_model
from ticketlab.store import load_weights
from conftest import small_config


def test_levels_rewind_to_initialisation(tmp_path, synthetic):
    config = small_config()
    result = run_lottery(config, data=synthetic, root=tmp_path)
    theta0 = build_model(config.model, synthetic.input_shape, 10, seed=0).state_dict()
    # mlp_32_16 on 16x16 inputs: 8,192 and 512 hidden weights at 20% per level, 160 output weights at 10%
    # (level 1: 6,554 + 410 + 144; level 2: 5,243 + 328 + 130, each rounded half up)
    assert [s["density"] for s in result.levels] == [1.0, 7108 / 8864, 5701 / 8864]
    assert result.levels[1]["layer_counts"] == {"hidden.0.weight": 6554, "hidden.1.weight": 410, "out.weight": 144}
    for level in (1, 2):
        job = result.run_dir / f"level_{level}"
        mask, init = Mask.load(job / "mask.safetensors"), load_weights(job / "init.safetensors")
        prev_final = load_weights(result.run_dir / f"level_{level - 1}" / "final.safetensors")
        for name, m in mask.tensors.items():
            assert torch.equal(init[name], theta0[name] * m)  # survivors at their initial values
            assert torch.all(prev_final[name][~m].abs().max() <= prev_final[name][m].abs().min())  # by magnitude
        assert torch.equal(init["out.bias"], theta0["out.bias"])  # biases rewound too, never pruned
    for s in result.levels:
        assert s["checks"]["counts_as_requested"] and not s["checks"]["collapsed_layers"]
        assert s["checks"]["pruned_max_abs"] == {"weight": 0.0, "grad": 0.0, "optimizer_state": 0.0}


def test_late_rewinding_uses_the_weights_at_step_k_of_the_dense_run(tmp_path, synthetic):
    config = small_config(lottery={"levels": 1, "rewind_step": 50})
    result = run_lottery(config, data=synthetic, root=tmp_path)
    # The same dense training stopped at step 50 gives theta_50.
    short = small_config(kind="train", training={"train_steps": 50})
    dense = run_lottery(short, data=synthetic, root=tmp_path / "short")
    theta_k = load_weights(dense.run_dir / "level_0" / "final.safetensors")
    rewind = load_weights(result.run_dir / "rewind.safetensors")
    assert torch.equal(rewind["hidden.0.weight"], theta_k["hidden.0.weight"])
    job = result.run_dir / "level_1"
    mask, init = Mask.load(job / "mask.safetensors"), load_weights(job / "init.safetensors")
    assert torch.equal(init["hidden.0.weight"], theta_k["hidden.0.weight"] * mask["hidden.0.weight"])
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics[0]["step"] == 50 and metrics[-1]["step"] == 200  # trains from k to the end
    assert result.levels[1]["rewind_step"] == 50


def test_finished_work_is_reused_not_retrained(tmp_path, synthetic):
    config = small_config()
    first = run_lottery(config, data=synthetic, root=tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in first.run_dir.rglob("*") if p.is_file()}
    calls = []
    again = run_lottery(config, data=synthetic, root=tmp_path, progress=lambda *a: calls.append(a))
    assert calls == [] and again.levels == first.levels
    assert {p: p.stat().st_mtime_ns for p in first.run_dir.rglob("*") if p.is_file()} == stamps
    # More levels: only the new one trains.
    more = run_lottery(small_config(lottery={"levels": 3}), data=synthetic, root=tmp_path,
                       progress=lambda label, *a: calls.append(label))
    assert more.run_dir != first.run_dir and set(calls) == {"level 0", "level 1", "level 2", "level 3"}


def test_replicates_differ_and_are_reproducible(tmp_path, synthetic):
    a = run_lottery(small_config(seed=1, lottery={"levels": 1}), data=synthetic, root=tmp_path / "a")
    b = run_lottery(small_config(seed=1, lottery={"levels": 1}), data=synthetic, root=tmp_path / "b")
    c = run_lottery(small_config(seed=2, lottery={"levels": 1}), data=synthetic, root=tmp_path / "a")
    assert a.levels[1]["final_test_accuracy"] == b.levels[1]["final_test_accuracy"]
    fa, fb, fc = (load_weights(r.run_dir / "level_1" / "final.safetensors") for r in (a, b, c))
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    assert not torch.equal(fa["hidden.0.weight"], fc["hidden.0.weight"])
    assert a.run_dir.parent == c.run_dir.parent  # one experiment folder, a folder per seed


def test_global_pruning_and_a_user_module(tmp_path, synthetic):
    def user_model():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 24), torch.nn.ReLU(),
                                   torch.nn.Linear(24, 10))

    config = small_config(model={"name": "custom_user_net"}, pruning={"strategy": "global", "rate": 0.5},
                          lottery={"levels": 2})
    result = run_lottery(config, data=synthetic, root=tmp_path, model_fn=user_model)
    assert [s["layer_counts"] for s in result.levels][2] and result.levels[2]["checks"]["counts_as_requested"]
    total = sum(result.levels[2]["layer_counts"].values())
    assert total == round((256 * 24 + 240) * 0.25)


@pytest.mark.parametrize("mode", ["rewind", "lr_rewind", "finetune", "scratch"])
def test_each_retraining_mode_starts_from_the_weights_and_lr_it_promises(tmp_path, synthetic, mode):
    config = small_config(training={"milestones": [100], "gamma": 0.1}, lottery={"levels": 1, "retrain": mode,
                                                                              "rewind_step": 50})
    result = run_lottery(config, data=synthetic, root=tmp_path)
    job = result.run_dir / "level_1"
    mask, init = Mask.load(job / "mask.safetensors"), load_weights(job / "init.safetensors")
    trained = load_weights(result.run_dir / "level_0" / "final.safetensors")
    theta_k = load_weights(result.run_dir / "rewind.safetensors")
    w = "hidden.0.weight"
    expected = {"rewind": theta_k[w], "lr_rewind": trained[w], "finetune": trained[w]}.get(mode)
    summary = result.levels[1]
    if mode == "scratch":
        theta0 = build_model(config.model, synthetic.input_shape, 10, seed=0).state_dict()[w]
        assert not torch.equal(init[w], theta0 * mask[w]) and not torch.equal(init[w], trained[w] * mask[w])
        assert torch.all(init[w][~mask[w]] == 0) and summary["start_step"] == 0
    else:
        assert torch.equal(init[w], expected * mask[w]) and summary["start_step"] == 50
    assert summary["retrain"] == mode
    # finetune: one fixed LR, the schedule's last (0.1 x 3e-3); the others replay the schedule's LR
    assert summary["lr"] == pytest.approx(3e-4 if mode == "finetune" else 3e-3)
