"""Every bad input is one clear line: `ticketlab: error: ...` on stderr, a non-zero exit, no traceback, and no
half-made folder. One test per family of mistakes (issue 15: numbers out of range, TOML of the wrong shape,
stability settings, damaged data files, I/O failures, writes into the run store, signals).

The command is called in-process (`ticketlab.cli.main`) except for the signal tests, which need a process to
signal."""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ticketlab.cli import main
from ticketlab.data import idx

SMALL = ["--dataset", "synthetic", "--model", "mlp_32_16", "--val-size", "500", "--train-steps", "20",
         "--eval-every", "10", "--batch-size", "32", "--quiet", "--workers", "1"]


def call(capsys, *argv: str) -> tuple[int, str, str]:
    """main(argv) as the command runs it: (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error(code: int, err: str, *needles: str) -> str:
    """Exactly one stderr line, `ticketlab: error: ...` holding every needle, and a non-zero exit."""
    lines = err.splitlines()
    assert code not in (0, None), err
    assert len(lines) == 1 and lines[0].startswith("ticketlab: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def nothing_written(root: Path) -> None:
    assert not root.exists() or not any(root.rglob("*")), sorted(map(str, root.rglob("*")))


# ---- Numbers, names and counts out of range -----------------------------------------------------------------

FLAGS = [
    (["--batch-size", "0"], "training.batch_size must be >= 1, got 0"),
    (["--batch-size", "2501"], "training.batch_size (2501) exceeds the training set"),
    (["--eval-every", "0"], "training.eval_every must be >= 1, got 0"),
    (["--test-every", "15"], "must be 0 or a multiple of eval_every"),
    (["--threads", "-1"], "--threads: must be a whole number >= 1"),
    (["--checkpoint-every", "0"], "--checkpoint-every: must be a whole number >= 1"),
    (["--lr", "nan"], "training.lr must be > 0 and at most 3.4e+38 (float32), got nan"),
    (["--lr", "inf"], "training.lr must be > 0 and at most 3.4e+38 (float32), got inf"),
    (["--lr", "1e300"], "training.lr must be > 0 and at most 3.4e+38 (float32), got 1e+300"),
    (["--weight-decay", "1e39"], "training.weight_decay must be >= 0 and at most 3.4e+38 (float32), got 1e+39"),
    (["--lr", "-0.1"], "training.lr must be > 0"),
    (["--momentum", "nan"], "training.momentum must be in [0, 1)"),
    (["--weight-decay", "inf"], "training.weight_decay must be >= 0 and at most 3.4e+38"),
    (["--weight-decay", "-1"], "training.weight_decay must be >= 0"),
    (["--dropout", "1"], "model.dropout must be in [0, 1)"),
    (["--prune-rate", "nan"], "pruning.rate must be in [0, 1)"),
    (["--output-rate", "-0.1"], "pruning.output_rate must be in [0, 1)"),
    (["--finetune-lr", "inf"], "lottery.finetune_lr must be > 0 and at most 3.4e+38"),
    (["--val-size", "-1"], "dataset.val_size must be >= 0"),
    (["--val-size", "3000"], "dataset.val_size must be in [0, 3000) for synthetic"),
    (["--train-steps", "100000000000000000000"], "more than the 1,000,000,000 allowed"),
    (["--train-steps", "1e20"], "cannot read '1e20' as steps"),
    (["--train-steps", "0"], "training.train_steps must be >= 1"),
    (["--warmup-steps", "-5"], "training.warmup_steps: cannot read '-5'"),
    (["--rewind-step", "20"], "lottery.rewind_step (20) must be below training.train_steps (20)"),
    (["--levels", "1000000"], "lottery.levels 1,000,000 would prune every layer of mlp_32_16 to nothing after level"),
    (["--levels", "10000000"], "lottery.levels must be at most 1,000,000"),
    (["--levels", "-1"], "lottery.levels must be >= 0"),
    (["--model", "mlp_0"], "every hidden width of mlp_<w1>_<w2>_.. must be at least 1, got 0"),
    (["--model", "mlp_32_0_16"], "must be at least 1, got 32, 0, 16"),
    (["--model", "nonet"], "unknown model 'nonet'"),
    (["--init", "zeros"], "unknown init 'zeros'"),
    (["--strategy", "bogus"], "pruning.strategy must be one of"),
    (["--seed", "-1"], "seed must be a whole number in [0, 2^63 - 1], got -1"),
    (["--seed", str(10**30)], "seed must be a whole number in [0, 2^63 - 1]"),
    (["--seed", str(2**63 - 1), "--replicates", "2"], "go past 2^63 - 1"),
    (["--replicates", "0"], "--replicates: must be a whole number >= 1"),
    (["--replicates", "100000"], "--replicates must be at most 10,000"),
    (["--controls", "reinit", "--control-reps", "0"], "--control-reps: must be a whole number >= 1"),
    (["--controls", "reinit", "--control-levels", "5-1"], "--control-levels: '5-1' is not a range"),
    (["--controls", "reinit", "--control-levels", "-3"], "--control-levels: cannot read '-3'"),
    (["--controls", "reinit", "--levels", "2", "--control-levels", "9"],
     "names level(s) 9, but this run has levels 0-2"),
    (["--controls", "noise", "--noise-scales", "nan"], "--noise-scales: each scale must be > 0 and finite"),
    (["--controls", "bogus"], "bogus"),
    (["--workers", "0"], "--workers must be auto or a whole number in [1, 1024], got '0'"),
    (["--workers", "\u00b2"], "--workers must be auto or a whole number in [1, 1024]"),
    (["--threads", "100000"], "--threads must be at most 1024"),
    (["--device", "tpu"], "device 'tpu'"),
]


@pytest.mark.parametrize("flags,message", FLAGS, ids=[" ".join(f) for f, _ in FLAGS])
def test_a_number_name_or_count_out_of_range_is_one_line_before_anything_is_written(flags, message, tmp_path, capsys):
    root = tmp_path / "runs"
    code, _, err = call(capsys, "lottery", *SMALL, *flags, "--out", root)
    one_error(code, err, message)
    nothing_written(root)


TOML = [
    ("[training]\ngamma = -0.5\nmilestones = [10]\n", "training.gamma (the LR factor at each milestone) must be > 0"),
    ("[training]\ngamma = inf\n", "training.gamma"),
    ("[training]\nlr = nan\n", "training.lr must be > 0 and at most 3.4e+38"),
    ('training = "fast"\n', "config section [training] must be a table, got 'fast'"),
    ("lottery = 3\n", "config section [lottery] must be a table"),
    ("[lottery]\nlevels = 1e6\n", "would prune every layer"),
    ("[lottery]\nlevels = 2.5\n", "lottery.levels: expected int, got 2.5"),
    ("seed = -1\n", "seed must be a whole number"),
    ("seed = true\n", "seed must be a whole number"),
    ("[dataset]\nsplit_seed = -1\n", "dataset.split_seed must be a whole number"),
    ("[pruning]\nignore = [\"nope.weight\"]\n", "pruning names unknown layer(s) nope.weight"),
    ("[pruning]\nlayer_rates = \"all\"\n", "pruning.layer_rates: expected a table"),
    ("[model]\nname = \"mlp_0\"\n", "must be at least 1"),
    ("[training]\nwhatever = 1\n", "unknown key(s) in [training]: whatever"),
    ("[training]\nmilestones = 5\n", "training.milestones: expected a list of steps"),
    ("[training]\nwarmup_steps = \"99999999999ep\"\n", "more than the 1,000,000,000 allowed"),
    ("bogus = 1\n", "unknown config key(s): bogus"),
    ("[training\n", "malformed config file"),
]


@pytest.mark.parametrize("text,message", TOML, ids=[t.splitlines()[-1] for t, _ in TOML])
def test_a_toml_value_of_the_wrong_kind_or_range_is_one_line(text, message, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(text)
    root = tmp_path / "runs"
    flags = [f for f in SMALL if f not in ("--model", "mlp_32_16")] if "[model]" in text else SMALL
    code, _, err = call(capsys, "lottery", *flags, "--config", config, "--out", root)
    one_error(code, err, message)
    nothing_written(root)


STABILITY = [
    (["--threshold", "nan"], "stability threshold must be in (0, 1), got nan"),
    (["--threshold", "0"], "stability threshold must be in (0, 1)"),
    (["--train-eval-size", "0"], "stability train_eval_size must be at least 1, got 0"),
    (["--points", "1"], "stability needs at least 2 points on the path, got 1"),
    (["--points", "1000000"], "--points must be at most 10,000"),
    (["--steps", "-5"], "stability step -5 must be in [0, 20)"),
    (["--steps", "20"], "stability step 20 must be in [0, 20)"),
    (["--steps", "x"], "--steps: cannot read 'x'"),
    (["--at-levels", "2-1"], "--at-levels: '2-1' is not a range"),
    (["--at-levels", "1000000"], "would prune every layer of mlp_32_16 to nothing"),
]


@pytest.mark.parametrize("flags,message", STABILITY, ids=[" ".join(f) for f, _ in STABILITY])
def test_a_bad_stability_setting_is_one_line_before_anything_is_written(flags, message, tmp_path, capsys):
    root = tmp_path / "runs"
    code, _, err = call(capsys, "stability", *SMALL, *flags, "--out", root)
    one_error(code, err, message)
    nothing_written(root)


# ---- Damaged data files --------------------------------------------------------------------------------------


def _idx_bytes(a: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + a.astype(np.uint8).tobytes()


def _mnist(folder: Path, **replace: bytes) -> Path:
    """Four small IDX files (20 training, 10 test images of 28x28), any of them replaced by the given bytes."""
    folder.mkdir()
    arrays = {"train-images-idx3-ubyte": np.zeros((20, 28, 28)), "train-labels-idx1-ubyte": np.arange(20) % 10,
              "t10k-images-idx3-ubyte": np.zeros((10, 28, 28)), "t10k-labels-idx1-ubyte": np.arange(10)}
    for name, a in arrays.items():
        (folder / name).write_bytes(replace.get(name.split("-")[0] + "_" + name.split("-")[1], _idx_bytes(a)))
    return folder


IDX_CASES = {
    "not IDX": ({"train_images": b"PK\x03\x04 not an idx file"}, "is not an IDX file of unsigned bytes"),
    "header longer than the file": ({"train_images": bytes([0, 0, 8, 200]) + b"\0" * 8}, "damaged IDX header"),
    "header size mismatch": ({"train_images": _idx_bytes(np.zeros((20, 28, 28)))[:-5]},
                             "header says (20, 28, 28) but holds 15675 bytes"),
    "image sizes differ": ({"t10k_images": _idx_bytes(np.zeros((10, 32, 32)))},
                           "holds an array of shape (10, 32, 32), expected images [N, 28, 28]"),
    "counts differ": ({"train_labels": _idx_bytes(np.arange(19) % 10)}, "holds 20 images but"),
    "a stray label 255": ({"train_labels": _idx_bytes(np.array([*range(10), *range(9), 255]))},
                          "holds label 255, outside [0, 10)"),
    "corrupt gzip": ({"train_labels": b"\x1f\x8b\x08\x00garbage"}, "corrupt gzip file"),
}


@pytest.mark.parametrize("case", IDX_CASES)
def test_a_damaged_idx_file_is_one_line_naming_it(case, tmp_path, capsys):
    replace, message = IDX_CASES[case]
    data = _mnist(tmp_path / "mnist", **replace)
    root = tmp_path / "runs"
    code, _, err = call(capsys, "lottery", "--dataset", "mnist", "--data-dir", data, "--no-download",
                        "--model", "mlp_8", "--val-size", "5", "--batch-size", "5", "--train-steps", "2",
                        "--eval-every", "1", "--quiet", "--workers", "1", "--out", root)
    line = one_error(code, err, message)
    assert str(data) in line
    nothing_written(root)


def test_idx_reading_checks_labels_against_the_class_count(tmp_path):
    data = _mnist(tmp_path / "mnist", t10k_labels=_idx_bytes(np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 10])))
    with pytest.raises(Exception, match=r"t10k-labels-idx1-ubyte holds label 10, outside \[0, 10\)"):
        idx.load("mnist", data, download=False)


class _Exploit:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("touch " + os.environ.get("TICKETLAB_TEST_MARKER", "/nonexistent/marker"),))


def _cifar(folder: Path, test_labels=None, test_batch: bytes | None = None) -> Path:  # noqa: ANN001
    folder.mkdir()
    batch = {b"data": np.zeros((10, 3072), dtype=np.uint8), b"labels": list(range(10))}
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
    test = {**batch, **({b"labels": test_labels} if test_labels is not None else {})}
    (folder / "test_batch").write_bytes(test_batch if test_batch is not None else pickle.dumps(test, protocol=4))
    return folder


@pytest.mark.parametrize("case", ["label -1", "label 10", "malicious", "not a dict", "truncated"])
def test_a_bad_cifar_batch_is_one_line_naming_it(case, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "exploited"
    monkeypatch.setenv("TICKETLAB_TEST_MARKER", str(marker))
    good = pickle.dumps({b"data": np.zeros((10, 3072), dtype=np.uint8), b"labels": list(range(10))}, protocol=4)
    kwargs, message = {
        "label -1": ({"test_labels": [-1, *range(9)]}, "label -1 is outside [0, 10)"),
        "label 10": ({"test_labels": [*range(9), 10]}, "label 10 is outside [0, 10)"),
        "malicious": ({"test_batch": pickle.dumps({b"data": _Exploit(), b"labels": []})}, "refusing to load"),
        "not a dict": ({"test_batch": pickle.dumps([1, 2, 3])}, "cannot read CIFAR-10 batch"),
        "truncated": ({"test_batch": good[: len(good) // 2]}, "cannot read CIFAR-10 batch"),
    }[case]
    data = _cifar(tmp_path / "cifar", **kwargs)
    root = tmp_path / "runs"
    code, _, err = call(capsys, "lottery", "--dataset", "cifar10", "--data-dir", data, "--no-download",
                        "--model", "mlp_8", "--val-size", "5", "--batch-size", "5", "--train-steps", "2",
                        "--eval-every", "1", "--quiet", "--workers", "1", "--out", root)
    one_error(code, err, message, str(data / "test_batch"))
    assert not marker.exists()
    nothing_written(root)


# ---- I/O: --out a file, a full or read-only disk ------------------------------------------------------------


def test_out_that_is_a_file_or_below_one_is_one_line(tmp_path, capsys):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    code, _, err = call(capsys, "lottery", *SMALL, "--out", afile)
    one_error(code, err, f"cannot write {afile}: it is a file, not a folder")
    code, _, err = call(capsys, "train", *SMALL, "--out", afile / "runs")
    one_error(code, err, f"cannot write {afile / 'runs'}: {afile} is a file, not a folder")
    assert afile.read_text() == "x"


@pytest.mark.parametrize("errno_,filename,expected", [
    (errno.ENOSPC, None, "cannot write {root}: No space left on device"),
    (errno.EROFS, "{root}/x.json", "cannot write {root}/x.json: Read-only file system"),
    (errno.EACCES, "{root}/.summary.json.abc123.tmp", "cannot write {root}/summary.json: Permission denied"),
])
def test_a_full_or_read_only_disk_during_a_run_is_one_line_and_the_run_resumes(errno_, filename, expected, tmp_path,
                                                                                 capsys, monkeypatch):
    root = tmp_path / "runs"
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):  # noqa: ANN001, ANN202  (the rename of an atomic write: the disk gave out)
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno_, os.strerror(errno_), *([filename.format(root=root)] if filename else []))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    code, _, err = call(capsys, "lottery", *SMALL, "--levels", "1", "--out", root)
    one_error(code, err, expected.format(root=root))
    assert code == 1
    monkeypatch.setattr(os, "replace", real_replace)
    code, out, err = call(capsys, "lottery", *SMALL, "--levels", "1", "--out", root, "--json")
    assert code == 0, err
    assert [lvl["level"] for lvl in json.loads(out)["levels"]] == [0, 1]


def test_a_full_disk_while_weights_are_written_is_one_line(tmp_path, capsys, monkeypatch):
    # every safetensors file is serialised in memory and written as bytes (files.write_safetensors): a full disk
    # during that write is the OSError the write itself raises (ENOSPC, no file name), said in one line
    import errno
    from pathlib import Path

    real = Path.write_bytes

    def full(self, data):  # noqa: ANN001, ANN202
        if ".safetensors." in self.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    root = tmp_path / "runs"
    code, _, err = call(capsys, "train", *SMALL, "--out", root)
    one_error(code, err, f"cannot write {root}: No space left on device")


# ---- The run store is read-only to exports and reports --------------------------------------------------------


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A finished 1-level run in a store: (store root, experiment folder)."""
    root = tmp_path_factory.mktemp("store") / "runs"
    assert main(["lottery", *SMALL, "--levels", "1", "--out", str(root)]) == 0
    (experiment,) = root.glob("lottery_*")
    return root, experiment


@pytest.mark.parametrize("where", ["summary.json of the level", "the experiment", "the store root",
                                   "a file in the store root", "the current folder, the store root"])
def test_export_never_writes_into_the_run_store(where, stored, capsys, monkeypatch):
    root, experiment = stored
    summary = experiment / "seed_0" / "level_1" / "summary.json"
    before = summary.read_bytes()
    out = {"summary.json of the level": summary, "the experiment": experiment, "the store root": root,
           "a file in the store root": root / "t.safetensors", "the current folder, the store root": None}[where]
    if out is None:
        monkeypatch.chdir(root)
    code, _, err = call(capsys, "export", experiment, "--level", "1", *(["--out", out] if out else []))
    one_error(code, err, "inside the run store", "which exports never change")
    assert summary.read_bytes() == before
    assert not (root / "t.safetensors").exists() and not (root / "ticket_level_1.safetensors").exists()


def test_export_writes_to_the_current_folder_by_default(stored, tmp_path, capsys, monkeypatch):
    _, experiment = stored
    monkeypatch.chdir(tmp_path)
    code, out, err = call(capsys, "export", experiment, "--level", "1")
    assert code == 0, err
    assert out.strip() == "ticket_level_1.safetensors" and (tmp_path / "ticket_level_1.safetensors").is_file()


@pytest.mark.parametrize("where", ["the experiment", "a seed folder", "the store root", "a folder in the store root",
                                   "a file"])
def test_report_never_writes_into_the_run_store_nor_onto_a_file(where, stored, tmp_path, capsys):
    root, experiment = stored
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    out = {"the experiment": experiment, "a seed folder": experiment / "seed_0", "the store root": root,
           "a folder in the store root": root / "report", "a file": afile}[where]
    code, _, err = call(capsys, "report", experiment, "--out", out)
    one_error(code, err, "it is a file, not a folder" if where == "a file" else "which reports only read")
    assert not (root / "report").exists() and afile.read_text() == "mine"
    assert not list(experiment.rglob("report.html"))


# ---- A checkpoint that is not one ---------------------------------------------------------------------------


def test_a_malicious_checkpoint_is_refused_without_a_traceback(tmp_path, capsys, monkeypatch):
    import torch

    marker = tmp_path / "exploited"
    monkeypatch.setenv("TICKETLAB_TEST_MARKER", str(marker))
    root = tmp_path / "runs"
    assert call(capsys, "train", *SMALL, "--out", root)[0] == 0
    (job,) = root.glob("train_*/seed_0/level_0")
    (job / "summary.json").unlink()  # unfinished again: the next run reads its checkpoint
    torch.save({"model": _Exploit()}, job / "checkpoint.pt")
    code, _, err = call(capsys, "train", *SMALL, "--out", root)
    assert "Traceback" not in err and not marker.exists(), err
    assert code == 0 or err.startswith("ticketlab: error: "), err


# ---- Signals: one line, exit 128 + signal, and the run resumes ------------------------------------------------


@pytest.mark.parametrize("signum,code,name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_stops_a_run_with_one_line_and_it_resumes(signum, code, name, tmp_path):
    root = tmp_path / "runs"
    args = [sys.executable, "-m", "ticketlab.cli", "train", *SMALL, "--train-steps", "2000", "--eval-every", "20",
            "--checkpoint-every", "20", "--out", str(root)]
    env = {**os.environ, "TICKETLAB_DATA": "/nonexistent-ticketlab-cache"}
    # as from a terminal: a test run in the background (nohup, `cmd &`) inherits SIGINT ignored, and Python
    # then leaves it ignored; the child gets the default disposition back, so Ctrl-C is KeyboardInterrupt
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(root.rglob("checkpoint.pt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert err.splitlines() == [f"ticketlab: stopped by {name}; rerun the same command to resume"], err
    assert not list(root.rglob("summary.json")) and list(root.rglob("checkpoint.pt"))  # stopped, resumable
    resumed = subprocess.run(args + ["--json"], capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["levels"][0]["level"] == 0
    # a temporary file of a write the signal cut short is removed when its job runs again
    assert not list(root.rglob("*.tmp")) and not list(root.rglob("checkpoint.pt"))


@pytest.mark.parametrize("argv,message", [
    (["compare", *SMALL, "--methods", "snip", "--densities", "0.2,0.2", "--checks", "none"],
     "densities: 0.2 given twice (each is one job per seed)"),
    (["compare", *SMALL, "--methods", "snip,snip", "--densities", "0.2", "--checks", "none"],
     "methods: snip given twice"),
    (["strong", *SMALL, "--k", "0.5,0.5"], "k: 0.5 given twice"),
    (["strong", *SMALL, "--k", "0.5", "--scale-fan"], "--scale-fan scales the signed-constant weights: it needs "
                                                       "--weights signed_constant (got --weights own)"),
    (["lottery", *SMALL, "--optimizer", "adam", "--momentum", "0.9"],
     "--momentum (training.momentum = 0.9) has no effect here: it applies only with --optimizer sgd"),
    (["lottery", *SMALL, "--retrain", "rewind", "--finetune-lr", "0.01"], "it applies only with --retrain finetune"),
    (["lottery", *SMALL, "--retrain", "scratch", "--rewind-step", "5"],
     "it applies only with --retrain rewind, lr_rewind or finetune"),
    (["lottery", *SMALL, "--noise-type", "pairflip"], "it applies only with --label-noise > 0"),
    (["lottery", *SMALL, "--gamma", "0.5"], "--gamma (training.gamma = 0.5) has no effect here"),
    (["lottery", *SMALL, "--warmup-steps", "1000000"], "training.warmup_steps (1,000,000) must be below "
                                                       "training.train_steps (20)"),
    (["compare", *SMALL, "--methods", "imp", "--levels", "0", "--densities", "0.2"],
     "--levels (lottery.levels) has no effect here: compare reads IMP at the level nearest each of --densities"),
    (["stability", *SMALL, "--at-levels", "1", "--levels", "3"], "--at-levels names the levels trained"),
    (["sweep", *SMALL, "--over", "model.width=1", "--width", "2"], "model.width is swept (--over) and also set"),
    (["lottery", *SMALL, "--address", "127.0.0.1:1"], "--address is for the ray executor (use --executor ray)"),
    (["lottery", *SMALL, "--executor", "ray", "--population", "4"], "the ray executor trains each job alone"),
    (["lottery", *SMALL, "--population", "4", "--workers", "2"], "--workers 2 would be unused"),
    (["lottery", *SMALL, "--executor", "ray", "--address", "127.0.0.1:1"],
     "cannot connect to the Ray cluster at '127.0.0.1:1': nothing answered there"),
], ids=["densities", "methods", "k", "scale-fan without signed-constant weights", "momentum with adam",
        "finetune-lr with rewind", "rewind-step with scratch", "noise-type without noise", "gamma without milestones",
        "warmup longer than training", "compare levels", "stability levels", "sweep over a given setting",
        "address without ray", "population with ray", "population with workers", "ray address unreachable"])
def test_a_value_given_twice_or_without_effect_is_refused(argv, message, tmp_path, capsys):
    root = tmp_path / "runs"
    report = ["--report-dir", tmp_path / "rep"] if argv[0] in ("compare", "sweep", "strong") else []
    code, _, err = call(capsys, *argv, "--out", root, *report)
    one_error(code, err, message)
    nothing_written(root)


def test_a_ticket_whose_mask_is_not_zeros_and_ones_is_refused(tmp_path, capsys):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    runs = tmp_path / "runs"
    assert call(capsys, "lottery", *SMALL, "--levels", "1", "--out", runs)[0] == 0
    (level,) = runs.glob("lottery_*/seed_0/level_1")
    assert call(capsys, "export", level.parent, "--level", "1", "--format", "safetensors",
                "--out", tmp_path / "t.safetensors")[0] == 0
    with safe_open(tmp_path / "t.safetensors", "pt") as f:
        metadata = f.metadata()
    tensors = load_file(tmp_path / "t.safetensors")
    name = next(k for k in tensors if k.startswith("mask."))
    tensors[name] = tensors[name].to(torch.float32) * 2  # a "mask" of 0 and 2
    save_file(tensors, tmp_path / "bad.safetensors", metadata=metadata)
    code, _, err = call(capsys, "train", *SMALL, "--ticket", tmp_path / "bad.safetensors", "--out", tmp_path / "new")
    one_error(code, err, f"{name} holds values other than 0 and 1: not a mask")
    nothing_written(tmp_path / "new")


def test_the_top_level_hint_names_the_command_once(capsys):
    code, _, err = call(capsys, "bogus-command")
    assert code == 2 and err.rstrip().endswith("(see ticketlab --help)") and "ticketlab ticketlab" not in err
