"""Populations (training/population.py) and the grouping executor (executors/population.py): each member's
results are its separate run's, masks stay exact, folders equal the serial executor's, a killed population
resumes bit-identically, and auto never picks the stacked path on a CPU."""

from __future__ import annotations

import copy
import dataclasses
import _thread
import json
import signal
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import small_config
from ticketlab import run_study
from ticketlab.errors import TicketlabError
from ticketlab.executors import PopulationExecutor, SerialExecutor, make_executor, parse_population
from ticketlab.executors.population import _Fiber, population_wanted
from ticketlab.experiments.study import StudyPlan, parse_controls
from ticketlab.jobs import Job, RunOptions, Runtime, register_kind
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.store import load_checkpoint
from ticketlab.training.loop import Checkpointing, Diverged, Hooks, train
from ticketlab.training.population import Member, eligible, signature, train_population, trainer

TRAINING = {"train_steps": 120, "eval_every": 20, "test_every": 40, "lr": 5e-3}


def _members(data, config, n=3, density=0.5):
    """n fresh models (seed i), member 0 dense, the others random masks at `density`, weights masked."""
    out = []
    for i in range(n):
        model = build_model(config.model, data.input_shape, data.num_classes, i)
        mask = Mask.ones(model)
        if i:
            g = torch.Generator().manual_seed(100 + i)
            mask = Mask({k: torch.rand(v.shape, generator=g) < density for k, v in mask.tensors.items()})
        with torch.no_grad():
            for k, p in model.named_parameters():
                if k in mask.keys():
                    p.mul_(mask[k])
        out.append((model, mask, 7 + i))
    return out


# Population and separate training differ in the last bits (the order of float additions in batched
# products) and training amplifies that: so both are checked to be deterministic on their own, and against
# each other within stated tolerances, with margin over what was measured on this test's 120 steps (largest
# relative weight difference 1.5e-5, validation loss 7e-7, accuracies equal). On long runs the difference
# grows (a LeNet on Fashion-MNIST, 600 steps: up to 16% in weights), which is why a population's numerics
# are never mixed with separate runs' in the store.
WEIGHT_RTOL = 1e-3  # per tensor: |a - b| / |a| (Frobenius)
LOSS_RTOL = 1e-4
ACCURACY_ATOL = 0.01
MASK_DIFF = 0.01  # fraction of the level-1 magnitude mask's entries that may differ


def _agrees(got, alone):
    """Within WEIGHT_RTOL of the separate run's tensor (relative Frobenius difference): what is true of
    population against separate training, where an elementwise 1e-5 is not (a weight near 0 may differ by
    more after a few hundred steps)."""
    got, alone = got.detach().double(), alone.detach().double()
    return float((got - alone).norm() / alone.norm().clamp_min(1e-12)) <= WEIGHT_RTOL


def _train_alone(trio, data, hp):
    out = []
    for model, mask, seed in trio:
        m = copy.deepcopy(model)
        out.append((m, train(m, data, hp, mask, data_seed=seed)))
    return out


def _train_together(trio, data, hp):
    members = [Member(copy.deepcopy(model), mask, seed) for model, mask, seed in trio]
    return members, train_population(members, data, hp)


def _magnitude_mask(state, mask, density=0.5):
    """Global magnitude mask of the surviving weights (IMP's level-1 mask) and its threshold."""
    kept = torch.cat([state[k][mask[k]].abs() for k in mask.keys()])
    threshold = kept.sort(descending=True).values[int(density * len(kept)) - 1]
    return {k: (state[k].abs() >= threshold) & mask[k] for k in mask.keys()}, float(threshold)


def test_separate_runs_and_populations_are_each_deterministic(synthetic):
    hp = small_config(training=dict(TRAINING, train_steps=60)).training
    trio = _members(synthetic, small_config(training=TRAINING))
    (a, _), (b, _) = _train_alone(trio[:1], synthetic, hp)[0], _train_alone(trio[:1], synthetic, hp)[0]
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    (m1, r1), (m2, r2) = _train_together(trio, synthetic, hp), _train_together(trio, synthetic, hp)
    for x, y, rx, ry in zip(m1, m2, r1, r2):
        assert all(torch.equal(x.model.state_dict()[k], y.model.state_dict()[k]) for k in x.model.state_dict())
        assert rx.evals == ry.evals


def test_population_of_three_agrees_with_separate_runs(synthetic):
    config = small_config(training=TRAINING)
    trio = _members(synthetic, config)
    separate = _train_alone(trio, synthetic, config.training)
    members, results = _train_together(trio, synthetic, config.training)
    for (alone, expected), member, got, (_, mask, _) in zip(separate, members, results, trio):
        a, b = alone.state_dict(), member.model.state_dict()
        assert set(a) == set(b)
        for k in a:
            assert _agrees(b[k], a[k]), k
            if k in mask.keys():  # exact masks: pruned weights are exactly 0
                assert bool((b[k][~mask[k]] == 0).all())
        assert [e["step"] for e in got.evals] == [e["step"] for e in expected.evals]
        for ge, ee in zip(got.evals, expected.evals):
            assert ge["val_loss"] == pytest.approx(ee["val_loss"], rel=LOSS_RTOL)
            assert ge["val_accuracy"] == pytest.approx(ee["val_accuracy"], abs=ACCURACY_ATOL)
            assert (ge["test_loss"] is None) == (ee["test_loss"] is None)
        assert got.early_stop["val_loss"] == pytest.approx(expected.early_stop["val_loss"], rel=LOSS_RTOL)
        assert got.summary()["final_test_accuracy"] == pytest.approx(expected.summary()["final_test_accuracy"],
                                                                     abs=ACCURACY_ATOL)
        assert got.checks == {"weight": 0.0, "grad": 0.0, "optimizer_state": 0.0}
        # the next level's mask: equal where the weights agree; an entry can differ only if its magnitude
        # lies between the two thresholds, widened by the weights' difference
        ma, ta = _magnitude_mask(a, mask)
        mb, tb = _magnitude_mask(b, mask)
        differ = sum(int((ma[k] != mb[k]).sum()) for k in mask.keys())
        assert differ <= MASK_DIFF * sum(int(mask[k].sum()) for k in mask.keys())
        for k in mask.keys():
            near = abs(ta - tb) + float((a[k] - b[k]).abs().max())
            assert bool(((a[k].abs() - ta).abs()[ma[k] != mb[k]] <= near + 1e-12).all())


def test_diverged_member_leaves_and_others_continue(synthetic):
    config = small_config(training=TRAINING)
    trio = _members(synthetic, config)
    members = [Member(copy.deepcopy(model), mask, seed) for model, mask, seed in trio]
    with torch.no_grad():
        members[1].model.out.weight[0, 0] = float("nan")  # member 1's loss is NaN from step 0
    alone = copy.deepcopy(members[2].model)
    expected = train(alone, synthetic, config.training, trio[2][1], data_seed=trio[2][2])
    results = train_population(members, synthetic, config.training)
    assert isinstance(results[1], Diverged) and results[1].step == 0
    assert not isinstance(results[0], Diverged)
    assert results[1].reason == "weights are not finite (out.weight)"  # seen at the step-0 evaluation
    assert results[2].early_stop["val_loss"] == pytest.approx(expected.early_stop["val_loss"], rel=LOSS_RTOL)
    assert _agrees(members[2].model.out.weight, alone.out.weight)


def test_killed_population_resumes_bit_identically(synthetic, tmp_path):
    config = small_config(training=TRAINING)
    trio = _members(synthetic, config)

    def run(steps, folder, resume=False):
        hp = config.training if steps is None else type(config.training)(**{**config.training.__dict__,
                                                                              "train_steps": steps})
        members = []
        for i, (model, mask, seed) in enumerate(trio):
            ck = Checkpointing(tmp_path / folder / f"m{i}.pt", every=20)
            members.append(Member(copy.deepcopy(model), mask, seed, ck, state=load_checkpoint(ck.path) if resume
                                  else None))
        return members, train_population(members, synthetic, hp)

    whole, whole_results = run(None, "whole")
    # "killed" at step 60: the checkpoints written then are those of an interrupted run of the whole schedule
    run(None, "killed")  # writes checkpoints at 20, 40, ... 100
    for i in range(3):
        state = load_checkpoint(tmp_path / "killed" / f"m{i}.pt")
        assert state["step"] == 100 and set(state["optimizer"]) == {"state", "param_groups"}
    resumed, resumed_results = run(None, "killed", resume=True)
    for a, b, ra, rb in zip(whole, resumed, whole_results, resumed_results):
        for k, v in a.model.state_dict().items():
            assert torch.equal(v, b.model.state_dict()[k])
        assert ra.evals == rb.evals
    # a member's checkpoint is the loop's: a single run resumes it and ends where the population ended
    single = copy.deepcopy(trio[1][0])
    train(single, synthetic, config.training, trio[1][1], data_seed=trio[1][2],
          checkpoint=Checkpointing(tmp_path / "killed" / "m1.pt", 20))
    assert _agrees(single.out.weight, whole[1].model.out.weight)


def _tree(root: Path) -> dict[str, dict]:
    return {_unhashed(p.relative_to(root)): json.loads(p.read_text()) for p in root.rglob("summary.json")}


def _unhashed(path: Path) -> str:
    """A store path with its experiment folder's hash left out (kind_<hash>/seed_0/... -> kind/seed_0/...)."""
    return "/".join([path.parts[0].rsplit("_", 1)[0], *path.parts[1:]])


def test_grouping_executor_folders_mirror_the_serial_executors_under_their_own_identity(synthetic, tmp_path):
    config = small_config(training={"train_steps": 60, "eval_every": 20}, lottery={"levels": 1})
    plan = StudyPlan(config, replicates=2, controls=tuple(parse_controls("random_prune")))
    run_study(plan, root=tmp_path / "serial", data=synthetic, population="off")
    run_study(plan, root=tmp_path / "pop", data=synthetic, population=8)
    files = {_unhashed(p.relative_to(tmp_path / "serial")) for p in (tmp_path / "serial").rglob("*") if p.is_file()}
    assert files == {_unhashed(p.relative_to(tmp_path / "pop")) for p in (tmp_path / "pop").rglob("*") if p.is_file()}
    serial, pop = _tree(tmp_path / "serial"), _tree(tmp_path / "pop")
    assert len(serial) == 6  # 2 dense, 2 level 1, 2 controls
    for key, s in serial.items():
        p = pop[key]
        assert p["status"] == s["status"] == "ok" and p["layer_counts"] == s["layer_counts"]
        assert p["early_stop_step"] == s["early_stop_step"]
        assert p["final_test_accuracy"] == pytest.approx(s["final_test_accuracy"], abs=3e-3)
        assert set(p["files"]) == set(s["files"])
    # populations change the last bits, so they are part of the identity: no folder is shared with separate runs
    serial_dirs = {d.name for d in (tmp_path / "serial").iterdir() if d.is_dir()}
    pop_dirs = {d.name for d in (tmp_path / "pop").iterdir() if d.is_dir()}
    assert serial_dirs and not serial_dirs & pop_dirs
    (train,) = [d for d in (tmp_path / "pop").iterdir() if d.name.startswith("train_")]
    assert json.loads((train / "config.json").read_text())["identity"]["numerics"]["population"] == 8
    # a rerun reads every job back: nothing trains again
    again = run_study(plan, root=tmp_path / "pop", data=synthetic, population=8)
    assert again.replicates[0]["levels"][1] == pop[next(k for k in pop if "level_1/summary" in k and "seed_0" in k)]


def test_separate_runs_never_read_back_a_populations_results(synthetic, tmp_path, capsys):
    config = small_config(training={"train_steps": 40, "eval_every": 20}, lottery={"levels": 0})
    plan = StudyPlan(config, replicates=2)
    grouped = run_study(plan, root=tmp_path, data=synthetic, population=8)
    assert "population of 2" in capsys.readouterr().err
    alone = run_study(plan, root=tmp_path, data=synthetic, population="off")  # trains again, in other folders
    assert grouped.replicates[0]["run_dir"] != alone.replicates[0]["run_dir"]


def test_grouping_key_separates_recipes_and_architectures(synthetic, tmp_path):
    a = small_config(training=TRAINING)
    b = small_config(training={**TRAINING, "lr": 1e-3})
    model = build_model(a.model, synthetic.input_shape, synthetic.num_classes, 0)
    wider = build_model(small_config(model={"name": "mlp_48_16"}).model, synthetic.input_shape,
                        synthetic.num_classes, 0)
    assert signature(model) == signature(build_model(a.model, synthetic.input_shape, synthetic.num_classes, 1))
    assert signature(model) != signature(wider)
    assert repr(a.training) != repr(b.training)
    # the executor's key: parked requests with other recipes fall in other groups
    ex = PopulationExecutor(size=8, log=False)
    keys = [_capture_key(ex, model, synthetic, hp) for hp in (a.training, b.training, a.training)]
    keys.append(_capture_key(ex, model, synthetic, a.training, start_step=20))
    assert keys[0] == keys[2] and len({keys[0], keys[1], keys[3]}) == 3
    assert eligible(model, a.training, Hooks(at_step={0: lambda m: None})) == "training hooks"
    assert eligible(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)), a.training, None) == "dropout"
    assert eligible(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), a.training, None) is None  # per member
    assert eligible(model, dataclasses.replace(a.training, loss="mse"), None) == "loss 'mse'"


class _Stop(Exception):
    pass


def _capture_key(ex, model, data, hp, start_step=0):
    """The executor's trainer for one request, the hand-over to the executor's thread stubbed out: its key."""
    fiber = _Fiber(Job("dense", "x"))
    seen = {}

    def stop():
        seen["key"] = fiber.request.key
        raise _Stop

    fiber.go.wait = stop
    with pytest.raises(_Stop):
        ex._park(fiber, (model, data, hp, Mask.ones(model)), {"data_seed": 0, "start_step": start_step})
    return seen["key"]


def test_auto_never_picks_the_stacked_path_on_a_cpu(tmp_path):
    assert parse_population("auto") == "auto" and parse_population("off") == "off"
    assert parse_population("1") == "off" and parse_population(16) == 16
    for bad in ("0", "-3", "many", "2000"):
        with pytest.raises(TicketlabError, match="--population"):
            parse_population(bad)
    assert not population_wanted("auto", "cpu")  # measured ~1.0x on CPUs (bench/population.py): serial path
    assert population_wanted(4, "cpu") and not population_wanted("off", "cuda")
    runtime = Runtime(RunOptions(root=str(tmp_path)))
    assert isinstance(make_executor("local", 1, None, runtime, "auto"), SerialExecutor)
    assert isinstance(make_executor("local", 4, None, runtime, 4), PopulationExecutor)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_population_equals_separate_runs(synthetic):
    config = small_config(training=TRAINING)
    data = synthetic.to(torch.device("cuda"))
    trio = [(m.cuda(), mask, seed) for m, mask, seed in _members(data, config)]
    separate = []
    for model, mask, seed in trio:
        m = copy.deepcopy(model)
        separate.append((m, train(m, data, config.training, mask, data_seed=seed)))
    members = [Member(copy.deepcopy(model), mask, seed) for model, mask, seed in trio]
    results = train_population(members, data, config.training)
    for (alone, expected), member, got in zip(separate, members, results):
        assert got.early_stop["val_loss"] == pytest.approx(expected.early_stop["val_loss"], rel=LOSS_RTOL)
        assert _agrees(member.model.out.weight, alone.out.weight)


def test_batch_norm_and_augmentation_are_per_member(synthetic):
    """A conv net with batch norm, trained with flip-and-crop: each member equals its own run, running
    statistics included (they are stacked buffers the vmapped forward pass updates row by row)."""
    from ticketlab.config import DatasetHparams
    from ticketlab.data import DataSplits, with_augment

    g = torch.Generator().manual_seed(0)
    images = DataSplits(torch.randn(256, 1, 8, 8, generator=g), torch.randint(0, 3, (256,), generator=g),
                        torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 3, (64,), generator=g),
                        torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 3, (64,), generator=g), num_classes=3)
    data = with_augment(images, DatasetHparams(name="synthetic", augment="flip_crop"))
    hp = small_config(training={"train_steps": 30, "eval_every": 10, "batch_size": 16, "lr": 3e-3}).training

    def net(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        # no conv bias before BN (as in ResNet/VGG): its gradient is 0 up to rounding, which Adam would scale up
        # to full steps differently in any two runs; it would change no output, but it would break the comparison
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 8 * 8, 3))

    assert eligible(net(0), hp, None) is None
    trio = [(net(i), 11 + i) for i in range(3)]
    masks = [Mask.ones(model) for model, _ in trio]
    separate = []
    for (model, seed), mask in zip(trio, masks):
        alone = copy.deepcopy(model)
        separate.append((alone, train(alone, data, hp, mask, data_seed=seed)))
    members = [Member(copy.deepcopy(model), mask, seed) for (model, seed), mask in zip(trio, masks)]
    results = train_population(members, data, hp)
    for (alone, expected), member, got in zip(separate, members, results):
        a, b = alone.state_dict(), member.model.state_dict()
        for k in a:  # running_mean, running_var and num_batches_tracked too
            assert _agrees(b[k], a[k]), k
        assert [e["val_loss"] for e in got.evals] == pytest.approx([e["val_loss"] for e in expected.evals],
                                                                   rel=LOSS_RTOL)


def test_regression_targets_train_alone(synthetic):
    """The population's loss and evaluation are cross-entropy: float (regression) targets are not grouped."""
    hp = small_config().training
    model = build_model(small_config().model, synthetic.input_shape, synthetic.num_classes, 0)
    assert eligible(model, hp, None, synthetic) is None
    regression = dataclasses.replace(synthetic, train_y=synthetic.train_y.float(), val_y=synthetic.val_y.float(),
                                     test_y=synthetic.test_y.float())
    assert eligible(model, hp, None, regression) == "regression targets"
    ex = PopulationExecutor(size=8, log=False)
    assert _capture_key(ex, model, regression, hp) is None  # the executor's request: trains alone
    with pytest.raises(ValueError, match="regression targets"):
        train_population([Member(model, Mask.ones(model), 0)] * 2, regression, hp)


_INTERRUPTED: dict = {}  # the test's data and the steps its progress hook saw (jobs' params are plain data)


@register_kind("test_population_interrupted_alone")
def _interrupted_alone(job, runtime):
    """A long training alone whose progress hook interrupts the main thread (as Ctrl-C or SIGTERM would)."""
    data, config, seen = _INTERRUPTED["data"], _INTERRUPTED["config"], _INTERRUPTED["seen"]
    model = build_model(config.model, data.input_shape, data.num_classes, 0)

    def progress(step, last):
        seen.append(step)
        if step == 20:
            _thread.interrupt_main()  # no OS signal: delivered only when the main thread runs Python code

    trainer()(model, data, config.training, Mask.ones(model), data_seed=0, hooks=Hooks(progress=progress))


@pytest.fixture
def sigint_raises():
    """SIGINT as in a terminal: interrupt_main does nothing while SIGINT is ignored, as it is in a test run
    started in the background (nohup, `cmd &`)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_interrupt_stops_a_job_that_trains_alone(synthetic, tmp_path, sigint_raises):
    """A job training alone trains in the executor's (main) thread, where Python raises KeyboardInterrupt and
    SIGTERM; its interruption stops the training at once and ends the job's parked thread."""
    config = small_config(training={"train_steps": 20000, "eval_every": 10, "test_every": 10000})
    _INTERRUPTED.update(data=synthetic, config=config, seen=[])
    runtime = Runtime(RunOptions(root=str(tmp_path)))
    job = Job("test_population_interrupted_alone", "interrupted")
    with pytest.raises(KeyboardInterrupt):
        PopulationExecutor(runtime, size=8, log=False).run([job], runtime.options)
    seen = _INTERRUPTED["seen"]
    assert seen and max(seen) == 20, seen  # stopped right in the hook, not after the 20000 steps
    for thread in threading.enumerate():
        if thread.name.startswith("ticketlab-job-"):
            thread.join(timeout=10)
            assert not thread.is_alive(), thread.name
