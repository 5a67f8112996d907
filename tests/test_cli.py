"""The command as a user runs it: JSON output, bad input, and kill -9 then resume.

Most tests call `ticketlab.cli.main` in this process (capsys holds its output): only the entry point
(`python -m ticketlab.cli`, once) and kill -9 need a process of their own.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ticketlab import TicketlabError, build_config
from ticketlab.cli import main
from ticketlab.jobs import parse_device
from conftest import run_cli

SMALL = ["--dataset", "synthetic", "--model", "mlp_32_16", "--val-size", "500", "--train-steps", "200",
         "--eval-every", "50", "--batch-size", "32", "--threads", "1"]


def call(capsys, *argv: str) -> subprocess.CompletedProcess:
    """main(argv) in this process, as the command runs it: its exit code, stdout and stderr."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse: --help, or a bad flag (one line)
        code = e.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(argv), code, out, err)


def test_lottery_json_output(tmp_path):  # the entry point, once, as a process
    out = run_cli("lottery", *SMALL, "--levels", "2", "--out", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert Path(result["run_dir"]).is_dir()
    assert [lvl["level"] for lvl in result["levels"]] == [0, 1, 2]
    first = result["levels"][1]
    assert set(first) == {"level", "density", "layer_density", "status", "diverged_at_step", "early_stop_step",
                          "early_stop_test_accuracy", "final_test_accuracy"}
    assert first["status"] == "ok" and first["diverged_at_step"] is None
    assert first["layer_density"]["out.weight"] == 144 / 160
    assert 0.3 < first["final_test_accuracy"] <= 1.0  # it learned: 10 classes, chance is 0.1


def test_train_table_and_config_file(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('[training]\nlr = 0.003\noptimizer = "sgd"\nmomentum = 0.9\n')
    out = call(capsys, "train", *SMALL, "--config", str(config), "--out", str(tmp_path / "runs"))
    assert out.returncode == 0, out.stderr
    assert "early-stop step" in out.stdout and "run folder:" in out.stdout
    stored = json.loads(next((tmp_path / "runs").glob("train_*/config.json")).read_text())
    assert stored["config"]["training"]["optimizer"] == "sgd" and stored["config"]["training"]["momentum"] == 0.9


@pytest.mark.parametrize("args,message", [
    (["--model", "resnet9000"], "unknown model"),
    (["--dataset", "imagenet22k"], "unknown dataset"),
    (["--dataset", "mnist", "--data-dir", "/nonexistent"], "not found"),
    (["--prune-rate", "1.5"], "rate must be in"),
    (["--output-rate", "-0.1"], "output_rate"),
    (["--train-steps", "lots"], "cannot read"),
    (["--rewind-step", "500"], "rewind_step"),
    (["--levels", "x"], "invalid int"),
    (["--config", "/nonexistent.toml"], "config file not found"),
    (["--seed", "-1"], "seed must be a whole number in [0, 2^63 - 1], got -1"),
    (["--seed", "99999999999999999999999"], "seed must be a whole number in [0, 2^63 - 1]"),
    (["--replicates", "0"], "--replicates: must be a whole number >= 1, got '0'"),
    (["--control-reps", "0"], "--control-reps: must be a whole number >= 1, got '0'"),
    (["--controls", "reinit", "--control-reps", "0"], "--control-reps: must be a whole number >= 1"),
    (["--threads", "0"], "--threads: must be a whole number >= 1"),
    (["--strategy", "bogus"], "pruning.strategy must be one of layerwise, global, uniform"),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, args, message):
    base = ["--dataset", "synthetic", "--model", "mlp_32_16", "--val-size", "500", "--train-steps", "200"]
    out = call(capsys, "lottery", *base, *args, "--out", str(tmp_path / "runs"))
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ticketlab: error:") and message in lines[0], out.stderr
    assert not (tmp_path / "runs").exists()  # said before anything is written


def _absent_cuda_device() -> str:
    """A CUDA device this machine does not have: cuda:0 without CUDA, cuda:N with N GPUs."""
    return f"cuda:{torch.cuda.device_count()}"


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: 'cuda' is there")


@pytest.mark.parametrize("device,message", [
    (_absent_cuda_device(), "CUDA device(s)" if torch.cuda.is_available() else "CUDA is not available"),
    pytest.param("cuda", "CUDA is not available", marks=NO_CUDA),
    ("nonsense", "unknown device 'nonsense'"),
    ("tpu", "unknown device 'tpu'"),
    ("cuda:x", "unknown device 'cuda:x'"),
    ("meta", "device 'meta' is not supported"),
])
def test_a_device_that_is_not_there_is_one_line_before_any_data_or_folder(tmp_path, capsys, device, message):
    _device_is_checked_first(tmp_path, capsys, "lottery", device, message)


@pytest.mark.parametrize("command", ["train", "stability", "reproduce", "compare", "sweep", "strong"])
def test_every_command_checks_the_device_first(tmp_path, capsys, command):
    _device_is_checked_first(tmp_path, capsys, command, _absent_cuda_device(), "CUDA")


def _device_is_checked_first(tmp_path, capsys, command, device, message):
    # --data-dir points nowhere and mnist is not cached: loading any data would fail with another message.
    args = ["--dataset", "mnist", "--data-dir", str(tmp_path / "no-data"), "--no-download"]
    if command == "reproduce":
        args = ["lth-lenet", *args]
    else:
        args += ["--train-steps", "200"]
    out = call(capsys, command, *args, "--device", device, "--out", str(tmp_path / "runs"))
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("ticketlab: error:") and message in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "no-data").exists()


def test_parse_device_on_a_machine_with_gpus(monkeypatch):
    # The branch a GPU machine takes, checked on any machine: two devices, so cuda:2 is not there.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert parse_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(TicketlabError, match=r"^device 'cuda:2' asked for, but this machine has 2 CUDA device\(s\): "
                                             r"use cuda:0 to cuda:1$"):
        parse_device("cuda:2")
    assert parse_device("cpu") == torch.device("cpu")


def test_a_seed_that_is_not_a_number_in_toml_is_one_line(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("seed = true\n")
    out = call(capsys, "lottery", *SMALL, "--config", str(config), "--out", str(tmp_path / "runs"))
    assert out.returncode == 2 and out.stderr.strip() == \
        "ticketlab: error: seed must be a whole number in [0, 2^63 - 1], got True", out.stderr
    assert not (tmp_path / "runs").exists()


def test_any_registered_strategy_is_accepted(tmp_path, capsys):
    out = call(capsys, "lottery", *SMALL, "--strategy", "uniform", "--levels", "1", "--out", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    stored = json.loads(next(tmp_path.glob("lottery_*/config.json")).read_text())
    assert stored["config"]["pruning"]["strategy"] == "uniform"
    level = json.loads(out.stdout)["levels"][1]
    assert level["layer_density"]["hidden.0.weight"] == pytest.approx(level["layer_density"]["hidden.1.weight"],
                                                                        abs=2e-3)


def test_malformed_config_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[training\nlr = ")
    out = call(capsys, "lottery", *SMALL, "--config", str(bad), "--out", str(tmp_path))
    assert out.returncode == 2 and "malformed config file" in out.stderr and "Traceback" not in out.stderr
    bad.write_text("[training]\nlearning_rate = 0.1\n")
    out = call(capsys, "lottery", *SMALL, "--config", str(bad), "--out", str(tmp_path))
    assert out.returncode == 2 and "unknown key(s) in [training]: learning_rate" in out.stderr


def _files(root: Path) -> dict[str, bytes]:
    """Every result file's bytes; summaries without their wall-clock field (nor the store's hash of the
    summary, which covers that field)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.suffix in (".safetensors",) or p.name == "metrics.json":
            out[str(p.relative_to(root))] = p.read_bytes()
        elif p.name == "summary.json":
            s = json.loads(p.read_text())
            s.pop("train_seconds_this_session")
            s.pop("summary_hash", None)
            out[str(p.relative_to(root))] = json.dumps(s, sort_keys=True).encode()
    return out


@pytest.mark.parametrize("kill_after", ["level_0/checkpoint.pt", "level_1/checkpoint.pt"])
def test_kill_9_then_resume_gives_bit_identical_results(tmp_path, kill_after):
    args = ["lottery", "--dataset", "synthetic", "--model", "mlp_64_32", "--val-size", "500", "--levels", "2",
            "--train-steps", "2000", "--eval-every", "50", "--batch-size", "32", "--rewind-step", "100",
            "--checkpoint-every", "100", "--threads", "1", "--quiet"]
    reference = run_cli(*args, "--out", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr

    killed = tmp_path / "killed"
    env = {**os.environ, "TICKETLAB_DATA": "/nonexistent-ticketlab-cache"}
    proc = subprocess.Popen([sys.executable, "-m", "ticketlab.cli", *args, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(killed.glob(f"*/seed_0/{kill_after}")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed: make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(killed.glob("*/seed_0/level_2/summary.json"))

    resumed = run_cli(*args, "--out", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    want, got = _files(tmp_path / "reference"), _files(killed)
    assert want.keys() == got.keys() and len(want) > 10
    assert [k for k in want if want[k] != got[k]] == []
    assert not list(killed.rglob("checkpoint.pt")) and not list(killed.rglob("*.tmp"))


def test_report_export_and_reproduce_commands(tmp_path, capsys):
    out = call(capsys, "lottery", *SMALL, "--levels", "2", "--replicates", "2", "--controls", "reinit",
                  "--out", str(tmp_path), "--json", "--workers", "1")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    variants = {(e["variant"], e["level"]) for e in result["table"]}
    assert variants == {(v, lvl) for v in ("ticket", "reinit") for lvl in range(3)}
    assert all(e["n"] == 2 for e in result["table"])
    exp = result["experiment_dir"]
    # reports and exports go outside the run store (here tmp_path): tmp_path/out is not part of it
    csv_out = call(capsys, "report", exp, "--out", str(tmp_path / "out" / "report"), "--csv")
    assert csv_out.returncode == 0, csv_out.stderr
    assert csv_out.stdout.splitlines()[0].startswith("experiment,") and len(csv_out.stdout.splitlines()) == 7
    assert (tmp_path / "out" / "report" / "report.html").is_file()
    ticket = call(capsys, "export", f"{exp}/seed_0", "--level", "2", "--format", "torch-prune", "--out",
                     str(tmp_path / "out" / "t.pt"))
    assert ticket.returncode == 0 and Path(ticket.stdout.strip()).is_file(), ticket.stderr
    ambiguous = call(capsys, "export", exp, "--level", "2")
    assert ambiguous.returncode == 2 and "holds 2 replicates" in ambiguous.stderr
    bad = call(capsys, "reproduce", "lth-resnet")
    assert bad.returncode == 2 and "unknown reproduction" in bad.stderr


def _level_files(run_dir: Path, levels: range) -> dict[str, int]:
    """Every file of these levels (level 0 through its link to the dense run) -> its mtime in ns."""
    out = {}
    for level in levels:
        folder = (run_dir / f"level_{level}").resolve()
        out |= {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    return out


def test_more_levels_later_trains_only_the_new_ones(tmp_path, capsys):
    first = call(capsys, "lottery", *SMALL, "--levels", "2", "--out", str(tmp_path), "--json")
    assert first.returncode == 0, first.stderr
    before = json.loads(first.stdout)
    run_dir = Path(before["run_dir"])
    files = _level_files(run_dir, range(3))
    assert len(files) >= 15  # mask, init, final, metrics, summary of each level
    second = call(capsys, "lottery", *SMALL, "--levels", "4", "--out", str(tmp_path), "--json")
    assert second.returncode == 0, second.stderr
    after = json.loads(second.stdout)
    assert after["run_dir"] == before["run_dir"]
    assert [lvl["level"] for lvl in after["levels"]] == [0, 1, 2, 3, 4]
    assert after["levels"][:3] == before["levels"]
    assert _level_files(run_dir, range(3)) == files  # levels 0-2 read back, not rewritten
    assert all((run_dir / f"level_{lvl}" / "summary.json").is_file() for lvl in (3, 4))


def test_epochs_on_the_cli_are_the_steps_build_config_gives(tmp_path, capsys):
    out = call(capsys, "train", "--dataset", "synthetic", "--model", "mlp_32_16", "--val-size", "500", "--batch-size",
                  "32", "--train-steps", "2ep", "--eval-every", "50", "--threads", "1", "--out", str(tmp_path),
                  "--json")
    assert out.returncode == 0, out.stderr
    python = build_config({"kind": "train", "dataset": {"name": "synthetic", "val_size": 500},
                           "model": {"name": "mlp_32_16"}, "training": {"train_steps": "2ep", "batch_size": 32,
                                                                        "eval_every": 50}})
    assert python.training.train_steps == 2 * (3000 - 500) // 32 == 156  # synthetic: 3,000 training examples
    stored = json.loads(next(tmp_path.glob("train_*/config.json")).read_text())
    assert stored["config"]["training"]["train_steps"] == python.training.train_steps
    summary = json.loads((Path(json.loads(out.stdout)["run_dir"]) / "level_0" / "summary.json").read_text())
    assert summary["final_step"] == 156


def test_oneshot_control_is_one_job_per_level_whatever_control_reps_says(tmp_path, capsys):
    out = call(capsys, "lottery", *SMALL, "--levels", "2", "--controls", "oneshot", "--control-reps", "3",
                  "--out", str(tmp_path), "--json", "--workers", "1")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    oneshot = [e for e in result["table"] if e["variant"] == "oneshot"]
    assert [(e["level"], e["n"]) for e in oneshot] == [(1, 1), (2, 1)]  # none at level 0: it is the dense net
    run_dir = Path(result["run_dir"])
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.glob("level_*/control_*")) == \
        ["level_1/control_oneshot_0", "level_2/control_oneshot_0"]
    assert len(result["replicates"][0]["controls"]) == 2
