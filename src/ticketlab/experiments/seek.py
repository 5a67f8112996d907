"""Plant 'n' Seek: a known ticket planted in a random network (models/planted.py), then pruning methods run
on that network, each scored by accuracy (or test loss for regression) and by how much of the planted mask it
recovered (precision and recall of its kept weights against the planted ones).

`plant_record` writes one planted network to the run store as a record, `planted_<h>/` (h = task, depth,
width, seed): planted.safetensors (each layer's weight, bias, planted mask and the target's weight and bias)
and summary.json (counts, ground-truth density, and the largest difference between the planted subnetwork's
outputs and the target's on the task's test inputs). The model `planted_<task>_<depth>_<width>` of the
registry builds the same network from the replicate's init seed, so `seek` runs every method through the
ordinary machinery on it: IMP = the lottery levels nearest each density, SNIP/GraSP/SynFlow/random/magnitude
= `pai` jobs, edge-popup = `strong` jobs on the frozen planted weights (k = the density).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import store
from ..config import RunConfig
from ..data import DATASETS, DataSplits, dataset_info
from ..errors import TicketlabError
from ..identity import digest
from ..jobs import Runtime
from ..masks import Mask
from ..models import build_model
from ..models.planted import CONSTRUCTION, TASKS, construct, evaluate_layers, parse, planted_mask, recovery
from ..pruning import layers_of
from ..seeds import streams
from ..training.evaluate import evaluate
from ..training.supermask import StrongSpec
from .compare import nearest_levels
from .lottery import level_jobs
from .pai import method as pai_method, pai_jobs
from .plan import provenance, resolve
from .strong import strong_jobs
from .registry import Experiment, Planned, check_densities, check_replicates, drive, register_experiment

PLANTED = "planted.safetensors"
SEEK_METHODS = ("imp", "snip", "grasp", "synflow", "random", "magnitude", "edge-popup")


def model_name(task: str, depth: int, width: int) -> str:
    return f"planted_{task}_{depth}_{width}"


def plant_record(task: str, depth: int, width: int, seed: int = 0, root: Path | str = store.DEFAULT_ROOT,
                 output: str = "scaled") -> dict[str, Any]:
    """Build (or read back) the planted network of `seed` (drawn from the seed's init stream, as the
    replicate of that seed builds it; `output`: the output layer's rule, model.planted_output) and its record;
    returns the record's summary (with "folder")."""
    if task not in TASKS:
        raise TicketlabError(f"unknown planted task {task!r}; choose from: {', '.join(TASKS)}")
    name = model_name(task, depth, width)
    init_seed = streams(seed)["init"]
    identity = {"model": name, "seed": seed, "init_seed": init_seed, "construction": CONSTRUCTION,
                **({} if output == "scaled" else {"planted_output": output})}
    folder = store.experiment_dir(root, "planted", digest(identity))
    if store.is_done(folder):
        return {**store.read_summary(folder), "folder": str(folder)}
    layers, masks, goal, scale = construct(task, depth, width, init_seed, output)
    tensors: dict[str, torch.Tensor] = {}
    for i, ((w, b), m) in enumerate(zip(layers, masks)):
        tensors[f"layer{i}.weight"] = torch.from_numpy(w.T.copy()).float()
        tensors[f"layer{i}.bias"] = torch.from_numpy(b.copy()).float()
        tensors[f"layer{i}.planted"] = torch.from_numpy(m.T.copy()).to(torch.uint8)
    for i, (w, b) in enumerate(goal):
        tensors[f"target{i}.weight"] = torch.from_numpy(w.T.copy()).float()
        tensors[f"target{i}.bias"] = torch.from_numpy(b.copy()).float()
    tensors["output_scale"] = torch.from_numpy(scale.copy())
    test_x = dataset_info(task).load(None, False)[2].astype(np.float64)
    sub = [(w * m, b) for (w, b), m in zip(layers, masks)]
    # the ticket computes output_scale x the target: divided out, as the reference evaluates it
    error = float(np.abs(evaluate_layers(sub, test_x) / scale - evaluate_layers(goal, test_x)).max())
    planted = sum(int(m.sum()) for m in masks)
    total = sum(m.size for m in masks)
    store.record_experiment(folder, {"kind": "planted", "hash": digest(identity), "identity": identity}, provenance)
    store.write_safetensors(folder / PLANTED, tensors)
    summary = {**identity, "task": task, "depth": depth, "width": width, "planted_weights": planted,
               "weights": total, "density": planted / total,
               "planted_biases": sum(int((m.any(axis=0)).sum()) for m in masks),
               "layer_planted": [int(m.sum()) for m in masks], "planted_output": output,
               "output_scale": scale.tolist(),
               "largest_planted_weight": [float(np.abs(w[m]).max()) if m.any() else 0.0
                                          for (w, _), m in zip(layers, masks)],
               "largest_output": float(np.abs(evaluate_layers(layers, test_x)).max()),
               "subnetwork_vs_target_max_abs": error, "status": "ok"}
    store.finish_job(folder, summary)
    return {**summary, "folder": str(folder)}


@dataclass
class SeekResult:
    rows: list[dict[str, Any]]  # one per (method, density, seed): accuracy / loss, precision, recall
    planted: list[dict[str, Any]]  # each replicate's planted record
    baseline: list[dict[str, Any]]  # each replicate's planted subnetwork, untrained: test accuracy / loss
    dense: list[dict[str, Any]]  # the dense runs' summaries
    regression: bool
    notes: list[str] = dataclasses.field(default_factory=list)  # jobs not run, and why


def check_methods(methods: list[str], regression: bool) -> None:
    if not methods:
        raise TicketlabError("seek needs at least one method")
    for m in methods:
        if m not in SEEK_METHODS:
            raise TicketlabError(f"unknown method {m!r}; choose from: {', '.join(SEEK_METHODS)}")
        if regression and m in ("snip", "grasp"):
            raise TicketlabError(f"{m} scores with a cross-entropy loss on class labels: not for a regression task "
                                 "(use imp, synflow, random, magnitude or edge-popup)")


@dataclass(frozen=True)
class SeekPlan:
    config: RunConfig  # model planted_<task>_<depth>_<width> on its task's data set; seed: the first replicate's
    methods: tuple[str, ...]  # SEEK_METHODS
    densities: tuple[float, ...]  # fractions of the weights kept
    replicates: int = 1
    edge_popup_biases: bool = True  # edge-popup masks biases too, as Plant 'n' Seek's (StrongSpec.bias_mask)

    @property
    def regression(self) -> bool:
        name = self.config.dataset.name
        return DATASETS[name].regression if name in DATASETS else False


def _validate(plan: SeekPlan) -> None:
    task, _, _ = parse(plan.config.model.name)
    if plan.config.dataset.name != task:
        raise TicketlabError(f"{plan.config.model.name} is planted for the {task} data set, not "
                             f"{plan.config.dataset.name}")
    check_methods(list(plan.methods), plan.regression)
    for m in plan.methods:
        if m not in ("imp", "edge-popup"):
            pai_method(m)
    check_densities(list(plan.densities))
    check_replicates(plan.replicates)


def _plan(plan: SeekPlan, runtime: Runtime) -> Planned:
    config = dataclasses.replace(plan.config, kind="lottery")
    methods, densities = plan.methods, list(plan.densities)
    seeds = [config.seed + r for r in range(plan.replicates)]
    planted = [plant_record(*parse(config.model.name), s, runtime.root, config.model.planted_output) for s in seeds]
    reps = resolve(config, seeds, runtime)
    jobs, imp_levels = [], {}
    if "imp" in methods:
        data = runtime.data(config.dataset)
        imp_levels = nearest_levels(config, layers_of(runtime.model(config, data, reps[0].seeds["init"])), densities)
        jobs += [j for rep in reps for j in level_jobs(rep, max(imp_levels.values()))]
    else:
        jobs += [j for rep in reps for j in level_jobs(rep, 0)]  # the dense baseline
    _, pai = pai_jobs(config, [m for m in methods if m not in ("imp", "edge-popup")], densities, reps, runtime,
                      checks=())
    strong: list = []
    if "edge-popup" in methods:
        spec = StrongSpec("edge-popup", densities[0], bias_mask=plan.edge_popup_biases)
        _, strong = strong_jobs(config, spec, densities, reps, runtime)
    return Planned(jobs + pai + strong, (config, planted, reps, imp_levels, pai, strong))


def _read(plan: SeekPlan, planned: Planned, runtime: Runtime) -> SeekResult:
    config, planted, reps, imp_levels, pai, strong = planned.layout
    truth = {rep.seed: planted_mask(config.model.name, rep.seeds["init"], config.model.planted_output) for rep in reps}
    rows = []
    for rep in reps:
        for d, level in imp_levels.items():
            rows.append(_row("imp", d, runtime.path(rep.level(level)), truth[rep.seed]))
    rows += [_row(j.params["method"], j.params["density"], runtime.path(j.folder), truth[j.params["rep"].seed])
             for j in pai]
    rows += [_row("edge-popup", j.params["spec"].k, runtime.path(j.folder), truth[j.params["rep"].seed])
             for j in strong]
    dense = [store.read_summary(runtime.path(rep.level(0))) for rep in reps]
    data = runtime.data(config.dataset)
    baseline = [planted_baseline(config, rep.seed, data) for rep in reps]
    return SeekResult(rows, planted, baseline, dense, plan.regression, planned.notes)


SEEK = register_experiment(Experiment(
    "seek", "Plant 'n' Seek: pruning methods on a network with a planted ticket, scored by what they recover",
    SeekPlan, _plan, _read, validate=_validate, partial=True, command="seek"))


def run_seek(config: RunConfig, methods: list[str], densities: list[float], *, replicates: int = 1,
             edge_popup_biases: bool = True, **keywords: Any) -> SeekResult:
    """Run (or read back) each method at each density on the planted network of config.model.name
    (planted_<task>_<depth>_<width>), one planted network per replicate seed; keyword arguments as for
    run_study. A job that could not run (built on a collapsed IMP level) is a "not run" row, said in notes.
    `edge_popup_biases`: edge-popup masks each layer's biases too, with the same k (Plant 'n' Seek's)."""
    return drive(SEEK, SeekPlan(config, tuple(methods), tuple(densities), replicates, edge_popup_biases),
                 **keywords)


def _row(method: str, requested: float, job: Path, truth: dict[str, torch.Tensor]) -> dict[str, Any]:
    if not store.is_done(job):  # not run: it builds on a collapsed or diverged job (said in the notes)
        return {"method": method, "seed": store.seed_of(_seed_folder(job)), "requested_density": requested,
                "density": float("nan"), "status": "not run", "accuracy": None, "loss": None,
                "precision": float("nan"), "recall": float("nan"), "found": None, "kept": None, "planted": None,
                "job_dir": str(job)}
    summary = store.read_summary(job)
    mask = Mask.load(job / store.MASK)
    found = recovery(mask.tensors, truth)
    return {"method": method, "seed": summary["seed"], "requested_density": requested, "density": summary["density"],
            "status": summary.get("status", "ok"), "accuracy": summary.get("early_stop_test_accuracy"),
            "loss": summary.get("early_stop_test_loss"), "precision": found["precision"],
            "recall": found["recall"], "found": found["found"], "kept": found["kept"], "planted": found["planted"],
            "job_dir": str(job)}


def _seed_folder(job: Path) -> Path:
    return next(p for p in (job, *job.parents) if p.name.startswith("seed_"))


class _Unscaled(nn.Module):
    """A planted network's outputs divided by its output scale: the target's outputs, from the planted ticket."""

    def __init__(self, model: nn.Module, scale: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.scale


def planted_baseline(config: RunConfig, seed: int, data: DataSplits) -> dict[str, float | None]:
    """The planted subnetwork alone (untrained) on the test set, its output scale divided out as the reference
    evaluates it (tickets.net_eval): its accuracy (or loss) as a reference."""
    init = streams(seed)["init"]
    model = build_model(config.model, data.input_shape, data.num_classes, init).to(data.test_x.device)
    planting = construct(*parse(config.model.name), init, config.model.planted_output)
    mask = planted_mask(config.model.name, init, config.model.planted_output)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in mask:
                p.mul_(mask[name].to(p.dtype))
    scale = torch.as_tensor(planting.output_scale, dtype=data.test_x.dtype, device=data.test_x.device)
    loss, acc = evaluate(_Unscaled(model, scale), data.test_x, data.test_y)
    return {"seed": seed, "loss": loss, "accuracy": None if math.isnan(acc) else acc}


__all__ = ["plant_record", "run_seek", "SeekResult", "planted_baseline"]
