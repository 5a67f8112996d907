"""One training job in the run store: a mask, the weights to start from, a start step -> a finished folder.

IMP levels and every branch of a level (controls, later retraining modes) are jobs. A job writes
mask.safetensors and init.safetensors, trains with checkpoints, then writes final.safetensors,
metrics.json and, last, summary.json (the done marker). A finished job is read back, never retrained.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..config import TrainingHparams
from ..data import DataSplits
from ..masks import Mask, prunable
from ..store import is_done, read_json, save_weights, write_json
from ..training.loop import Checkpointing, Hooks, train

Progress = Callable[[str, int, int], None]  # (label, step, last step)


def run_job(job: Path, *, model: nn.Module, data: DataSplits, training: TrainingHparams, mask: Mask,
            start: dict[str, torch.Tensor], start_step: int, data_seed: int, wanted_counts: dict[str, int],
            info: dict[str, Any], label: str, progress: Progress | None = None, checkpoint_every: int = 1000,
            at_step: dict[int, Callable[[nn.Module], None]] | None = None) -> dict[str, Any]:
    """Train `model` from `start` * `mask` at `start_step` into folder `job`; returns its summary.

    `wanted_counts`: survivors per layer the mask must have; key '*' holds the pooled total of the layers
    not named (global pruning). `info` goes into the summary as it is (level, branch, seeds...).
    """
    if is_done(job):  # a run killed between the summary and the checkpoint's removal leaves one behind
        (job / "checkpoint.pt").unlink(missing_ok=True)
        return read_json(job / "summary.json")
    model.load_state_dict(start)
    with torch.no_grad():
        for name, p in prunable(model).items():
            p.mul_(mask[name].to(p.device, p.dtype))
    job.mkdir(parents=True, exist_ok=True)
    if not (job / "mask.safetensors").is_file():
        mask.save(job / "mask.safetensors")
    save_weights(job / "init.safetensors", model)
    hooks = Hooks(at_step=dict(at_step or {}),
                  progress=(lambda s, t: progress(label, s, t)) if progress else None)
    began = time.perf_counter()
    result = train(model, data, training, mask, data_seed=data_seed, start_step=start_step,
                   checkpoint=Checkpointing(job / "checkpoint.pt", checkpoint_every), hooks=hooks)
    seconds = time.perf_counter() - began
    save_weights(job / "final.safetensors", model)
    write_json(job / "metrics.json", result.evals)
    summary = {**info, "start_step": start_step, "data_seed": data_seed, "density": mask.density(),
               "layer_density": mask.layer_density(), "layer_counts": mask.counts(), **result.summary(),
               "checks": self_checks(mask, wanted_counts, result.checks, label),
               "train_seconds_this_session": seconds}
    write_json(job / "summary.json", summary)  # last: marks the job done
    (job / "checkpoint.pt").unlink(missing_ok=True)
    return summary


def self_checks(mask: Mask, wanted: dict[str, int], pruned: dict[str, float], label: str) -> dict[str, Any]:
    """A pruned weight, gradient or optimizer state that is not exactly 0 is a bug: stop. Counts that differ
    from the request, and layers left with no weight, are recorded (and shown by the CLI and report)."""
    if any(v != 0.0 for v in pruned.values()):
        raise RuntimeError(f"{label}: pruned positions are not exactly zero after training: {pruned}")
    counts = mask.counts()
    ok = all(counts[k] == n for k, n in wanted.items() if k != "*")
    if "*" in wanted:
        ok = ok and sum(c for k, c in counts.items() if k not in wanted) == wanted["*"]
    return {"pruned_max_abs": pruned, "counts_as_requested": ok,
            "collapsed_layers": [k for k, c in counts.items() if c == 0]}
