"""IMP end to end on the generated data: rewinding, the store's reuse of finished work, self-checks."""

import json

import pytest

import torch

from ticketlab import Mask, run_lottery
from ticketlab.models import build_model
from ticketlab.seeds import streams
from ticketlab.store import load_weights
from conftest import small_config

INIT = streams(0)["init"]  # the initial weights' seed of replicate 0


def test_levels_rewind_to_initialisation(tmp_path, synthetic):
    config = small_config()
    result = run_lottery(config, data=synthetic, root=tmp_path)
    theta0 = build_model(config.model, synthetic.input_shape, 10, INIT).state_dict()
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
    rewind = load_weights(result.run_dir / "level_0" / ".." / "prefix_k50" / "final.safetensors")
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
    # More levels: only the new ones train, in the same folder.
    more = run_lottery(small_config(lottery={"levels": 4}), data=synthetic, root=tmp_path,
                       progress=lambda label, *a: calls.append(label))
    assert more.run_dir == first.run_dir and set(calls) == {"seed 0 level 3", "seed 0 level 4"}
    assert more.levels[:3] == first.levels


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
    rewind = {} if mode == "scratch" else {"rewind_step": 50}  # scratch has no k: --rewind-step is refused there
    config = small_config(training={"milestones": [100], "gamma": 0.1}, lottery={"levels": 1, "retrain": mode,
                                                                              **rewind})
    result = run_lottery(config, data=synthetic, root=tmp_path)
    job = result.run_dir / "level_1"
    mask, init = Mask.load(job / "mask.safetensors"), load_weights(job / "init.safetensors")
    trained = load_weights(result.run_dir / "level_0" / "final.safetensors")
    w = "hidden.0.weight"
    expected = {"lr_rewind": trained[w], "finetune": trained[w]}.get(mode)
    if mode == "rewind":
        expected = load_weights(result.run_dir / "level_0" / ".." / "prefix_k50" / "final.safetensors")[w]
    summary = result.levels[1]
    if mode == "scratch":
        theta0 = build_model(config.model, synthetic.input_shape, 10, INIT).state_dict()[w]
        assert not torch.equal(init[w], theta0 * mask[w]) and not torch.equal(init[w], trained[w] * mask[w])
        assert torch.all(init[w][~mask[w]] == 0) and summary["start_step"] == 0
    else:
        assert torch.equal(init[w], expected * mask[w]) and summary["start_step"] == 50
    assert summary["retrain"] == mode
    # finetune: one fixed LR, the schedule's last (0.1 x 3e-3); the others replay the schedule's LR
    assert summary["lr"] == pytest.approx(3e-4 if mode == "finetune" else 3e-3)


def _trained(calls):
    return sorted({label for label, *_ in calls})


def test_layerwise_and_global_runs_of_a_seed_share_one_dense_level_0(tmp_path, synthetic):
    calls = []
    layerwise = run_lottery(small_config(lottery={"levels": 1}), data=synthetic, root=tmp_path,
                            progress=lambda *a: calls.append(a))
    glob = run_lottery(small_config(pruning={"strategy": "global"}, lottery={"levels": 1}), data=synthetic,
                       root=tmp_path, progress=lambda *a: calls.append(a))
    assert _trained(calls) == ["seed 0 level 0", "seed 0 level 1"]  # level 0 once, level 1 twice
    assert len([c for c in calls if c[0] == "seed 0 level 1" and c[1] == 1]) == 2
    assert layerwise.run_dir != glob.run_dir
    assert (layerwise.run_dir / "level_0").resolve() == (glob.run_dir / "level_0").resolve()
    assert layerwise.levels[0] == glob.levels[0] and layerwise.levels[1] != glob.levels[1]


def test_a_user_module_under_the_default_name_is_not_the_registry_model(tmp_path, synthetic):
    def user_model():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 32), torch.nn.ReLU(),
                                   torch.nn.Linear(32, 10))

    config = small_config(model={"name": "lenet_300_100"}, lottery={"levels": 0})
    lenet = run_lottery(config, data=synthetic, root=tmp_path)
    calls = []
    mine = run_lottery(config, data=synthetic, root=tmp_path, model_fn=user_model,
                       progress=lambda *a: calls.append(a))
    assert calls and mine.run_dir.parent != lenet.run_dir.parent
    assert set(mine.levels[0]["layer_counts"]) == {"1.weight", "3.weight"}


def test_other_data_under_the_same_name_never_share_results(tmp_path, synthetic):
    import dataclasses

    config = small_config(lottery={"levels": 0})
    first = run_lottery(config, data=synthetic, root=tmp_path)
    flipped = dataclasses.replace(synthetic, train_y=(synthetic.train_y + 1) % 10, _fingerprint=None)
    assert flipped.fingerprint != synthetic.fingerprint
    calls = []
    other = run_lottery(config, data=flipped, root=tmp_path, progress=lambda *a: calls.append(a))
    assert calls and other.run_dir.parent != first.run_dir.parent


def test_the_thread_count_names_its_own_results(tmp_path, synthetic):
    config = small_config(lottery={"levels": 0})
    one = run_lottery(config, data=synthetic, root=tmp_path, threads=1)
    two = run_lottery(config, data=synthetic, root=tmp_path, threads=2)
    assert one.run_dir.parent != two.run_dir.parent
    assert torch.get_num_threads() == 1  # the caller's thread count is restored


def test_seeds_of_each_stream_are_derived_and_recorded(tmp_path, synthetic):
    result = run_lottery(small_config(seed=3, lottery={"levels": 1}), data=synthetic, root=tmp_path)
    seeds = result.levels[0]["seeds"]
    assert seeds == streams(3) and seeds["init"] != seeds["data"]
    assert result.levels[1]["data_seed"] == seeds["data"] and result.levels[1]["seed"] == 3


def test_the_library_checks_levels_and_sizes_before_training(tmp_path, synthetic):
    from ticketlab import TicketlabError

    with pytest.raises(TicketlabError, match="would prune every layer"):
        run_lottery(small_config(lottery={"levels": 100_000}), data=synthetic, root=tmp_path)
    with pytest.raises(TicketlabError, match="batch_size .32. exceeds the training set"):
        run_lottery(small_config(dataset={"val_size": 2999}), root=tmp_path)  # data loaded by name: checked
    assert not list(tmp_path.iterdir())  # nothing written
