"""Every setting named once: flags generated from the config dataclasses and specs (settings.setting), help
read from the registries when the parser is built, TOML and flags covering the same fields."""

import json
from dataclasses import dataclass

import pytest
from torch import nn

from ticketlab import build_config
from ticketlab.cli import main, parser
from ticketlab.cli.flags import add_setting_flags, setting_fields, spec_from_args
from ticketlab.cli.study import config_from_args
from ticketlab.config import RunConfig
from ticketlab.data import DATASETS
from ticketlab.models import MODEL_NAMES, register_model, registry
from ticketlab.settings import setting

TRAINING_COMMANDS = ["lottery", "train", "stability", "compare", "sweep", "strong", "seek"]


def call(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _options(command: str) -> set[str]:
    sub = next(a for a in parser()._subparsers._group_actions if a.dest == "command").choices[command]
    return {s for a in sub._actions for s in a.option_strings}


def test_every_config_field_has_a_flag_or_says_why_not():
    flags = _options("lottery")
    no_flag = []
    for ff in setting_fields(RunConfig):
        path, s = ff.path, ff.setting
        assert s.help, f"{'.'.join(path)} has no help"
        if not s.cli:
            no_flag.append(".".join(path))
            continue
        assert ff.flag in flags, f"{'.'.join(path)}: no {ff.flag} on `ticketlab lottery`"
    assert no_flag == ["kind", "pruning.layer_rates"]  # the command sets kind; layer_rates is a table
    layer_rates = next(ff.setting for ff in setting_fields(RunConfig) if ff.path == ("pruning", "layer_rates"))
    assert "TOML table" in layer_rates.help
    assert len(flags & {"--dataset", "--model", "--prune-rate", "--train-steps", "--augment", "--nesterov"}) == 6
    # train and strong have no [pruning]/[lottery] flags; seek's width is --planted-width
    assert "--levels" not in _options("train") and "--prune-rate" not in _options("strong")
    assert "--planted-width" in _options("seek") and "--lr" in _options("seek")


@pytest.fixture
def extra_model_and_data(monkeypatch):
    """A model and a data set registered now, after import: help must show them too."""
    saved = dict(registry._EXACT), list(MODEL_NAMES)
    register_model("flagtest_net", lambda hp, s, c: nn.Linear(1, c), help="a test model")
    monkeypatch.setitem(DATASETS, "flagtest_data", DATASETS["synthetic"])
    yield
    registry._EXACT.clear(), registry._EXACT.update(saved[0])
    MODEL_NAMES[:] = saved[1]


@pytest.mark.parametrize("command", [*TRAINING_COMMANDS, "reproduce"])
def test_help_lists_every_registered_model_and_data_set(capsys, extra_model_and_data, command):
    argv = [command, "--help"] if command != "reproduce" else ["reproduce", "x", "--help"]
    code, out, _ = call(capsys, *argv)
    text = " ".join(out.split())
    assert code == 0
    for name in DATASETS:
        assert name in text, f"ticketlab {command} --help misses data set {name}"
    assert {"circle", "relu", "helix", "flagtest_data"} <= set(DATASETS)
    if command != "reproduce":
        for name in MODEL_NAMES:
            assert name in text, f"ticketlab {command} --help misses model {name}"
        assert "resnet<20|32|44|56|110>" in text and "vgg<11|13|16|19>" in text and "flagtest_net" in text
        assert "planted_circle_<depth>_<width>" in text


def test_help_says_kept_and_pruned(capsys):
    strong = " ".join(call(capsys, "strong", "--help")[1].split())
    lottery = " ".join(call(capsys, "lottery", "--help")[1].split())
    assert "--k K comma list of k = the fraction of weights KEPT in each layer" in strong
    assert "fraction of the surviving weights PRUNED per level" in lottery
    assert "(default: the model's preset, else 0.0012)" in lottery  # --lr


# One value per field with a flag, none of them a default; valid together (nesterov needs sgd, momentum).
VALUES = {
    "seed": 7,
    "dataset": {"name": "synthetic", "val_size": 400, "split_seed": 3, "subsample": 1000, "label_noise": 0.1,
                "noise_type": "pairflip", "noise_seed": 4, "augment": "flip_crop"},
    "model": {"name": "mlp_32_16", "init": "kaiming_normal", "bias_init": "fan_in_uniform", "dropout": 0.1,
              "width": 2.0},
    "training": {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "train_steps": "2ep", "momentum": 0.9,
                 "nesterov": True, "weight_decay": 1e-4, "milestones": ["1ep", "40"], "gamma": 0.5,
                 "warmup_steps": 10, "eval_every": 20, "test_every": 40, "loss": "mse"},
    "pruning": {"strategy": "global", "rate": 0.3, "conv_rate": 0.15, "output_rate": 0.1, "ignore": ["out.weight"],
                "counting": "openlth", "rounding": "synaptic-flow"},
    "lottery": {"levels": 3, "rewind_step": 5, "retrain": "finetune", "finetune_lr": 0.01},
}
FLAGS = {"dataset.name": "--dataset", "model.name": "--model", "pruning.rate": "--prune-rate",
         "pruning.counting": "--prune-counting", "pruning.rounding": "--prune-rounding"}


def _toml(values, table=""):
    plain = {k: v for k, v in values.items() if not isinstance(v, dict)}
    text = f"[{table}]\n" if table else ""
    text += "".join(f"{k} = {json.dumps(v)}\n" for k, v in plain.items())
    return text + "".join(_toml(v, k) for k, v in values.items() if isinstance(v, dict))


def _flags(values, prefix=""):
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flags(value, path + ".")
        elif isinstance(value, bool):
            out.append(("--" if value else "--no-") + key.replace("_", "-"))
        else:
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            out += [FLAGS.get(path, "--" + key.replace("_", "-")), text]
    return out


def test_toml_and_flags_give_the_same_config(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text(_toml(VALUES))
    from_toml = config_from_args(parser().parse_args(["lottery", "--config", str(toml)]), "lottery")
    from_flags = config_from_args(parser().parse_args(["lottery", *_flags(VALUES)]), "lottery")
    assert from_flags == from_toml == build_config({"kind": "lottery", **VALUES})
    # every value arrived (none is the default); durations resolved: (1000 // 32) = 31 steps an epoch
    assert from_flags.training.train_steps == 62 and from_flags.training.milestones == (31, 40)
    assert from_flags.training.nesterov is True and from_flags.pruning.ignore == ("out.weight",)
    assert (from_flags.seed, from_flags.dataset.augment, from_flags.model.width, from_flags.lottery.retrain) == \
        (7, "flip_crop", 2.0, "finetune")
    for ff in setting_fields(RunConfig):
        path, s = ff.path, ff.setting
        # every field given a value other than its default (planted_output applies to planted models only:
        # tests/test_planted.py)
        if s.cli and path not in (("seed",), ("model", "planted_output")):
            default = getattr(getattr(RunConfig(), path[0]), path[1])
            assert getattr(getattr(from_flags, path[0]), path[1]) != default, path
    # a flag wins over the file
    both = config_from_args(parser().parse_args(["lottery", "--config", str(toml), "--lr", "0.2"]), "lottery")
    assert both.training.lr == 0.2 and both.training.momentum == 0.9


def test_unset_flags_leave_the_preset_alone():
    args = parser().parse_args(["lottery", "--model", "conv6", "--levels", "1"])
    config = config_from_args(args, "lottery")
    assert (config.training.lr, config.pruning.conv_rate, config.pruning.output_rate) == (3e-4, 0.15, 0.1)


def test_seek_width_is_refused_with_a_line_naming_planted_width(capsys, tmp_path):
    code, out, err = call(capsys, "seek", "--task", "circle", "--width", "20", "--out", tmp_path / "runs")
    assert code == 2 and out == ""
    assert err.splitlines() == ["ticketlab: error: seek --width is now --planted-width N (the planted network's "
                                "hidden width; a width multiplier does not apply to planted networks) (see "
                                "ticketlab seek --help)"]
    assert parser().parse_args(["seek", "--task", "circle", "--planted-width", "20"]).planted_width == 20
    assert not (tmp_path / "runs").exists()


def test_a_list_flag_given_dashes_is_one_line(capsys):
    code, _, err = call(capsys, "lottery", "--ignore=--")
    assert code == 2 and err == "ticketlab: error: argument --ignore: expected one argument (see ticketlab " \
                                "lottery --help)\n"


@dataclass(frozen=True)
class ToySpec:
    draws: int = setting(2, "draws per point", old_flags=("n_draws",))
    shuffle: bool = setting(False, "shuffle first", old_flags=("mix",))
    budget: int = setting(100, "steps", steps=True)
    method: str = setting("a", "which", choices=("a", "b"))


def test_an_old_spelling_works_for_one_release_with_one_notice(capsys):
    import argparse

    p = argparse.ArgumentParser()
    add_setting_flags(p, ToySpec)
    assert spec_from_args(ToySpec, p.parse_args([])) == ToySpec()
    new = spec_from_args(ToySpec, p.parse_args(["--draws", "3", "--shuffle", "--budget", "50it", "--method", "b"]))
    assert new == ToySpec(draws=3, shuffle=True, budget=50, method="b")
    assert capsys.readouterr().err == ""
    old = spec_from_args(ToySpec, p.parse_args(["--n-draws", "3", "--mix", "--budget", "50it", "--method", "b"]))
    assert spec_from_args(ToySpec, p.parse_args(["--no-mix"])).shuffle is False
    assert old == new
    assert capsys.readouterr().err.splitlines() == [
        "ticketlab: notice: --n-draws is now --draws; the old spelling goes in the next release",
        "ticketlab: notice: --mix is now --shuffle; the old spelling goes in the next release",
        "ticketlab: notice: --no-mix is now --no-shuffle; the old spelling goes in the next release"]
