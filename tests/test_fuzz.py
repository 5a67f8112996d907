"""Fuzzing the command's input: flags and TOML values of every kind (strings, huge, negative, NaN and infinite
numbers, wrong types, unknown keys, sections that are not tables) never end in a traceback. Whatever the input,
`ticketlab.cli.main` returns or exits (SystemExit), and a failure is one line `ticketlab: error: ...`.

Only parsing and validation are exercised: the driver's last check before planning (experiments/registry.py)
is followed by a stop (`Reached`), so a valid input costs milliseconds. Exports run for real (they are fast);
reports stop after their checks of the input and the output folder. Derandomised: the same examples on every machine."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ticketlab.experiments.registry
import ticketlab.report.html
from ticketlab.cli import main
from ticketlab.config import SECTIONS
from ticketlab.report.aggregate import experiment_dirs

FUZZ = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BASE = ["--dataset", "synthetic", "--model", "mlp_32_16", "--val-size", "500", "--train-steps", "20",
        "--eval-every", "10", "--batch-size", "32", "--quiet", "--workers", "1"]


class Reached(Exception):
    """The input passed every check: the run (or the report) would start here."""


_check_before_planning = ticketlab.experiments.registry.check_before_planning


def _checked_then_reached(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    """The driver's last check before it plans (and writes) anything: the input passed it."""
    _check_before_planning(*args, **kwargs)
    raise Reached


def _report_checks_only(paths, out_dir, spread="minmax", title=None, unread=None):  # noqa: ANN001, ANN202
    experiment_dirs(paths)
    ticketlab.report.html.check_report_dir(Path(out_dir))
    raise Reached


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A working folder (the fuzzed commands run in it) holding a finished 1-level run store and a plain file;
    the driver (before it plans) and the report writer stop at `Reached`."""
    work = tmp_path_factory.mktemp("fuzz")
    root = work / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["lottery", *BASE, "--levels", "1", "--out", str(root)]) == 0
        (work / "a_file.txt").write_text("not a folder")
        mp.setattr(ticketlab.experiments.registry, "check_before_planning", _checked_then_reached)
        mp.setattr(ticketlab.report.html, "write_report", _report_checks_only)
        (experiment,) = root.glob("lottery_*")
        yield work, root, experiment


def run_main(argv: list[str]) -> tuple[int | str, str]:
    """(exit code or 'reached', stderr) of main(argv); any other exception fails the test."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code: int | str = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except Reached:
            code = "reached"
    return code, err.getvalue()


def check(argv: list[str], code: int | str, err: str) -> None:
    assert "Traceback" not in err, (argv, err)
    if code not in (0, "reached"):
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("ticketlab: error: "), (argv, err)


# ---- Values -------------------------------------------------------------------------------------------------

SPECIAL = ["nan", "-nan", "inf", "-inf", "1e20", "1e308", "-1", "0", "-0", "1", "2", "0.5", "1.5", "2ep", "1ep10it",
           "500it", "0ep", "99999999999ep", "", " ", "0x10", "1_000", "true", "None", "[1]", "-", "--", "=", "all",
           "1-3,5", "5-1", "0,25", str(2**63), str(2**64), str(10**30), "-" + str(10**30)]
NUMBER = st.one_of(st.integers(-(10**25), 10**25).map(str), st.floats().map(repr), st.sampled_from(SPECIAL))
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
VALUE = st.one_of(NUMBER, NUMBER, TEXT)

RUN_FLAGS = ["--seed", "--train-steps", "--eval-every", "--test-every", "--val-size", "--optimizer", "--lr",
             "--batch-size", "--momentum", "--weight-decay", "--warmup-steps", "--init", "--dropout", "--model",
             "--dataset", "--replicates", "--threads", "--workers", "--checkpoint-every", "--device"]
LOTTERY_FLAGS = ["--levels", "--rewind-step", "--retrain", "--finetune-lr", "--strategy", "--prune-rate",
                 "--output-rate", "--conv-rate", "--controls", "--control-reps", "--noise-scales", "--control-levels"]
STABILITY_FLAGS = ["--steps", "--at-levels", "--points", "--threshold", "--train-eval-size"]
SWITCHES = ["--json", "--quiet", "--no-download"]
CHOICES = {"--optimizer": ["adam", "sgd"], "--retrain": ["rewind", "lr_rewind", "finetune", "scratch"],
           "--model": ["mlp_0", "mlp_8_0", "conv2", "conv6", "lenet_300_100", "mlp_99999999999", "mlp_"],
           "--dataset": ["synthetic", "mnist", "cifar10", "nope"], "--strategy": ["global", "uniform", "erk"],
           "--controls": ["reinit", "oneshot,noise", "random_prune,shuffle", "bogus", ",", "reinit,reinit"],
           "--device": ["cpu", "cuda", "cuda:7", "mps", "cpu:0", "meta"]}


@st.composite
def flags(draw, names: list[str]) -> list[str]:  # noqa: ANN001
    out: list[str] = []
    for name in draw(st.lists(st.sampled_from(names), max_size=5)):
        value = draw(st.one_of(VALUE, st.sampled_from(CHOICES[name])) if name in CHOICES else VALUE)
        out += [f"{name}={value}"] if draw(st.booleans()) else [name, value]
    return out + draw(st.lists(st.sampled_from(SWITCHES), max_size=2))


@FUZZ
@given(command=st.sampled_from(["lottery", "train", "stability"]), data=st.data())
def test_fuzzed_flags_never_end_in_a_traceback(place, command, data):
    work, _, _ = place
    names = RUN_FLAGS + (LOTTERY_FLAGS if command != "train" else []) + (STABILITY_FLAGS if command == "stability"
                                                                        else [])
    out = data.draw(st.sampled_from(["runs", "a_file.txt", "a_file.txt/runs", "new/runs", "/proc/ticketlab"]))
    argv = [command, *BASE, *data.draw(flags(names)), "--out", out]
    check(argv, *run_main(argv))


COMMAND_FLAGS = {
    "compare": ["--methods", "--densities", "--checks", "--levels", "--controls", "--executor", "--address",
                "--population"],
    "sweep": ["--over", "--tolerance", "--levels", "--width", "--population"],
    "strong": ["--method", "--k", "--weights", "--scale-fan", "--width"],
    "seek": ["--task", "--depth", "--planted-width", "--methods", "--densities", "--width"],
    "reproduce": ["--budget", "--dataset", "--executor", "--population"],
    "plant": ["--task", "--depth", "--width", "--seed"],
    "verify": [],
}
CHOICES.update({"--methods": ["imp,snip", "rigl,set", "early-bird", "early-bird-channel", "deepr,gmp", "imp,imp", "x"],
                "--checks": ["none", "shuffle", "reinit,invert", "bogus"], "--over": ["model.width=1,2", "x.y=1",
                "lottery.levels=1", "training.lr=", "model.width=1,1"], "--method": ["edge-popup", "supermask",
                "lfss", "x"], "--weights": ["own", "signed_constant", "x"], "--task": ["circle", "relu", "helix", "x"],
                "--executor": ["local", "ray", "x"], "--population": ["auto", "off", "4", "0"],
                "--address": ["127.0.0.1:1", "auto", "nohost"], "--budget": ["smoke", "quick", "paper", "x"],
                "--dataset": CHOICES["--dataset"]})
SWITCHES_OF = {"--scale-fan"}


@st.composite
def command_flags(draw, command: str) -> list[str]:  # noqa: ANN001
    out: list[str] = []
    own = COMMAND_FLAGS[command] + (RUN_FLAGS[:8] if command not in ("plant", "verify") else [])
    for name in draw(st.lists(st.sampled_from(own), max_size=5)) if own else []:
        if name in SWITCHES_OF:
            out.append(name)
            continue
        value = draw(st.one_of(VALUE, st.sampled_from(CHOICES[name])) if name in CHOICES else VALUE)
        out += [f"{name}={value}"] if draw(st.booleans()) else [name, value]
    return out + draw(st.lists(st.sampled_from(SWITCHES), max_size=2))


@settings(FUZZ, max_examples=200)
@given(command=st.sampled_from(sorted(COMMAND_FLAGS)), data=st.data())
def test_every_other_commands_fuzzed_flags_never_end_in_a_traceback(place, command, data):
    work, root, experiment = place
    base = {"seek": BASE[4:], "reproduce": ["--quiet"], "plant": [], "verify": []}.get(command, BASE)
    positional = {"reproduce": [data.draw(st.sampled_from(["lth-lenet", "x", ""]))],
                  "verify": [data.draw(st.sampled_from([str(root), str(experiment), "a_file.txt", "nowhere", "."]))]}
    argv = [command, *positional.get(command, []), *base, *data.draw(command_flags(command))]
    argv += ["--out", "runs"] if command != "verify" else []
    if command in ("compare", "sweep", "strong", "seek", "reproduce"):
        argv += ["--report-dir", data.draw(st.sampled_from(["rep", "runs/rep", "a_file.txt"]))]
    check(argv, *run_main(argv))


# ---- TOML ---------------------------------------------------------------------------------------------------


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes of control characters and quotes are TOML's too (non-ASCII kept as it
    is: JSON would write astral characters as surrogate pairs, which TOML refuses)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(v: object) -> str:
    """A value as TOML (NaN and infinities as TOML spells them)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return ("nan" if math.isnan(v) else "inf" if v > 0 else "-inf") if not math.isfinite(v) else repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_text(doc: dict[str, object]) -> str:
    tables = {k: v for k, v in doc.items() if isinstance(v, dict)}
    lines = [f"{toml_string(k)} = {toml_value(v)}" for k, v in doc.items() if k not in tables]
    for name, body in tables.items():
        lines.append(f"[{toml_string(name)}]")
        lines += [f"{toml_string(k)} = {toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


SCALAR = st.one_of(TEXT, st.integers(-(2**70), 2**70), st.floats(), st.booleans(), st.sampled_from(SPECIAL))
TOML_VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) |
                          st.dictionaries(st.sampled_from(["a", "hidden.0.weight", "out.weight"]), inner, max_size=2),
                          max_leaves=4)
KEYS = {name: sorted(cls.__dataclass_fields__) * 3 + ["bogus"] for name, cls in SECTIONS.items()}


@st.composite
def documents(draw) -> dict[str, object]:  # noqa: ANN001
    """Mostly tables (so the values inside them are reached), sometimes a section that is not one; unknown keys
    now and then."""
    doc: dict[str, object] = {}
    for name, keys in KEYS.items():
        shape = draw(st.sampled_from(["table"] * 6 + ["not a table"] + ["absent"] * 3))
        if shape == "table":
            doc[name] = draw(st.dictionaries(st.sampled_from(keys), TOML_VALUE, max_size=4))
        elif shape == "not a table":
            doc[name] = draw(TOML_VALUE)
    for key in ("seed", "kind", "bogus"):
        if draw(st.sampled_from([False] * 9 + [True])):
            doc[key] = draw(TOML_VALUE)
    return doc


@FUZZ
@given(command=st.sampled_from(["lottery", "train", "stability"]), doc=documents())
def test_fuzzed_toml_never_ends_in_a_traceback(place, command, doc):
    work, _, _ = place
    config = work / "fuzz.toml"
    config.write_text(toml_text(doc), encoding="utf-8")
    argv = [command, "--config", str(config), "--out", "runs", "--quiet", "--workers", "1"]
    check(argv, *run_main(argv))


# ---- Export and report (of a real store) ----------------------------------------------------------------------


@settings(FUZZ, max_examples=80)
@given(data=st.data())
def test_fuzzed_export_and_report_never_end_in_a_traceback(place, data):
    work, root, experiment = place
    summary = experiment / "seed_0" / "level_1" / "summary.json"
    before = summary.read_bytes()
    where = st.sampled_from([str(experiment), str(experiment / "seed_0"), str(root), str(summary), "a_file.txt",
                             "a_file.txt/x", "out", "out/t.pt", ".", "/proc/ticketlab/x", str(experiment.parent)])
    if data.draw(st.booleans()):
        argv = ["export", data.draw(where), "--level", data.draw(VALUE), "--format",
                data.draw(st.sampled_from(["safetensors", "dense", "torch-prune", "onnx"]))]
        argv += ["--out", data.draw(where)] if data.draw(st.booleans()) else []
        argv += ["--batch-size", data.draw(VALUE)] if data.draw(st.booleans()) else []
    else:
        argv = ["report", *data.draw(st.lists(where, min_size=1, max_size=2))]
        argv += ["--out", data.draw(where)] if data.draw(st.booleans()) else []
        argv += data.draw(st.lists(st.sampled_from(["--csv", "--spread=std", "--spread=iqr", "--title=x"]),
                                   max_size=2))
    check(argv, *run_main(argv))
    assert summary.read_bytes() == before  # the store is read-only to exports and reports
