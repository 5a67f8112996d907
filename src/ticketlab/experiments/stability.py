"""Instability analysis (Frankle, Dziugaite, Roy & Carbin 2020): is training from a state stable to SGD noise?

From the state at step k of the dense trajectory (masked by a level's ticket for level L > 0), two copies
train to the end with different data orders. Along the straight line between their final weights
(`points` evenly spaced alphas, ends included) we measure classification error on training and test
examples; the error barrier is the largest error on the line minus the mean of the two ends' errors. A
state is stable when the test barrier is below `threshold` (2% in the paper). Pruned weights are 0 in both
copies, so every point on the line respects the mask.

Store layout, beside the level's other branches:
    seed_<s>/dense_k<k>/                         the dense trajectory trained from theta_0 up to step k
    seed_<s>/level_<L>/stability_k<k>/copy_<c>/  the two copies (jobs: resumable, reused)
    seed_<s>/level_<L>/stability_k<k>/stability.json   the path's errors, the barriers, the verdict
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import TicketlabError
from ..masks import Mask
from ..store import is_done, level_dir, load_weights, read_json, write_json
from ..training.evaluate import evaluate
from .job import run_job
from .lottery import Replicate, run_level


@dataclass(frozen=True)
class StabilitySpec:
    step: int  # k: where the two copies split
    level: int = 0  # 0: the dense network; L: the level's ticket mask on the dense state at step k
    points: int = 30
    threshold: float = 0.02
    train_eval_size: int = 10_000  # training examples whose error is measured along the path
    recompute_bn: bool = True  # batch-norm statistics recomputed at every point of the path


def copy_seed(seed: int, copy: int) -> int:
    digest = hashlib.sha256(f"{seed}/stability/{copy}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def run_stability(rep: Replicate, spec: StabilitySpec) -> dict[str, Any]:
    """Train the two copies (or read them back) and measure the path between them."""
    hp = rep.config.training
    if not 0 <= spec.step < hp.train_steps:
        raise TicketlabError(f"stability step {spec.step} must be in [0, {hp.train_steps})")
    if spec.points < 2:
        raise TicketlabError(f"stability needs at least 2 points on the path, got {spec.points}")
    folder = level_dir(rep.run_dir, spec.level) / f"stability_k{spec.step}"
    if (folder / "stability.json").is_file():
        return read_json(folder / "stability.json")
    if spec.level == 0:  # the dense network: no need to train level 0 itself
        mask = Mask.ones(rep.model)
    else:  # the ticket's mask (finished levels are read back)
        for level in range(spec.level + 1):
            run_level(rep, level)
        mask = Mask.load(level_dir(rep.run_dir, spec.level) / "mask.safetensors")
    start = dense_state(rep, spec.step)
    copies = []
    for c in (0, 1):
        info = {"level": spec.level, "stability_step": spec.step, "copy": c}
        copies.append(run_job(folder / f"copy_{c}", model=rep.model, data=rep.data, training=hp, mask=mask,
                              start=start, start_step=spec.step, data_seed=copy_seed(rep.config.seed, c),
                              wanted_counts=mask.counts(), info=info,
                              label=f"level {spec.level} stability k={spec.step} copy {c}", progress=rep.progress,
                              checkpoint_every=rep.checkpoint_every))
    ends = [_weights(folder / f"copy_{c}", rep) for c in (0, 1)]
    path = interpolate(rep.model, ends[0], ends[1], rep, spec)
    result = {"level": spec.level, "step": spec.step, "density": mask.density(), "threshold": spec.threshold,
              **path, "stable": path["test_barrier"] < spec.threshold,
              "copy_final_test_accuracy": [c["final_test_accuracy"] for c in copies],
              "copy_data_seeds": [copy_seed(rep.config.seed, c) for c in (0, 1)]}
    write_json(folder / "stability.json", result)
    return result


def dense_state(rep: Replicate, step: int) -> dict[str, torch.Tensor]:
    """The dense network's weights at `step` of its training (the replicate's data order)."""
    if step == 0:
        return rep.theta0
    job = rep.run_dir / f"dense_k{step}"
    if not is_done(job):
        run_job(job, model=rep.model, data=rep.data,
                training=dataclasses.replace(rep.config.training, train_steps=step), mask=Mask.ones(rep.model),
                start=rep.theta0, start_step=0, data_seed=rep.config.seed, wanted_counts=Mask.ones(rep.model).sizes(),
                info={"level": 0, "dense_prefix_steps": step}, label=f"dense to step {step}",
                progress=rep.progress, checkpoint_every=rep.checkpoint_every)
    return _weights(job, rep)


def barrier(errors: list[float]) -> float:
    """Largest error along the path minus the mean of the two ends' errors."""
    return max(errors) - (errors[0] + errors[-1]) / 2


def interpolate(model: nn.Module, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rep: Replicate,
                spec: StabilitySpec) -> dict[str, Any]:
    """Errors on train and test at `spec.points` evenly spaced points of (1 - alpha) a + alpha b."""
    data = rep.data
    n = min(spec.train_eval_size, len(data.train_x))
    train_x, train_y = data.train_x[:n], data.train_y[:n]
    alphas = torch.linspace(0, 1, spec.points).tolist()
    train_err, test_err = [], []
    for alpha in alphas:
        model.load_state_dict({k: torch.lerp(a[k].float(), b[k].float(), alpha).to(a[k].dtype)
                               if a[k].is_floating_point() else a[k] for k in a})
        if spec.recompute_bn:
            recompute_batchnorm(model, train_x)
        train_err.append(1 - evaluate(model, train_x, train_y)[1])
        test_err.append(1 - evaluate(model, data.test_x, data.test_y)[1])
    return {"alphas": alphas, "train_error": train_err, "test_error": test_err,
            "train_barrier": barrier(train_err), "test_barrier": barrier(test_err)}


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> None:
    """Running statistics of every batch-norm layer re-estimated on `x` (a cumulative average), since
    statistics of the end points are wrong for the interpolated weights. No-op without batch norm."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size])
    model.train(was_training)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def _weights(job: Path, rep: Replicate) -> dict[str, torch.Tensor]:
    return {k: v.to(rep.data.train_x.device) for k, v in load_weights(job / "final.safetensors").items()}
