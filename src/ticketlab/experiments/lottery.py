"""Iterative magnitude pruning with rewinding: train -> prune -> rewind -> retrain, for `levels` rounds.

Level 0 trains the dense network from theta_0 and keeps the weights it has at the rewind step k. Level L
prunes level L-1's final weights to the level's density, sets the survivors to their values at step k
(k = 0: the LTH's reset to initialisation) and trains from step k to the end, with the schedule and data
order of the dense run from step k on. The rewind point holds weights only: the optimizer starts afresh.

Each level is a job in the run store: finished levels are read back, an interrupted one resumes from its
checkpoint, and every level checks its own result (pruned weights and their optimizer state exactly 0,
per-layer counts as requested, no collapsed layer).
"""

from __future__ import annotations

import dataclasses
import hashlib
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..config import RunConfig, TrainingHparams
from ..data import DataSplits, load_dataset
from ..errors import TicketlabError
from ..masks import Mask, layer_kind, prunable
from ..models import build_model
from ..pruning import magnitude_prune, target_counts
from ..store import DEFAULT_ROOT, is_done, level_dir, load_weights, read_json, record_config, save_weights
from ..training.optim import lr_at
from .job import Progress, run_job


@dataclass
class Replicate:
    """One seed of an experiment, ready to train: its data, model, initial weights and folder."""

    config: RunConfig
    data: DataSplits
    model: nn.Module  # reused by every job of the replicate; each job loads its own start weights
    theta0: dict[str, torch.Tensor]
    run_dir: Path
    kinds: dict[str, str]  # 'conv' | 'linear' per prunable weight
    model_fn: Callable[[], nn.Module] | None
    progress: Progress | None
    checkpoint_every: int

    def fresh_weights(self, seed: int) -> dict[str, torch.Tensor]:
        """A new draw from the same initial distribution (random re-initialisation)."""
        model = _initial_model(dataclasses.replace(self.config, seed=seed), self.data, self.model_fn)
        return {k: v.to(self.data.train_x.device) for k, v in model.state_dict().items()}

    def rewind_state(self) -> dict[str, torch.Tensor]:
        """theta_k: what every level's survivors are set to before retraining."""
        if self.config.lottery.rewind_step == 0:
            return self.theta0
        path = self.run_dir / "rewind.safetensors"
        if not path.is_file():
            raise TicketlabError(f"{path} is missing: level 0 of this run did not keep its rewind point; "
                                 f"delete {self.run_dir} and rerun")
        return {k: v.to(self.data.train_x.device) for k, v in load_weights(path).items()}


@dataclass
class LotteryResult:
    run_dir: Path
    levels: list[dict[str, Any]]  # each level's summary.json


def prepare(config: RunConfig, *, data: DataSplits | None = None, model_fn: Callable[[], nn.Module] | None = None,
            root: Path | str = DEFAULT_ROOT, data_dir: str | Path | None = None, device: str = "cpu",
            progress: Progress | None = None, checkpoint_every: int = 1000, download: bool = True) -> Replicate:
    """Load data, build the seeded model and record the configuration in the store."""
    dev = _device(device)
    data = (data if data is not None else load_dataset(config.dataset, data_dir, download)).to(dev)
    model = _initial_model(config, data, model_fn).to(dev)
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    run_dir = record_config(config, root, _provenance)
    return Replicate(config, data, model, theta0, run_dir, layer_kind(model), model_fn, progress, checkpoint_every)


def run_lottery(config: RunConfig, **kwargs: Any) -> LotteryResult:
    """Run (or resume, or read back) every level of one replicate of `config`.

    Keyword arguments are those of `prepare`. `model_fn` builds any nn.Module in place of the registry's
    model (give the config a model name of its own, since the name is what the run is filed under); it is
    called under torch.manual_seed(seed).
    """
    return run_levels(prepare(config, **kwargs))


def run_levels(rep: Replicate) -> LotteryResult:
    levels = rep.config.lottery.levels if rep.config.kind == "lottery" else 0
    return LotteryResult(run_dir=rep.run_dir, levels=[run_level(rep, level) for level in range(levels + 1)])


def run_level(rep: Replicate, level: int) -> dict[str, Any]:
    """Train one level (the one before it must be finished) or read it back; returns its summary."""
    job = level_dir(rep.run_dir, level)
    if not is_done(job):
        if level > 0 and not is_done(level_dir(rep.run_dir, level - 1)):
            raise TicketlabError(f"level {level - 1} of {rep.run_dir} is not finished: run the levels in order")
        mask = Mask.ones(rep.model) if level == 0 else _next_mask(rep.config, rep.run_dir, level, rep.kinds)
        _train_level(rep, mask, job, level)
    return read_json(job / "summary.json")


def _train_level(rep: Replicate, mask: Mask, job: Path, level: int) -> None:
    config = rep.config
    k_rewind = config.lottery.rewind_step
    at_step = {}
    if level == 0 and k_rewind > 0:  # keep theta_k, the state later levels rewind to
        at_step[k_rewind] = lambda m: save_weights(rep.run_dir / "rewind.safetensors", m)
    start, k, training = retrain_start(rep, level)
    wanted = target_counts(config.pruning, mask.sizes(), rep.kinds, level) if config.kind == "lottery" else mask.sizes()
    info = {"level": level, "rewind_step": k, "retrain": config.lottery.retrain if level else "dense",
            "lr": training.lr}
    run_job(job, model=rep.model, data=rep.data, training=training, mask=mask, start=start, start_step=k,
            data_seed=config.seed, wanted_counts=wanted, info=info, label=f"level {level}", progress=rep.progress,
            checkpoint_every=rep.checkpoint_every, at_step=at_step)


def retrain_start(rep: Replicate, level: int) -> tuple[dict[str, torch.Tensor], int, TrainingHparams]:
    """(weights to start from, step to start at, training hyper-parameters) of a level's retraining."""
    lot, hp = rep.config.lottery, rep.config.training
    if level == 0:
        return rep.theta0, 0, hp
    if lot.retrain == "rewind":
        return rep.rewind_state(), lot.rewind_step, hp
    if lot.retrain == "scratch":
        digest = hashlib.sha256(f"{rep.config.seed}/scratch/{level}".encode()).digest()
        return rep.fresh_weights(int.from_bytes(digest[:4], "little") & 0x7FFFFFFF), 0, hp
    device = rep.data.train_x.device
    final = load_weights(level_dir(rep.run_dir, level - 1) / "final.safetensors")
    trained = {k: v.to(device) for k, v in final.items()}
    if lot.retrain == "lr_rewind":
        return trained, lot.rewind_step, hp
    # finetune: the rest of the budget at one small LR
    lr = lot.finetune_lr or lr_at(hp, hp.train_steps - 1)
    return trained, lot.rewind_step, dataclasses.replace(hp, lr=lr, milestones=(), warmup_steps=0)


def _next_mask(config: RunConfig, run_dir: Path, level: int, kinds: dict[str, str]) -> Mask:
    job = level_dir(run_dir, level)
    if (job / "mask.safetensors").is_file():  # written before an interruption: the same mask
        return Mask.load(job / "mask.safetensors")
    prev = level_dir(run_dir, level - 1)
    weights = load_weights(prev / "final.safetensors")
    return magnitude_prune(weights, Mask.load(prev / "mask.safetensors"), config.pruning, kinds, level)


def _initial_model(config: RunConfig, data: DataSplits, model_fn: Callable[[], nn.Module] | None) -> nn.Module:
    if model_fn is None:
        return build_model(config.model, data.input_shape, data.num_classes, config.seed)
    torch.manual_seed(config.seed)
    model = model_fn()
    if not prunable(model):
        raise TicketlabError("the model has no Linear or Conv layer to prune")
    return model


def _device(name: str) -> torch.device:
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise TicketlabError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TicketlabError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return dev


def _provenance() -> dict[str, Any]:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {"git_revision": rev, "torch": torch.__version__, "python": platform.python_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
