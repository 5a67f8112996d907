"""One training job in the run store: a mask, the weights to start from, a start step -> a finished folder.

Every kind that trains (a dense run, a pruned level, a control, a stability copy, a ticket) ends here. It
writes mask.safetensors and init.safetensors, trains with checkpoints, then writes final.safetensors,
metrics.json and, last, summary.json (the done marker). A finished job is read back, never retrained.

A job whose training diverges (training.loop.Diverged) is finished too, so a rerun does not train it again:
its summary says "status": "diverged" with the step, and holds no accuracy (null); no final.safetensors is
written. Nothing is built on it: `require_healthy` refuses (errors.Blocked) for every kind that reads a
finished job. Summaries written before statuses existed have none: `status_of` reads them as "ok".

Every mask goes through the ticket doctor (doctor.py) before training: requested vs achieved counts, empty
layers, kept weights on no input-output path. A collapsed mask (no path at all) is never trained at chance:
the job finishes with "status": "collapsed", its findings, and no accuracy; nothing is built on it either.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TrainingHparams
from ..data import DataSplits
from ..errors import Blocked
from ..masks import Mask, prunable
from ..doctor import examine
from ..pruning import Budget
from ..store import (CHECKPOINT, FINAL, INIT, MASK, METRICS, SUMMARY, finish_job, is_done, read_json, save_weights,
                     write_json)
from ..training.cost import dense_counts, training_flops
from ..training.dynamic import DynamicMask
from ..training.loop import Checkpointing, Diverged, Hooks
from ..training.policy import MaskPolicy
from ..training.population import trainer
from ..training.fit import train_fit
from ..jobs import Progress

OK, DIVERGED, COLLAPSED = "ok", "diverged", "collapsed"
ACCURACIES = ("early_stop_step", "early_stop_test_accuracy", "early_stop_val_loss", "final_step",
              "final_test_accuracy", "final_val_accuracy", "early_stop_test_loss",
              "final_test_loss")  # TrainResult.summary's keys: null when diverged


def run_training(job: Path, *, model: nn.Module, data: DataSplits, training: TrainingHparams, mask: Mask,
                 start: dict[str, torch.Tensor], start_step: int, data_seed: int, budget: Budget | None,
                 info: dict[str, Any], label: str, progress: Progress | None = None, checkpoint_every: int = 1000,
                 hooks: Hooks | None = None, policy: MaskPolicy | None = None) -> dict[str, Any]:
    """Train `model` from `start` * `mask` at `start_step` into folder `job`; returns its summary.

    `budget`: the survivors the mask was asked for, per group of layers (None: dense, nothing asked).
    `info` goes into the summary as it is (level, branch, seeds...). `policy`: trains instead of
    StaticMask(mask) (`mask` is then where it starts). A DynamicMask (training/dynamic.py) changes the mask
    while training: the stored mask, the summary's densities and the doctor's findings are then those of the
    mask it ends with, and the summary holds its training FLOPs.
    """
    if is_done(job):  # a run killed between the summary and the checkpoint's removal leaves one behind
        (job / CHECKPOINT).unlink(missing_ok=True)
        return read_json(job / SUMMARY)
    model.load_state_dict(start)
    with torch.no_grad():
        for name, p in prunable(model).items():
            p.mul_(mask[name].to(p.device, p.dtype))
    job.mkdir(parents=True, exist_ok=True)
    if not (job / MASK).is_file():
        mask.save(job / MASK)
    save_weights(job / INIT, model)
    hooks = hooks or Hooks()
    if progress:
        hooks.progress = lambda s, t: progress(label, s, t)
    began = time.perf_counter()
    head = {**info, "start_step": start_step, "data_seed": data_seed, "density": mask.density(),
            "layer_density": mask.layer_density(), "layer_counts": mask.counts()}
    doctor = examine(model, mask, data.input_shape, budget)
    if doctor["collapsed"]:
        print(f"ticketlab: {label}: the mask leaves no path from input to output (layer collapse: "
              f"{', '.join(doctor['collapsed_layers'])}); not trained", file=sys.stderr)
        summary = {**head, "status": COLLAPSED, **dict.fromkeys(ACCURACIES), "checks": doctor}
        finish_job(job, summary)
        return summary
    try:
        # trainer(): `train`, unless the population executor collects this run to train it with others
        result = trainer()(model, data, training, None if policy else mask, data_seed=data_seed,
                           start_step=start_step, checkpoint=Checkpointing(job / CHECKPOINT, checkpoint_every),
                           hooks=hooks, policy=policy)
    except Diverged as d:
        # finished all the same (a rerun must not train it again), with no accuracy and no final weights
        print(f"{label} diverged at step {d.step}: {d.reason} (lr {training.lr:g} too high?)", file=sys.stderr)
        write_json(job / METRICS, d.evals)  # the evaluations before it: all finite
        summary = {**head, "status": DIVERGED, "diverged_at_step": d.step, "diverged_because": d.reason,
                   **dict.fromkeys(ACCURACIES), "checks": self_checks(doctor, {}, label),
                   "train_seconds_this_session": time.perf_counter() - began}
        finish_job(job, summary)  # last: marks the job done (with its files' hashes)
        (job / CHECKPOINT).unlink(missing_ok=True)
        return summary
    seconds = time.perf_counter() - began
    if isinstance(policy, DynamicMask):  # the mask it ended with is the ticket
        mask = Mask({k: v.cpu() for k, v in policy.mask.tensors.items()})
        mask.save(job / MASK)
        doctor = examine(model, mask, data.input_shape, budget)
        head = {**head, "start_density": head["density"], "density": mask.density(),
                "layer_density": mask.layer_density(), "layer_counts": mask.counts(), "train_flops": policy.flops,
                "dense_train_flops": training_flops(policy.uses, dense_counts(model), training.train_steps - start_step,
                                                    policy.batch_size),
                "mask_updates": policy.updates}
    save_weights(job / FINAL, model)
    write_json(job / METRICS, result.evals)
    summary = {**head, "status": OK, **result.summary(), **train_fit(model, data),  # train error: training/fit.py
               "checks": self_checks(doctor, result.checks, label),
               "train_seconds_this_session": seconds}
    finish_job(job, summary)  # last: marks the job done (with its files' hashes)
    (job / CHECKPOINT).unlink(missing_ok=True)
    return summary


def status_of(summary: dict[str, Any]) -> str:
    """"ok" or "diverged"; a summary written before statuses existed is "ok"."""
    return summary.get("status", OK)


def require_healthy(folder: Path, what: str = "") -> dict[str, Any]:
    """The summary of the finished job in `folder`, which another job is about to build on; errors.Blocked
    (one line naming the folder and step) if that job diverged or is not finished."""
    if not is_done(folder):
        raise Blocked(f"{what or folder} is not finished ({folder}): nothing is built on it")
    summary = read_json(folder / SUMMARY)
    if status_of(summary) == DIVERGED:
        raise Blocked(f"{what + ' ' if what else ''}diverged at step {summary.get('diverged_at_step')} ({folder}): "
                      "nothing is built on it; rerun with a lower --lr")
    if status_of(summary) == COLLAPSED:
        raise Blocked(f"{what + ' ' if what else ''}collapsed: its mask leaves no path from input to output "
                      f"({folder}): nothing is built on it")
    return summary


def self_checks(doctor: dict[str, Any], pruned: dict[str, float], label: str) -> dict[str, Any]:
    """A pruned weight, gradient or optimizer state that is not exactly 0 is a bug: stop. The doctor's
    findings (counts vs the request, empty layers, weights on no path) are recorded, and shown by the CLI and
    the report."""
    if any(v != 0.0 for v in pruned.values()):
        raise RuntimeError(f"{label}: pruned positions are not exactly zero after training: {pruned}")
    return {"pruned_max_abs": pruned, **doctor}
