"""One training job in the run store: a mask, the weights to start from, a start step -> a finished folder.

Every kind that trains (a dense run, a pruned level, a control, a stability copy, a ticket) ends here. It
writes mask.safetensors and init.safetensors, trains with checkpoints, then writes final.safetensors,
metrics.json and, last, summary.json (the done marker). A finished job is read back, never retrained.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TrainingHparams
from ..data import DataSplits
from ..masks import Mask, prunable
from ..pruning import Budget, budget_met
from ..store import CHECKPOINT, FINAL, INIT, MASK, METRICS, SUMMARY, is_done, read_json, save_weights, write_json
from ..training.loop import Checkpointing, Hooks, train
from ..jobs import Progress


def run_training(job: Path, *, model: nn.Module, data: DataSplits, training: TrainingHparams, mask: Mask,
                 start: dict[str, torch.Tensor], start_step: int, data_seed: int, budget: Budget | None,
                 info: dict[str, Any], label: str, progress: Progress | None = None, checkpoint_every: int = 1000,
                 hooks: Hooks | None = None) -> dict[str, Any]:
    """Train `model` from `start` * `mask` at `start_step` into folder `job`; returns its summary.

    `budget`: the survivors the mask was asked for, per group of layers (None: dense, nothing asked).
    `info` goes into the summary as it is (level, branch, seeds...).
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
    result = train(model, data, training, mask, data_seed=data_seed, start_step=start_step,
                   checkpoint=Checkpointing(job / CHECKPOINT, checkpoint_every), hooks=hooks)
    seconds = time.perf_counter() - began
    save_weights(job / FINAL, model)
    write_json(job / METRICS, result.evals)
    summary = {**info, "start_step": start_step, "data_seed": data_seed, "density": mask.density(),
               "layer_density": mask.layer_density(), "layer_counts": mask.counts(), **result.summary(),
               "checks": self_checks(mask, budget, result.checks, label),
               "train_seconds_this_session": seconds}
    write_json(job / SUMMARY, summary)  # last: marks the job done
    (job / CHECKPOINT).unlink(missing_ok=True)
    return summary


def self_checks(mask: Mask, budget: Budget | None, pruned: dict[str, float], label: str) -> dict[str, Any]:
    """A pruned weight, gradient or optimizer state that is not exactly 0 is a bug: stop. Counts that differ
    from the request, and layers left with no weight, are recorded (and shown by the CLI and report)."""
    if any(v != 0.0 for v in pruned.values()):
        raise RuntimeError(f"{label}: pruned positions are not exactly zero after training: {pruned}")
    counts = mask.counts()
    requested = {"+".join(group): n for group, n in budget.items()} if budget is not None else None
    return {"pruned_max_abs": pruned, "counts_as_requested": budget is None or budget_met(mask, budget),
            "requested": requested, "collapsed_layers": [k for k, c in counts.items() if c == 0]}
