"""The command as a user runs it: JSON output, bad input, and kill -9 then resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli

SMALL = ["--dataset", "synthetic", "--model", "mlp_32_16", "--val-size", "500", "--train-steps", "200",
         "--eval-every", "50", "--batch-size", "32", "--threads", "1"]


def test_lottery_json_output(tmp_path):
    out = run_cli("lottery", *SMALL, "--levels", "2", "--out", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert Path(result["run_dir"]).is_dir()
    assert [lvl["level"] for lvl in result["levels"]] == [0, 1, 2]
    first = result["levels"][1]
    assert set(first) == {"level", "density", "layer_density", "early_stop_step", "early_stop_test_accuracy",
                          "final_test_accuracy"}
    assert first["layer_density"]["out.weight"] == 144 / 160
    assert 0.3 < first["final_test_accuracy"] <= 1.0  # it learned: 10 classes, chance is 0.1


def test_train_table_and_config_file(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[training]\nlr = 0.003\noptimizer = "sgd"\nmomentum = 0.9\n')
    out = run_cli("train", *SMALL, "--config", str(config), "--out", str(tmp_path / "runs"))
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
    (["--device", "cuda:7"], "device"),
    (["--config", "/nonexistent.toml"], "config file not found"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    base = ["--dataset", "synthetic", "--model", "mlp_32_16", "--val-size", "500", "--train-steps", "200"]
    out = run_cli("lottery", *base, *args, "--out", str(tmp_path))
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ticketlab: error:") and message in lines[0], out.stderr


def test_malformed_config_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[training\nlr = ")
    out = run_cli("lottery", *SMALL, "--config", str(bad), "--out", str(tmp_path))
    assert out.returncode == 2 and "malformed config file" in out.stderr and "Traceback" not in out.stderr
    bad.write_text("[training]\nlearning_rate = 0.1\n")
    out = run_cli("lottery", *SMALL, "--config", str(bad), "--out", str(tmp_path))
    assert out.returncode == 2 and "unknown key(s) in [training]: learning_rate" in out.stderr


def _files(root: Path) -> dict[str, bytes]:
    """Every result file's bytes; summaries without their wall-clock field."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.suffix in (".safetensors",) or p.name == "metrics.json":
            out[str(p.relative_to(root))] = p.read_bytes()
        elif p.name == "summary.json":
            s = json.loads(p.read_text())
            s.pop("train_seconds_this_session")
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


def test_report_export_and_reproduce_commands(tmp_path):
    out = run_cli("lottery", *SMALL, "--levels", "2", "--replicates", "2", "--controls", "reinit",
                  "--out", str(tmp_path), "--json", "--workers", "1")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    variants = {(e["variant"], e["level"]) for e in result["table"]}
    assert variants == {(v, lvl) for v in ("ticket", "reinit") for lvl in range(3)}
    assert all(e["n"] == 2 for e in result["table"])
    exp = result["experiment_dir"]
    csv_out = run_cli("report", exp, "--out", str(tmp_path / "report"), "--csv")
    assert csv_out.returncode == 0, csv_out.stderr
    assert csv_out.stdout.splitlines()[0].startswith("experiment,") and len(csv_out.stdout.splitlines()) == 7
    assert (tmp_path / "report" / "report.html").is_file()
    ticket = run_cli("export", f"{exp}/seed_0", "--level", "2", "--format", "torch-prune", "--out",
                     str(tmp_path / "t.pt"))
    assert ticket.returncode == 0 and Path(ticket.stdout.strip()).is_file(), ticket.stderr
    ambiguous = run_cli("export", exp, "--level", "2")
    assert ambiguous.returncode == 2 and "holds 2 replicates" in ambiguous.stderr
    bad = run_cli("reproduce", "lth-resnet")
    assert bad.returncode == 2 and "unknown reproduction" in bad.stderr
