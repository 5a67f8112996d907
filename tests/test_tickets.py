"""A ticket as an input: `train --ticket FILE` trains an exported mask again, from the file's weights or the
model's own, in `ticket_<h>/seed_<s>/level_<L>/`; bad tickets are one clear error."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from ticketlab import Mask, TicketlabError, run_lottery
from ticketlab.experiments.study import train_ticket
from ticketlab.export import export_ticket, load_ticket
from ticketlab.masks import prunable
from ticketlab.models import build_model
from ticketlab.seeds import streams
from ticketlab.store import load_weights, read_json
from conftest import run_cli, small_config

LEVEL, REWIND = 2, 50  # a pruned level that starts at a step > 0, so "the file's start step" means something
SMALL = ["--dataset", "synthetic", "--model", "mlp_32_16", "--val-size", "500", "--train-steps", "200",
         "--eval-every", "50", "--batch-size", "32", "--threads", "1"]


@pytest.fixture(scope="module")
def ticket(tmp_path_factory, synthetic):
    """A lottery run (level 2 rewound to step 50) and its level 2 exported as a safetensors ticket."""
    config = small_config(lottery={"levels": LEVEL, "rewind_step": REWIND})
    runs = tmp_path_factory.mktemp("runs")
    result = run_lottery(config, data=synthetic, root=runs)
    path = export_ticket(result.run_dir, LEVEL, "safetensors", tmp_path_factory.mktemp("tickets") / "t.safetensors")
    return config, result.run_dir / f"level_{LEVEL}", path


def recipe(config, **sections):
    """The ticket's recipe as a `train` run (the kind and the lottery settings do not matter to a ticket)."""
    return small_config(kind="train", **sections) if sections else dataclasses.replace(config, kind="train")


def job_dir(result, seed=0):
    folder = result.replicates[seed]["run_dir"] / f"level_{LEVEL}"
    assert folder.parent.parent.name.startswith("ticket_") and folder.parent.name == f"seed_{seed}"
    return folder


def equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stored_start_trains_the_files_mask_from_its_weights_at_its_start_step(ticket, synthetic, tmp_path):
    config, level, path = ticket
    stored = load_ticket(path)
    result = train_ticket(recipe(config), path, data=synthetic, root=tmp_path)
    job = job_dir(result)
    assert equal(Mask.load(job / "mask.safetensors").tensors,
                 {k: v.to(torch.uint8) for k, v in stored["masks"].items()})
    assert equal(load_weights(job / "init.safetensors"), stored["init"])
    summary = read_json(job / "summary.json")
    assert summary["start_step"] == read_json(level / "summary.json")["start_step"] == REWIND
    assert (summary["level"], summary["variant"], summary["ticket_start"]) == (LEVEL, "ticket", "stored")
    assert summary["density"] == pytest.approx(stored["metadata"]["density"])
    assert result.replicates[0]["levels"] == [summary]
    # Same recipe, seed and numerics as the level it came from: the ticket is retrained bit for bit.
    assert equal(load_weights(job / "final.safetensors"), load_weights(level / "final.safetensors"))


def test_stored_start_with_more_replicates_shares_the_start_not_the_data_order(ticket, synthetic, tmp_path):
    config, _, path = ticket
    result = train_ticket(recipe(config), path, replicates=2, data=synthetic, root=tmp_path)
    a, b = job_dir(result, 0), job_dir(result, 1)
    assert equal(load_weights(a / "init.safetensors"), load_weights(b / "init.safetensors"))
    assert read_json(a / "summary.json")["data_seed"] != read_json(b / "summary.json")["data_seed"]
    assert not equal(load_weights(a / "final.safetensors"), load_weights(b / "final.safetensors"))


def test_own_start_masks_the_models_own_initial_weights_at_step_0(ticket, synthetic, tmp_path):
    config, _, path = ticket
    mask = load_ticket(path)["masks"]
    own = recipe(config, seed=3, model={"name": "mlp_32_16", "init": "kaiming_uniform"})
    result = train_ticket(own, path, start="own", data=synthetic, root=tmp_path)
    job = job_dir(result, 3)
    model = build_model(own.model, synthetic.input_shape, synthetic.num_classes, streams(3)["init"])
    weights = prunable(model)
    want = {k: v * mask[k] if k in weights else v for k, v in model.state_dict().items()}
    assert equal(load_weights(job / "init.safetensors"), want)
    assert not equal(load_weights(job / "init.safetensors"), load_ticket(path)["init"])
    summary = read_json(job / "summary.json")
    assert (summary["start_step"], summary["ticket_start"], summary["seed"]) == (0, "own", 3)
    assert equal(Mask.load(job / "mask.safetensors").tensors, {k: v.to(torch.uint8) for k, v in mask.items()})
    stored = train_ticket(recipe(config), path, data=synthetic, root=tmp_path)
    assert stored.experiment_dir != result.experiment_dir  # the start is part of the ticket run's identity


@pytest.mark.parametrize("start", ["stored", "own"])
@pytest.mark.parametrize("model,message", [("mlp_64_32", r"mask for hidden\.0\.weight has shape \(32, 256\)"),
                                           ("mlp_32_16_8", "mask does not fit the model")])
def test_a_ticket_for_other_shapes_is_one_clear_error(ticket, synthetic, tmp_path, start, model, message):
    config, _, path = ticket
    with pytest.raises(TicketlabError, match=message):
        train_ticket(recipe(config, model={"name": model}), path, start=start, data=synthetic, root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.parametrize("change,message", [
    ({"training": {"train_steps": REWIND, "eval_every": 10}}, f"starts at step {REWIND}, at or past this run's"),
    ({"start": "later"}, "unknown ticket start 'later'"),
    ({"path": "missing.safetensors"}, "ticket file not found"),
])
def test_bad_tickets_are_one_clear_error_before_any_folder(ticket, synthetic, tmp_path, change, message):
    config, _, path = ticket
    sections = {k: v for k, v in change.items() if k == "training"}
    kwargs = {"start": change.get("start", "stored")}
    file = tmp_path / change["path"] if "path" in change else path
    with pytest.raises(TicketlabError, match=message):
        train_ticket(recipe(config, **sections), file, data=synthetic, root=tmp_path / "runs", **kwargs)
    assert not (tmp_path / "runs").exists()


def test_a_dense_export_is_not_a_ticket(ticket, synthetic, tmp_path):
    config, level, _ = ticket
    dense = export_ticket(level.parent, LEVEL, "dense", tmp_path / "dense.safetensors")
    with pytest.raises(TicketlabError, match="not a ticketlab ticket"):
        train_ticket(recipe(config), dense, data=synthetic, root=tmp_path / "runs")


def test_a_file_that_is_not_safetensors_is_one_clear_error(ticket, synthetic, tmp_path):
    config, _, _ = ticket
    bad = tmp_path / "notes.safetensors"
    bad.write_text("not a ticket\n")
    with pytest.raises(TicketlabError, match="is not a ticketlab ticket"):
        train_ticket(recipe(config), bad, data=synthetic, root=tmp_path / "runs")


def test_rerunning_reads_back_without_training(ticket, synthetic, tmp_path):
    config, _, path = ticket
    calls = []
    first = train_ticket(recipe(config), path, data=synthetic, root=tmp_path, progress=lambda *a: calls.append(a))
    assert calls  # it trained, and said so
    mtimes = {p: p.stat().st_mtime_ns for p in job_dir(first).iterdir()}
    calls.clear()
    again = train_ticket(recipe(config), path, data=synthetic, root=tmp_path, progress=lambda *a: calls.append(a))
    assert calls == []
    assert again.replicates == first.replicates
    assert {p: p.stat().st_mtime_ns for p in job_dir(again).iterdir()} == mtimes


def test_cli_train_ticket_end_to_end(ticket, tmp_path):
    _, _, path = ticket
    out = run_cli("train", *SMALL, "--ticket", str(path), "--out", str(tmp_path / "runs"), "--quiet")
    assert out.returncode == 0, out.stderr
    assert "early-stop step" in out.stdout and "run folder:" in out.stdout
    row = out.stdout.splitlines()[1].split()
    assert row[:2] == [str(LEVEL), f"{100 * load_ticket(path)['metadata']['density']:.1f}"]
    folder = out.stdout.splitlines()[-1].removeprefix("run folder: ")
    assert "/ticket_" in folder and (Path(folder) / f"level_{LEVEL}" / "summary.json").is_file()
    again = run_cli("train", *SMALL, "--ticket", str(path), "--out", str(tmp_path / "runs"), "--json")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["run_dir"] == folder and [lvl["level"] for lvl in result["levels"]] == [LEVEL]


@pytest.mark.parametrize("args,message", [
    (["--ticket", "/nonexistent/t.safetensors"], "ticket file not found: /nonexistent/t.safetensors"),
    (["--ticket-start", "own"], "--ticket-start needs --ticket"),
])
def test_cli_bad_ticket_is_one_clear_line(tmp_path, args, message):
    out = run_cli("train", *SMALL, *args, "--out", str(tmp_path / "runs"))
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("ticketlab: error:"), out.stderr
    assert message in lines[0]
    assert not (tmp_path / "runs").exists()
