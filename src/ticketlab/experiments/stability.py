"""Instability analysis (Frankle, Dziugaite, Roy & Carbin 2020): is training from a state stable to SGD noise?

From the state at step k of the dense trajectory, two copies train to the end with different data orders.
For level L > 0 the state is masked by the subnetwork that IMP *with rewinding to k* found at level L (Frankle
et al. 2020, section 5): level L of the lottery experiment whose lottery.rewind_step is k (with the retraining
the study's config names: the default, weight rewinding, is the paper's), so a sweep over k uses one IMP run per
k, and the copies of (k, L) live under that run's level L. Level 0 is the dense network. Along the straight line between their final weights
(`points` evenly spaced alphas, ends included) we measure classification error on training and test
examples; the error barrier is the largest error on the line minus the mean of the two ends' errors. A
state is stable when the test barrier is below `threshold` (2% in the paper). Pruned weights are 0 in both
copies, so every point on the line respects the mask.

Job kinds:
  stability_copy  one copy: `level_<L>/stability_k<k>/copy_<c>/` (resumable, reused by every analysis)
  stability       the path and its barriers: `level_<L>/stability_k<k>/analysis_<h>/`, h = the analysis
                  settings (points, threshold, training examples, BN recomputation): other settings give a
                  new analysis beside the old one, never the old numbers
The dense analysis (level 0) needs the dense state at k only (a prefix run), not the trained level 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import store
from ..errors import TicketlabError
from ..identity import digest
from ..jobs import Job, Runtime, register_kind
from ..masks import Mask
from ..seeds import derive_seed
from ..training.evaluate import evaluate
from .job import require_healthy, run_training
from .lottery import level_jobs, prefix_job
from .plan import Replicate, resolve


@dataclass(frozen=True)
class StabilitySpec:
    step: int  # k: where the two copies split
    level: int = 0  # 0: the dense network; L: the level's ticket mask on the dense state at step k
    points: int = 30
    threshold: float = 0.02
    train_eval_size: int = 10_000  # training examples whose error is measured along the path
    recompute_bn: bool = True  # batch-norm statistics recomputed at every point of the path

    def check(self, train_steps: int) -> None:
        if not 0 <= self.step < train_steps:
            raise TicketlabError(f"stability step {self.step} must be in [0, {train_steps})")
        if self.points < 2:
            raise TicketlabError(f"stability needs at least 2 points on the path, got {self.points}")
        if not 0 < self.threshold < 1:
            raise TicketlabError(f"stability threshold must be in (0, 1), got {self.threshold}")
        if self.train_eval_size < 1:
            raise TicketlabError(f"stability train_eval_size must be at least 1, got {self.train_eval_size}")

    @property
    def settings(self) -> dict[str, Any]:
        """What the analysis of two given copies depends on: its identity beside them."""
        return {"points": self.points, "threshold": self.threshold, "train_eval_size": self.train_eval_size,
                "recompute_bn": self.recompute_bn}


def rewound_to(rep: Replicate, step: int, runtime: Runtime) -> Replicate:
    """The replicate of IMP with rewinding to `step` on `rep`'s dense run (the same seed, data, model, training,
    pruning and retraining mode: a mode the user chose is never swapped silently for the paper's): where the
    level-L mask of a stability analysis at k = `step` comes from. Resolving it records its experiment
    (config.json) and links its level 0 to the shared dense run."""
    lottery = dataclasses.replace(rep.config.lottery, rewind_step=step)
    if rep.lottery is not None and lottery == rep.config.lottery:
        return rep
    config = dataclasses.replace(rep.config, kind="lottery", lottery=lottery)
    (found,) = resolve(config, [rep.seed], runtime)
    return found


def stability_jobs(rep: Replicate, spec: StabilitySpec, runtime: Runtime) -> list[Job]:
    """The prefix run to k (if k > 0), the two copies, and the analysis; for L > 0 also the IMP levels 1..L
    with rewinding to k that find the mask (jobs of another experiment than `rep`'s when its rewind step is
    not k; the caller drops duplicates by folder)."""
    spec.check(rep.config.training.train_steps)
    jobs: list[Job] = []
    deps: list[str] = []
    if spec.level > 0:
        rep = rewound_to(rep, spec.step, runtime)
        jobs += level_jobs(rep, spec.level)
        deps.append(rep.level(spec.level))
    folder = store.stability_dir(Path(rep.level(spec.level)), spec.step)
    if spec.step > 0:
        jobs.append(prefix_job(rep, spec.step))
        deps.append(rep.prefix(spec.step))
    copies = [store.copy_dir(folder, c).as_posix() for c in (0, 1)]
    for c, copy in enumerate(copies):
        jobs.append(Job("stability_copy", copy, {"rep": rep, "spec": spec, "copy": c}, tuple(deps),
                        label=f"seed {rep.seed} level {spec.level} stability k={spec.step} copy {c}"))
    analysis = store.analysis_dir(folder, digest(spec.settings, 8)).as_posix()
    jobs.append(Job("stability", analysis, {"rep": rep, "spec": spec, "copies": copies}, tuple(copies),
                    label=f"seed {rep.seed} level {spec.level} stability k={spec.step} analysis"))
    return jobs


def copy_seed(seed: int, copy: int) -> int:
    return derive_seed(seed, "stability", copy)


@register_kind("stability_copy")
def run_copy(job: Job, rt: Runtime) -> None:
    rep: Replicate = job.params["rep"]
    spec: StabilitySpec = job.params["spec"]
    c = job.params["copy"]
    if spec.level:  # the mask IMP found at level L with rewinding to k (rep is that experiment's replicate)
        require_healthy(rt.path(rep.level(spec.level)), f"seed {rep.seed} level {spec.level}")
    if spec.step:  # the dense state at k
        require_healthy(rt.path(rep.prefix(spec.step)), f"seed {rep.seed} dense to step {spec.step}")
    data = rt.data(rep.config.dataset, rep.fingerprint)
    model = rt.model(rep.config, data, rep.seeds["init"])
    # the ticket's mask for L > 0; the dense state at k (theta_0 for k = 0)
    mask = Mask.load(rt.path(rep.level(spec.level)) / store.MASK) if spec.level else Mask.ones(model)
    start = store.load_weights(rt.path(rep.prefix(spec.step)) / store.FINAL, rt.device) if spec.step \
        else model.state_dict()
    info = {"level": spec.level, "stability_step": spec.step, "copy": c, "seed": rep.seed, "seeds": rep.seeds}
    run_training(rt.path(job.folder), model=model, data=data, training=rep.config.training, mask=mask, start=start,
                 start_step=spec.step, data_seed=copy_seed(rep.seed, c), budget={(k,): n for k, n in
                                                                                mask.counts().items()},
                 info=info, label=job.describe(), progress=rt.progress,
                 checkpoint_every=rt.options.checkpoint_every)


@register_kind("stability")
def run_analysis(job: Job, rt: Runtime) -> None:
    rep: Replicate = job.params["rep"]
    spec: StabilitySpec = job.params["spec"]
    copies = [rt.path(c) for c in job.params["copies"]]
    summaries = [require_healthy(c, f"seed {rep.seed} level {spec.level} stability k={spec.step} copy {i}")
                 for i, c in enumerate(copies)]  # no path between diverged weights
    data = rt.data(rep.config.dataset, rep.fingerprint)
    model = rt.model(rep.config, data, rep.seeds["init"])
    ends = [store.load_weights(c / store.FINAL, rt.device) for c in copies]
    path = interpolate(model, ends[0], ends[1], data, spec)
    result = {"seed": rep.seed, "level": spec.level, "step": spec.step, "density": summaries[0]["density"],
              "mask_level": rep.level(spec.level),  # the IMP level (rewound to k) whose mask was used
              **spec.settings, **path, "stable": path["test_barrier"] < spec.threshold,
              "copy_final_test_accuracy": [s["final_test_accuracy"] for s in summaries],
              "copy_data_seeds": [s["data_seed"] for s in summaries]}
    folder = rt.path(job.folder)
    store.write_json(folder / store.STABILITY, result)
    store.finish_job(folder, {k: v for k, v in result.items() if not isinstance(v, list)})  # hashes stability.json


def barrier(errors: list[float]) -> float:
    """Largest error along the path minus the mean of the two ends' errors."""
    return max(errors) - (errors[0] + errors[-1]) / 2


def interpolate(model: nn.Module, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], data: Any,
                spec: StabilitySpec) -> dict[str, Any]:
    """Errors on train and test at `spec.points` evenly spaced points of (1 - alpha) a + alpha b."""
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


def read_analysis(job: Job, root: Path) -> dict[str, Any]:
    return store.read_json(root / job.folder / store.STABILITY)
