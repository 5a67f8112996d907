"""Strong tickets: masks learned on frozen random weights (edge-popup, supermasks), and Zhou et al.'s
large_final_same_sign mask applied to the untrained network (training/supermask.py does the learning).

Job kind `strong`: `strong_<h>/seed_<s>/level_0/` with h = the dense experiment's identity (data, model,
training recipe, numerics) + the method's settings (method, k, frozen-weight init, scale-fan and its rule); one
experiment per k. The folder holds what any ticket holds: mask.safetensors, init.safetensors (the frozen
weights the mask applies to), final.safetensors (the same weights; batch-norm running statistics as they
ended), metrics.json and summary.json, with the ticket doctor's findings; so `ticketlab export --level 0`
and `ticketlab report` read it like a lottery level. No weight is ever trained: the job compares every
parameter bitwise before and after and stops with an error if one changed.

lfss needs the dense network trained with the config's recipe (the `dense` job of the same replicate, shared
with every other experiment on it); the mask is cut from its init and final weights and evaluated on the
untrained network.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import store
from ..config import RunConfig
from ..doctor import examine
from ..errors import TicketlabError
from ..jobs import Job, Runtime, register_kind
from ..masks import prunable
from ..training.loop import Diverged
from ..training.supermask import (StrongSpec, evaluate_fixed, kept_count, large_final_same_sign, learn_mask,
                                  prepare_frozen, summary_of)
from .job import ACCURACIES, DIVERGED, require_healthy
from .lottery import level_jobs
from .plan import Replicate, dense_experiment, method_experiment, relative, resolve
from .registry import Experiment, Planned, check_once, check_replicates, drive, register_experiment


# Each method's own recipe, layered between the model's preset and the user's settings (`ticketlab strong`):
# edge-popup's (REFERENCE.md 5.2: SGD 0.1, momentum 0.9, wd 1e-4, batch 128, cosine LR), Zhou et al.'s learned
# Bernoulli supermask (REFERENCE.md 5.1: SGD at LR 100 on the mask logits: their gradients pass through
# sigmoid' <= 1/4 and are tiny, so the usual LRs barely move them). lfss trains the dense network: the
# model's own recipe.
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "edge-popup": {"training": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
                                "batch_size": 128}},
    "supermask": {"training": {"optimizer": "sgd", "lr": 100.0, "momentum": 0.9, "batch_size": 128}},
    "lfss": {},
}

# StrongSpec fields added after strong runs were first stored: at their defaults they leave the folder name as
# it was (the runs stored then were made with that behaviour)
ADDED_SETTINGS = ("scale_fan_rule", "bias_mask", "rounding")


@dataclass
class StrongResult:
    rows: list[dict[str, Any]]  # one per (k, seed): method, k, seed, density, accuracies, losses, job_dir
    experiments: dict[float, Path]  # k -> its experiment folder


def strong_jobs(config: RunConfig, spec: StrongSpec, ks: list[float], reps: list[Replicate],
                runtime: Runtime) -> tuple[dict[float, Path], list[Job]]:
    """One experiment per k (its folder named by the dense identity and the method's settings), one job per
    replicate; lfss adds the dense runs it reads."""
    for k in ks:
        dataclasses.replace(spec, k=k).check()
    dense_id, _ = dense_experiment(config, runtime, record=False)
    folders, jobs = {}, []
    if spec.method == "lfss":
        jobs += [j for rep in reps for j in level_jobs(rep, 0)]
    for k in ks:
        method = dataclasses.replace(spec, k=k)
        settings = dataclasses.asdict(method)
        for name in ADDED_SETTINGS:  # at their defaults, the behaviour from before they existed: same folders
            if settings[name] == getattr(StrongSpec, name):
                settings.pop(name)
        identity = {"dense": dense_id, "strong": settings}
        if config.dataset.augment != "none" and method.method != "lfss":
            # learned strong tickets ignored augmentation before they ran on the one loop: runs stored then
            # say augment but trained without it, so augmented runs get new folders (the others keep theirs)
            identity["augmented_batches"] = True
        folder = method_experiment(config, runtime, "strong", identity, method=method.method, k=k)
        folders[k] = folder
        for rep in reps:
            where = relative(store.level_dir(store.seed_dir(folder, rep.seed), 0), runtime)
            deps = (rep.level(0),) if method.method == "lfss" else ()
            jobs.append(Job("strong", where, {"rep": rep, "spec": method}, deps,
                            label=f"seed {rep.seed} {method.method} k={k:g}"))
    return folders, jobs


@register_kind("strong")
def run_strong_job(job: Job, rt: Runtime) -> None:
    rep: Replicate = job.params["rep"]
    spec: StrongSpec = job.params["spec"]
    config = rep.config
    folder = rt.path(job.folder)
    data = rt.data(config.dataset, rep.fingerprint)
    model = prepare_frozen(rt.model(config, data, rep.seeds["init"]), spec)
    frozen = {k: v.detach().clone() for k, v in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    if spec.method == "lfss":
        require_healthy(rt.path(job.deps[0]), f"seed {rep.seed} dense run")
        init = store.load_weights(rt.path(job.deps[0]) / store.INIT, "cpu")
        final = store.load_weights(rt.path(job.deps[0]) / store.FINAL, "cpu")
        mask = large_final_same_sign({k: init[k] for k in prunable(model)}, final, spec.k)
        result = evaluate_fixed(model, mask, data)
        changed: list[str] = []
        bias_mask: dict[str, torch.Tensor] = {}
    else:
        progress = (lambda s, t: rt.progress(job.describe(), s, t)) if rt.progress else None
        try:
            learned = learn_mask(model, data, config.training, spec, seed=rep.seeds["data"],
                                 checkpoint=folder / store.CHECKPOINT, checkpoint_every=rt.options.checkpoint_every,
                                 progress=progress)
        except Diverged as d:  # finished all the same, as a lottery level that diverges is (experiments/job.py)
            finish_diverged(folder, rep, spec, d, time.perf_counter() - began)
            return
        mask, result, changed, bias_mask = learned.mask, learned.result, learned.weights_changed, learned.bias_mask
    budget = None if spec.method == "supermask" else {(k,): kept_count(p.numel(), spec.k, spec.rounding)
                                                      for k, p in prunable(model).items()}
    for p in model.parameters():  # the doctor counts paths by autograd on its own copy
        p.requires_grad_(True)
    doctor = examine(model, mask, data.input_shape, budget)
    mask.save(folder / store.MASK)
    store.save_weights(folder / store.INIT, frozen)
    if bias_mask:  # the ticket's function in its files: the masked biases are 0 in final, their mask beside it
        store.write_safetensors(folder / store.BIAS_MASK, {k: v.to(torch.uint8) for k, v in bias_mask.items()})
        with torch.no_grad():
            params = dict(model.named_parameters())
            for name, m in bias_mask.items():
                params[name].mul_(m.to(params[name].device, params[name].dtype))
    store.save_weights(folder / store.FINAL, model)
    store.write_json(folder / store.METRICS, result.evals)
    summary = {"method": spec.method, "variant": "ticket", "k": spec.k, "weights": spec.weights,
               "scale_fan": spec.scale_fan, "scale_fan_rule": spec.scale_fan_rule, "bias_mask": spec.bias_mask,
               "rounding": spec.rounding, "level": 0, "rewind_step": 0, "start_step": 0, "seed": rep.seed,
               **({"bias_counts": {k: int(v.sum()) for k, v in bias_mask.items()}} if bias_mask else {}),
               "seeds": rep.seeds, "data_seed": rep.seeds["data"], "density": mask.density(),
               "layer_density": mask.layer_density(), "layer_counts": mask.counts(), "status": "ok",
               **summary_of(result),
               # no pruned_max_abs: the frozen weights are stored whole and masked in the forward pass, so there
               # is no zeroed weight, gradient or optimizer state to measure; what is measured: no weight changed
               "checks": {"weights_changed": changed, **doctor},
               "train_seconds_this_session": time.perf_counter() - began}
    store.finish_job(folder, summary)
    (folder / store.CHECKPOINT).unlink(missing_ok=True)


def finish_diverged(folder: Path, rep: Replicate, spec: StrongSpec, d: Diverged, seconds: float) -> None:
    """A mask whose training loss or scores stopped being finite: finished all the same, as a lottery level
    that diverges is (experiments/job.py), so a rerun reads it back instead of training it again: status
    "diverged" with the step and why, the evaluations before it, no accuracy and no mask."""
    print(f"seed {rep.seed} {spec.method} k={spec.k:g} diverged at step {d.step}: {d.reason} (lr too high?)",
          file=sys.stderr)
    store.write_json(folder / store.METRICS, d.evals)
    summary = {"method": spec.method, "variant": "ticket", "k": spec.k, "weights": spec.weights,
               "scale_fan": spec.scale_fan, "scale_fan_rule": spec.scale_fan_rule, "level": 0, "rewind_step": 0,
               "start_step": 0, "seed": rep.seed,
               "seeds": rep.seeds, "data_seed": rep.seeds["data"], "density": None, "status": DIVERGED,
               "diverged_at_step": d.step, "diverged_because": d.reason,
               **dict.fromkeys(ACCURACIES),
               "train_seconds_this_session": seconds}
    store.finish_job(folder, summary)
    (folder / store.CHECKPOINT).unlink(missing_ok=True)


def row_of(summary: dict[str, Any], job_dir: Path) -> dict[str, Any]:
    keys = ("method", "k", "seed", "density", "status", "final_test_accuracy", "early_stop_test_accuracy",
            "final_test_loss", "early_stop_test_loss", "early_stop_step", "diverged_at_step")
    return {**{k: summary.get(k) for k in keys}, "job_dir": str(job_dir)}


@dataclass(frozen=True)
class StrongPlan:
    config: RunConfig  # its seed is the first replicate's; its training recipe (cosine LR) learns the masks
    method: str  # training.supermask.METHODS
    ks: tuple[float, ...]  # fractions of the weights KEPT per layer
    replicates: int = 1
    weights: str = "own"  # the frozen weights' init
    scale_fan: bool = False
    scale_fan_rule: str = "kept"  # training.supermask.SCALE_FAN_RULES
    bias_mask: bool = False  # edge-popup: top-k masks over biases too (Plant 'n' Seek's)
    rounding: str = "nearest"  # training.supermask.ROUNDINGS

    def specs(self) -> list[StrongSpec]:
        return [StrongSpec(self.method, k, self.weights, self.scale_fan, self.scale_fan_rule, self.bias_mask,
                           self.rounding) for k in self.ks]


def _validate(plan: StrongPlan) -> None:
    if not plan.ks:
        raise TicketlabError("strong needs at least one k (the fraction of weights kept)")
    check_replicates(plan.replicates)
    check_once(list(plan.ks), "k")
    for spec in plan.specs():
        spec.check()


def _plan(plan: StrongPlan, runtime: Runtime) -> Planned:
    config = dataclasses.replace(plan.config, kind="train")
    reps = resolve(config, [config.seed + r for r in range(plan.replicates)], runtime)
    folders, jobs = strong_jobs(config, plan.specs()[0], list(plan.ks), reps, runtime)
    return Planned(jobs, folders)


def _read(plan: StrongPlan, planned: Planned, runtime: Runtime) -> StrongResult:
    rows = [row_of(store.read_summary(runtime.path(j.folder)), runtime.path(j.folder)) for j in planned.jobs
            if j.kind == "strong"]
    return StrongResult(rows, planned.layout)


STRONG = register_experiment(Experiment(
    "strong", "strong tickets: masks learned on frozen random weights (edge-popup, supermask, lfss)",
    StrongPlan, _plan, _read, validate=_validate, command="strong"))


def run_strong(config: RunConfig, method: str, ks: list[float], *, replicates: int = 1, weights: str = "own",
               scale_fan: bool = False, scale_fan_rule: str = "kept", bias_mask: bool = False,
               rounding: str = "nearest", **keywords: Any) -> StrongResult:
    """Learn (or read back) a strong ticket at each k (the fraction of weights KEPT per layer) for each
    replicate; keyword arguments as for run_study. The training recipe is config.training (cosine LR)."""
    return drive(STRONG, StrongPlan(config, method, tuple(ks), replicates, weights, scale_fan, scale_fan_rule,
                                    bias_mask, rounding), **keywords)
