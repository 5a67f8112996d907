"""Divergence is said, never reported as a result: a loss or weights that stop being finite end the job with
"status": "diverged" and its step, nothing is built on it, reports leave it out of every mean, and the CLI
exits non-zero in one line."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import run_cli, small_config
from ticketlab.errors import Blocked, TicketlabError
from ticketlab.experiments.study import StudyPlan, run_lottery, run_study
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.report.aggregate import aggregate, collect
from ticketlab.report.html import write_report
from ticketlab.seeds import derive_seed
from ticketlab.training import loop
from ticketlab.training.loop import Diverged, train

SMALL = ["--dataset", "synthetic", "--model", "mlp_32_16", "--val-size", "500", "--train-steps", "200",
         "--eval-every", "50", "--batch-size", "32", "--threads", "1", "--quiet"]
ACCURACIES = ("early_stop_step", "early_stop_test_accuracy", "early_stop_val_loss", "final_step",
              "final_test_accuracy", "final_val_accuracy")


def strict_json(path: Path):
    """JSON as the standard has it: NaN, Infinity and -Infinity are not JSON."""
    return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path} holds {c}"))


def every_json_is_strict(root: Path) -> None:
    files = list(root.rglob("*.json"))
    assert files
    for f in files:
        strict_json(f)


def _model(config, data, seed=0):
    return build_model(config.model, data.input_shape, data.num_classes, seed)


# ---- The training loop ----------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer, lr", [("sgd", 1e6), ("sgd", math.inf), ("adam", math.inf)])
def test_the_loop_stops_at_the_first_step_whose_loss_is_not_finite(synthetic, optimizer, lr):
    hp = dataclasses.replace(small_config().training, optimizer=optimizer, lr=lr)
    model = _model(small_config(), synthetic)
    losses = []
    real_add = loop._LossLog.add
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop._LossLog, "add", lambda self, loss: (losses.append(loss.item()), real_add(self, loss)))
        with pytest.raises(Diverged) as info:
            train(model, synthetic, hp, Mask.ones(model), data_seed=0)
    first = next(i for i, v in enumerate(losses) if not math.isfinite(v))
    assert info.value.step == first > 0  # step 0's loss is the untrained network's: finite
    assert info.value.reason == "loss is not finite" and isinstance(info.value, TicketlabError)
    assert [e["step"] for e in info.value.evals] == [0]  # the evaluations before it, none after
    assert all(math.isfinite(v) for e in info.value.evals for v in e.values() if v is not None)


def test_weights_that_are_not_finite_stop_it_at_the_evaluation_point(synthetic):
    class WithSpare(nn.Module):  # a parameter the loss never sees: only the weights check can find it
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(256, 10))
            self.spare = nn.Parameter(torch.zeros(3))

        def forward(self, x):
            return self.net(x)

    torch.manual_seed(0)
    model = WithSpare()
    hooks = loop.Hooks(at_step={60: lambda m: m.spare.data.fill_(math.nan)})
    with pytest.raises(Diverged) as info:
        train(model, synthetic, small_config().training, Mask.ones(model), data_seed=0, hooks=hooks)
    assert info.value.step == 100 and "weights are not finite (spare)" in info.value.reason
    assert [e["step"] for e in info.value.evals] == [0, 50]


def test_a_healthy_run_is_unchanged_by_the_checks(synthetic, monkeypatch):
    """The checks read the losses and weights, never change them: the same numbers with them as without."""
    config = small_config()
    hp = dataclasses.replace(config.training, eval_every=10)  # the check path at 21 points

    def run():
        model = _model(config, synthetic)
        result = train(model, synthetic, hp, Mask.ones(model), data_seed=3)
        return result, model.state_dict()

    checked, checked_weights = run()
    monkeypatch.setattr(loop._LossLog, "add", lambda self, loss: None)
    monkeypatch.setattr(loop._Single, "nonfinite", lambda *args: {})
    monkeypatch.setattr(loop, "_row_problem", lambda *args: None)
    plain, plain_weights = run()
    assert checked.evals == plain.evals and checked.summary() == plain.summary()
    assert all(torch.equal(checked_weights[k], plain_weights[k]) for k in plain_weights)


def test_a_healthy_level_says_ok(tmp_path, synthetic):
    result = run_lottery(small_config(lottery={"levels": 1}), data=synthetic, root=tmp_path)
    assert [s["status"] for s in result.levels] == ["ok", "ok"]
    assert all(s["final_test_accuracy"] > 0.3 for s in result.levels)
    every_json_is_strict(tmp_path)


# ---- A diverged level in the store ------------------------------------------------------------------------


def test_a_diverged_level_is_finished_and_nothing_is_pruned_from_it(tmp_path, synthetic, capfd):
    # level 0 trains at a sane LR; level 1 (fine-tuning at 1e6) diverges; level 2 must not be pruned from it
    config = small_config(training={"optimizer": "sgd", "lr": 0.05},
                          lottery={"levels": 2, "retrain": "finetune", "finetune_lr": 1e6})
    with pytest.raises(TicketlabError) as info:
        run_lottery(config, data=synthetic, root=tmp_path)
    message = str(info.value)
    assert "\n" not in message and "1 job(s) not run: seed 0 level 2" in message
    assert "seed 0 level 1 diverged at step" in message and "level_1" in message
    err = capfd.readouterr().err
    assert "seed 0 level 1 diverged at step" in err and "loss is not finite (lr 1e+06 too high?)" in err

    [exp] = tmp_path.glob("lottery_*")
    level0, level1 = strict_json(exp / "seed_0/level_0/summary.json"), strict_json(exp / "seed_0/level_1/summary.json")
    assert level0["status"] == "ok" and level0["final_test_accuracy"] > 0.3
    # the first update at LR 1e6 throws the weights far off: the second step's loss is the first not finite
    assert level1["status"] == "diverged" and level1["diverged_at_step"] == 2
    assert level1["diverged_because"] == "loss is not finite"
    assert all(level1[k] is None for k in ACCURACIES)
    assert f"step {level1['diverged_at_step']} " in message
    assert not (exp / "seed_0/level_1/final.safetensors").exists()
    assert not (exp / "seed_0/level_1/checkpoint.pt").exists()
    assert not list(tmp_path.rglob("level_2/summary.json"))
    every_json_is_strict(tmp_path)

    # the same command again: the diverged job is read back, not trained, and level 2 refused again
    before = (exp / "seed_0/level_1/summary.json").read_bytes()
    steps = []
    with pytest.raises(TicketlabError, match="seed 0 level 1 diverged at step"):
        run_lottery(config, data=synthetic, root=tmp_path, progress=lambda *a: steps.append(a))
    assert steps == [] and (exp / "seed_0/level_1/summary.json").read_bytes() == before
    assert not list(tmp_path.rglob("level_2/summary.json"))

    from ticketlab.export import export_ticket  # a diverged level has no ticket to export: one line

    with pytest.raises(TicketlabError, match=r"^level 1 of .* diverged at step \d+: it has no trained weights"):
        export_ticket(exp / "seed_0", 1, "safetensors", tmp_path / "out")


def test_controls_and_stability_copies_refuse_a_diverged_level(tmp_path, synthetic):
    from ticketlab.experiments.controls import Control
    from ticketlab.experiments.stability import StabilitySpec

    config = small_config(training={"optimizer": "sgd", "lr": 0.05},
                          lottery={"levels": 1, "retrain": "finetune", "finetune_lr": 1e6})
    plan = StudyPlan(config, controls=(Control("reinit"),), control_levels=(1,),
                     stability=(StabilitySpec(step=0, level=1, points=3),))
    with pytest.raises(TicketlabError) as info:
        run_study(plan, data=synthetic, root=tmp_path)
    message = str(info.value)  # the control and both copies refused, the analysis not run
    assert message.startswith("4 job(s) not run: ") and message.count("diverged at step") == 3
    assert "control reinit 0, because seed 0 level 1 diverged" in message and "copy 0, because" in message
    assert "and 1 job(s) that build on them" in message
    [level] = tmp_path.glob("lottery_*/seed_0/level_1")
    assert not list(level.rglob("*/summary.json"))  # no control, copy or analysis finished


def test_require_healthy_names_the_folder_and_step(tmp_path):
    from ticketlab.experiments.job import require_healthy
    from ticketlab.store import write_json

    write_json(tmp_path / "summary.json", {"status": "diverged", "diverged_at_step": 37})
    with pytest.raises(Blocked, match=rf"seed 0 level 1 diverged at step 37 \({tmp_path}\)"):
        require_healthy(tmp_path, "seed 0 level 1")
    write_json(tmp_path / "summary.json", {"level": 1})  # written before statuses existed: ok
    assert require_healthy(tmp_path, "seed 0 level 1") == {"level": 1}


# ---- A study where one replicate of three diverges ---------------------------------------------------------


def _poisoned_model():
    """An MLP whose replicate-1 initial weights hold a NaN (its run diverges at step 0); seeds 0 and 2: sane."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 24), nn.ReLU(), nn.Linear(24, 10))
    if torch.initial_seed() == derive_seed(1, "init"):  # run_study builds it under the replicate's init seed
        with torch.no_grad():
            model[1].weight[0, 0] = math.nan
    return model


@pytest.fixture(scope="module")
def three_replicates(tmp_path_factory, synthetic):
    root = tmp_path_factory.mktemp("runs")
    plan = StudyPlan(small_config(model={"name": "user_net"}, lottery={"levels": 1}), replicates=3)
    with pytest.raises(TicketlabError) as info:
        run_study(plan, data=synthetic, root=root, model_fn=_poisoned_model)
    [exp] = root.glob("lottery_*")
    return root, exp, str(info.value)


def test_the_other_replicates_finish_and_the_run_says_what_diverged(three_replicates):
    root, exp, message = three_replicates
    assert message.startswith("1 job(s) not run: seed 1 level 1, because seed 1 level 0 diverged at step 0")
    assert "Every other job finished" in message
    for seed in (0, 2):
        assert [strict_json(exp / f"seed_{seed}/level_{lvl}/summary.json")["status"] for lvl in (0, 1)] == ["ok"] * 2
    assert strict_json(exp / "seed_1/level_0/summary.json")["diverged_at_step"] == 0
    assert not (exp / "seed_1/level_1/summary.json").exists()
    every_json_is_strict(root)


def test_worker_processes_also_run_every_other_job(tmp_path):
    plan = StudyPlan(small_config(model={"name": "user_net"}, lottery={"levels": 2}), replicates=3)
    with pytest.raises(TicketlabError) as info:
        run_study(plan, root=tmp_path, model_fn=_poisoned_model, workers=2)
    assert str(info.value).startswith("2 job(s) not run: seed 1 level 1, because seed 1 level 0 diverged at step 0")
    assert "and 1 job(s) that build on it" in str(info.value)
    [exp] = tmp_path.glob("lottery_*")
    assert sorted(p.parent.relative_to(exp).as_posix() for p in exp.glob("seed_*/level_*/summary.json")) == [
        "seed_0/level_0", "seed_0/level_1", "seed_0/level_2", "seed_1/level_0", "seed_2/level_0", "seed_2/level_1",
        "seed_2/level_2"]


def test_the_report_counts_the_diverged_replicate_apart(three_replicates, tmp_path):
    root, exp, _ = three_replicates
    rows = collect([exp])
    assert sorted((r["seed"], r["level"], r["status"]) for r in rows) == [
        (0, 0, "ok"), (0, 1, "ok"), (1, 0, "diverged"), (2, 0, "ok"), (2, 1, "ok")]
    dense = next(e for e in aggregate(rows) if e["level"] == 0)
    ok = [r["early_stop_test_accuracy"] for r in rows if r["level"] == 0 and r["status"] == "ok"]
    assert (dense["n"], dense["diverged"], dense["seeds"], dense["diverged_seeds"]) == (2, 1, [0, 2], [1])
    assert dense["early_stop_test_accuracy"]["mean"] == pytest.approx(sum(ok) / 2)
    assert dense["matching"] is True  # the dense level against its own (healthy) replicates

    files = write_report([exp], tmp_path / "report")
    records = strict_json(files["json"])
    assert [(r["level"], r["n"], r["diverged"]) for r in records] == [(0, 2, 1), (1, 2, 0)]
    assert records[0]["early_stop_test_accuracy_pct_mean"] == pytest.approx(100 * sum(ok) / 2)
    with open(files["csv"], newline="") as f:
        assert [r["diverged"] for r in csv.DictReader(f)] == ["1", "0"]
    page = files["html"].read_text()
    assert "2 (+1 diverged)" in page and "Diverged jobs" in page and "DIVERGED" in page
    assert str(exp / "seed_1/level_0") in page
    assert "(n=2, +1 diverged)" in files["md"].read_text()


def test_the_study_table_shows_the_count(three_replicates):
    from ticketlab.report.tables import study_table as _study_table

    _, exp, _ = three_replicates
    table = _study_table(aggregate(collect([exp])))
    assert "2 (+1 diverged)" in table.splitlines()[1]


# ---- The command line --------------------------------------------------------------------------------------


def test_cli_says_it_in_one_line_and_exits_non_zero(tmp_path):
    args = ["lottery", *SMALL, "--optimizer", "sgd", "--lr", "1e6", "--levels", "1", "--out", str(tmp_path)]
    out = run_cli(*args)
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ticketlab: error: 1 job(s) not run: seed 0 level 1, because seed 0 level 0 "
                           "diverged at step ") and "Traceback" not in out.stderr
    assert "seed 0 level 0 diverged at step" in out.stderr and "(lr 1e+06 too high?)" in out.stderr
    [summary] = tmp_path.glob("train_*/seed_0/level_0/summary.json")
    assert strict_json(summary)["status"] == "diverged"
    every_json_is_strict(tmp_path)

    again = run_cli(*args)  # read back, not retrained: same line, no training message
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1] == last
    assert "too high?" not in again.stderr


def test_cli_table_shows_a_diverged_last_level(tmp_path):
    out = run_cli("lottery", *SMALL, "--optimizer", "sgd", "--lr", "0.05", "--retrain", "finetune",
                  "--finetune-lr", "1e6", "--levels", "1", "--out", str(tmp_path))
    assert out.returncode == 2, out.stderr
    level1 = out.stdout.splitlines()[2]
    assert level1.split()[0] == "1" and "diverged at step" in level1
    assert out.stderr.strip().splitlines()[-1].startswith("ticketlab: error: 1 job(s) diverged (seed 0 level 1 "
                                                          "at step ")
    assert "warning: seed 0 level 1 diverged at step" in out.stderr


def test_a_loss_that_explodes_but_stays_finite_is_divergence_too():
    """SGD at LR 3 on unscaled inputs: the validation loss is 5.8e8 at step 10 (1.2 at step 0) and higher at
    step 20, every weight still finite. Before, such a run finished as "ok" at chance accuracy. One exploded
    evaluation alone (here: the last one of a 10-step run) is not divergence: batch-norm statistics right
    after the start can give one."""
    from ticketlab.config import TrainingHparams
    from ticketlab.data import DataSplits

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=g) * 3
    y = torch.randint(0, 3, (300,), generator=g)
    data = DataSplits(x[:200], y[:200], x[200:250], y[200:250], x[250:], y[250:], num_classes=3)
    hp = TrainingHparams(optimizer="sgd", lr=3.0, momentum=0.9, batch_size=20, train_steps=40, eval_every=10)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    with pytest.raises(Diverged, match="validation loss exploded") as caught:
        train(model, data, hp, data_seed=0)
    assert caught.value.step == 20 and [e["step"] for e in caught.value.evals] == [0, 10]
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())  # finite, and still diverged
    assert f"over {loop.EXPLODED:g} times its" in caught.value.reason
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    result = train(model, data, TrainingHparams(optimizer="sgd", lr=0.01, batch_size=20, train_steps=40,
                                                eval_every=10), data_seed=0)
    assert len(result.evals) == 5  # a sane LR is untouched
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    once = train(model, data, dataclasses.replace(hp, train_steps=10), data_seed=0)  # exploded once, at the end
    assert once.final["val_loss"] > loop.EXPLODED * once.evals[0]["val_loss"]
