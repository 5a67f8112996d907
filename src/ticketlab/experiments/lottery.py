"""Iterative magnitude pruning with rewinding: train -> prune -> rewind -> retrain, level after level.

Job kinds:
  dense   level 0: the dense network trained from theta_0 (shared by every experiment on the same recipe)
  prefix  the dense run stopped at step k: theta_k, the state late rewinding returns to
  level   level L: level L-1's final weights pruned (trained magnitude) to the ladder's density, the
          survivors set to their values at step k (k = 0: the LTH's reset to initialisation) and trained
          from step k to the end, with the schedule and data order of the dense run from step k on. The
          rewind point holds weights only: the optimizer starts afresh.

Level L's folder depends on the dense run, the pruning and the retraining settings, never on how many levels
were asked for: `--levels 4` after `--levels 2` trains levels 3 and 4 only.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch

from .. import store
from ..config import TrainingHparams
from ..errors import TicketlabError
from ..jobs import Job, Runtime, register_kind
from ..masks import Mask
from ..pruning import budget_for, ladder_density, layers_of, prune
from ..seeds import derive_seed
from ..training.optim import lr_at
from .job import require_healthy, run_training
from .plan import Replicate


def level_jobs(rep: Replicate, levels: int) -> list[Job]:
    """The dense run and levels 1..`levels` of one replicate (with theta_k's prefix run where it is used)."""
    jobs = [Job("dense", rep.level(0), {"rep": rep}, label=f"seed {rep.seed} level 0")]
    if levels and rep.rewind() and rep.config.lottery.retrain == "rewind":
        jobs.append(prefix_job(rep, rep.config.lottery.rewind_step))
    for level in range(1, levels + 1):
        deps = (rep.level(level - 1),) + ((rep.rewind(),) if rep.rewind() else ())
        jobs.append(Job("level", rep.level(level), {"rep": rep, "level": level}, deps,
                        label=f"seed {rep.seed} level {level}"))
    return jobs


def prefix_job(rep: Replicate, step: int) -> Job:
    return Job("prefix", rep.prefix(step), {"rep": rep, "step": step}, label=f"seed {rep.seed} dense to step {step}")


@register_kind("dense")
def run_dense(job: Job, rt: Runtime) -> None:
    rep: Replicate = job.params["rep"]
    _train_dense(job, rt, rep.config.training, {"level": 0, "rewind_step": 0, "retrain": "dense",
                                                "lr": rep.config.training.lr})


@register_kind("prefix")
def run_prefix(job: Job, rt: Runtime) -> None:
    """The dense run's first `step` steps: the same weights the full run has at that step."""
    rep: Replicate = job.params["rep"]
    step = job.params["step"]
    _train_dense(job, rt, dataclasses.replace(rep.config.training, train_steps=step),
                 {"level": 0, "dense_prefix_steps": step})


def _train_dense(job: Job, rt: Runtime, training: TrainingHparams, info: dict[str, Any]) -> None:
    """The dense network from theta_0 (drawn from the replicate's init seed) for `training`'s steps."""
    rep: Replicate = job.params["rep"]
    data = rt.data(rep.config.dataset, rep.fingerprint)
    model = rt.model(rep.config, data, rep.seeds["init"])
    run_training(rt.path(job.folder), model=model, data=data, training=training, mask=Mask.ones(model),
                 start=model.state_dict(), start_step=0, data_seed=rep.seeds["data"], budget=None,
                 info={**info, "seed": rep.seed, "seeds": rep.seeds}, label=job.describe(), progress=rt.progress,
                 checkpoint_every=rt.options.checkpoint_every)


@register_kind("level")
def run_level(job: Job, rt: Runtime) -> None:
    rep: Replicate = job.params["rep"]
    level = job.params["level"]
    config = rep.config
    data = rt.data(config.dataset, rep.fingerprint)
    model = rt.model(config, data, rep.seeds["init"])
    prev = rt.path(rep.level(level - 1))
    require_healthy(prev, f"seed {rep.seed} level {level - 1}")  # never pruned from a diverged level
    model.load_state_dict(store.load_weights(prev / store.FINAL, rt.device))
    density = ladder_density(layers_of(model), config.pruning, level)
    folder = rt.path(job.folder)
    mask = _resumed_mask(folder)
    if mask is None:
        mask = prune(model, Mask.load(prev / store.MASK), density=density, scorer="magnitude",
                     allocation=config.pruning.strategy, hp=config.pruning)
    budget = budget_for(model, density, config.pruning.strategy, config.pruning)
    start, k, training = retrain_start(rep, level, rt, data)
    info = {"level": level, "rewind_step": k, "retrain": config.lottery.retrain, "lr": training.lr,
            "seed": rep.seed, "seeds": rep.seeds}
    run_training(folder, model=model, data=data, training=training, mask=mask, start=start, start_step=k,
                 data_seed=rep.seeds["data"], budget=budget, info=info, label=job.describe(), progress=rt.progress,
                 checkpoint_every=rt.options.checkpoint_every)


def _resumed_mask(folder: Path) -> Mask | None:
    """The mask an interrupted level already wrote (pruning is deterministic: the same one), or None. A
    damaged one is said in one line and pruned again, never left to block the level."""
    if not (folder / store.MASK).is_file():
        return None
    try:
        return Mask.load(folder / store.MASK)
    except TicketlabError as e:
        print(f"ticketlab: {e}; pruning it again", file=sys.stderr)
        (folder / store.MASK).unlink(missing_ok=True)
        return None


def rewind_state(rep: Replicate, rt: Runtime) -> dict[str, torch.Tensor]:
    """theta_k: the prefix run's final weights, or theta_0 (the dense run's init) for k = 0."""
    folder = rep.rewind()
    if folder:
        require_healthy(rt.path(folder), f"seed {rep.seed} dense to step {rep.config.lottery.rewind_step}")
    path = rt.path(folder) / store.FINAL if folder else rt.path(rep.level(0)) / store.INIT
    return store.load_weights(path, rt.device)


def retrain_start(rep: Replicate, level: int, rt: Runtime, data: Any) -> tuple[dict[str, torch.Tensor], int,
                                                                                 TrainingHparams]:
    """(weights to start from, step to start at, training hyper-parameters) of a level's retraining."""
    lot, hp = rep.config.lottery, rep.config.training
    if lot.retrain == "rewind":
        return rewind_state(rep, rt), lot.rewind_step, hp
    if lot.retrain == "scratch":
        fresh = rt.model(rep.config, data, derive_seed(rep.seed, "scratch", level))
        return fresh.state_dict(), 0, hp
    trained = store.load_weights(rt.path(rep.level(level - 1)) / store.FINAL, rt.device)
    if lot.retrain == "lr_rewind":
        return trained, lot.rewind_step, hp
    # finetune: the rest of the budget at one small LR
    lr = lot.finetune_lr or lr_at(hp, hp.train_steps - 1)
    return trained, lot.rewind_step, dataclasses.replace(hp, lr=lr, milestones=(), warmup_steps=0)


def read_levels(rep: Replicate, levels: int, root: Path) -> list[dict[str, Any]]:
    return [store.read_summary(root / rep.level(level)) for level in range(levels + 1)]
