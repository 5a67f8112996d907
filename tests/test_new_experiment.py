"""The cost of a new experiment kind: this file alone. It registers a job kind and an experiment kind
(`norms`: each layer's weight norm at initialisation and, after the shared dense run, at the end of
training, per seed) and runs it through the one driver from Python and from the command line, which
generates its command from the spec's fields. Nothing under src/ is touched to add it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import pytest

from ticketlab import store
from ticketlab.cli import main, parser
from ticketlab.config import RunConfig
from ticketlab.errors import TicketlabError
from ticketlab.experiments.lottery import level_jobs
from ticketlab.experiments.plan import relative, resolve
from ticketlab.experiments.registry import EXPERIMENTS, Experiment, Planned, drive, register_experiment
from ticketlab.identity import digest
from ticketlab.jobs import Job, Runtime, register_kind
from ticketlab.masks import prunable
from ticketlab.settings import setting

from conftest import small_config

RUNS: list[str] = []  # the folders of the norms jobs that really ran (not read back)


@dataclass(frozen=True)
class NormsPlan:
    config: RunConfig = setting(default_factory=RunConfig, help="the network, data and training recipe")
    replicates: int = setting(1, "seeds, counting up from the config's")
    trained: bool = setting(True, "also the norms after training (plans the dense run)")


@register_kind("norms")
def run_norms(job: Job, rt: Runtime) -> None:
    RUNS.append(job.folder)
    rep = job.params["rep"]
    data = rt.data(rep.config.dataset, rep.fingerprint)
    init = prunable(rt.model(rep.config, data, rep.seeds["init"]))
    summary: dict[str, Any] = {"seed": rep.seed, "init": {k: float(p.detach().norm()) for k, p in init.items()}}
    if job.deps:
        final = store.load_weights(rt.path(job.deps[0]) / store.FINAL, "cpu")
        summary["final"] = {k: float(final[k].norm()) for k in init}
    rt.path(job.folder).mkdir(parents=True, exist_ok=True)
    store.finish_job(rt.path(job.folder), summary)


def plan_norms(plan: NormsPlan, runtime: Runtime) -> Planned:
    config = dataclasses.replace(plan.config, kind="train")
    reps = resolve(config, [config.seed + r for r in range(plan.replicates)], runtime)
    folder = store.experiment_dir(runtime.root, "norms", digest({"dense": reps[0].dense, "trained": plan.trained}))
    jobs = [j for rep in reps for j in level_jobs(rep, 0)] if plan.trained else []
    for rep in reps:
        jobs.append(Job("norms", relative(store.seed_dir(folder, rep.seed), runtime), {"rep": rep},
                        (rep.level(0),) if plan.trained else (), label=f"seed {rep.seed} norms"))
    return Planned(jobs)


def read_norms(plan: NormsPlan, planned: Planned, runtime: Runtime) -> list[dict[str, Any]]:
    return [store.read_summary(runtime.path(j.folder)) for j in planned.jobs if j.kind == "norms"]


def check_norms(plan: NormsPlan) -> None:
    if plan.replicates < 1:
        raise TicketlabError(f"replicates must be at least 1, got {plan.replicates}")


def norms_table(rows: list[dict[str, Any]]) -> str:
    nan = float("nan")
    return "\n".join(f"seed {r['seed']} {name} {r['init'][name]:.4f} -> {r.get('final', {}).get(name, nan):.4f}"
                     for r in rows for name in r["init"])


NORMS = register_experiment(Experiment("norms", "weight norms at init and after training", NormsPlan, plan_norms,
                                       read_norms, validate=check_norms, table=norms_table,
                                       to_json=lambda rows: [{k: r[k] for k in ("seed", "init", "final")}
                                                             for r in rows]))
FAST = {"training": {"train_steps": 40, "eval_every": 20}}
FLAGS = ["--dataset", "synthetic", "--val-size", "500", "--model", "mlp_32_16", "--train-steps", "40",
         "--eval-every", "20", "--batch-size", "32", "--lr", "0.003", "--seed", "0", "--replicates", "2"]


def test_a_new_kind_runs_through_the_driver_and_reads_back(tmp_path, synthetic):
    RUNS.clear()
    plan = NormsPlan(small_config(**FAST), replicates=2)
    rows = drive(NORMS, plan, root=tmp_path, data=synthetic)
    assert [r["seed"] for r in rows] == [0, 1] and len(RUNS) == 2
    for row in rows:  # the values are the stored dense run's weights' norms, not just numbers
        dense = tmp_path / resolve(plan.config, [row["seed"]], Runtime(store_options(tmp_path)))[0].level(0)
        final = store.load_weights(dense / store.FINAL, "cpu")
        init = store.load_weights(dense / store.INIT, "cpu")
        assert row["final"] == {k: float(final[k].norm()) for k in row["init"]}
        assert row["init"] == {k: float(init[k].norm()) for k in row["init"]}
        assert row["final"] != row["init"]  # it trained
    again = drive(NORMS, plan, root=tmp_path, data=synthetic)
    assert again == rows and len(RUNS) == 2  # read back from the store, nothing ran again
    with pytest.raises(TicketlabError, match="replicates must be at least 1"):
        drive(NORMS, NormsPlan(small_config(**FAST), replicates=0), root=tmp_path, data=synthetic)


def store_options(root):  # noqa: ANN001, ANN201
    from ticketlab.experiments.registry import make_options

    return make_options(root=root)


def test_a_new_kind_gets_a_command_that_gives_what_the_library_gives(tmp_path, capsys):
    RUNS.clear()
    assert "norms" in parser().format_help()
    help_text = _help(capsys, "norms")
    assert "--replicates" in help_text and "--trained" in help_text and "--train-steps" in help_text
    # the config's flags come with it, listing every registered model
    assert "planted_circle_<depth>_<width>" in " ".join(help_text.split())
    assert main(["norms", *FLAGS, "--json", "--quiet", "--workers", "1", "--out", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in printed] == [0, 1] and len(RUNS) == 2
    config = small_config(**FAST, dataset={"name": "synthetic", "val_size": 500})
    library = drive(NORMS, NormsPlan(config, replicates=2), root=tmp_path)
    assert NORMS.to_json(library) == printed and len(RUNS) == 2  # same words, same runs: read back
    assert main(["norms", *FLAGS, "--quiet", "--workers", "1", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out == norms_table(library) + "\n"
    assert main(["norms", *FLAGS, "--replicates", "0", "--quiet", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "ticketlab: error: replicates must be at least 1, got 0\n"


def _help(capsys, command: str) -> str:  # noqa: ANN001
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


def test_every_built_in_kind_is_registered_and_a_name_is_taken_once():
    assert {"lottery", "ticket", "compare", "strong", "seek", "stability", "sweep", "reproduce"} <= set(EXPERIMENTS)
    for name, experiment in EXPERIMENTS.items():
        assert experiment.name == name and dataclasses.is_dataclass(experiment.spec)
    with pytest.raises(ValueError, match="already registered"):
        register_experiment(dataclasses.replace(NORMS, help="another"))
    with pytest.raises(TypeError, match="norms takes a NormsPlan"):
        drive(NORMS, small_config(), root="unused")


def test_a_built_in_kind_prints_through_its_experiment_as_the_command_does(tmp_path, capsys):
    """`ticketlab lottery` prints LOTTERY.table(result): the library gives the same text for the same words."""
    from ticketlab import build_config
    from ticketlab.experiments.study import LOTTERY, StudyPlan

    flags = ["--dataset", "synthetic", "--val-size", "500", "--model", "mlp_32_16", "--train-steps", "40",
             "--eval-every", "20", "--batch-size", "32", "--levels", "1", "--quiet", "--workers", "1"]
    assert main(["lottery", *flags, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    config = build_config({"kind": "lottery", "dataset": {"name": "synthetic", "val_size": 500},
                           "model": {"name": "mlp_32_16"}, "lottery": {"levels": 1},
                           "training": {"train_steps": 40, "eval_every": 20, "batch_size": 32}})
    result = drive(LOTTERY, StudyPlan(config), root=tmp_path)
    assert printed == LOTTERY.table(result) + "\n" and "run folder:" in printed
    assert main(["lottery", *flags, "--out", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(LOTTERY.to_json(result)))
