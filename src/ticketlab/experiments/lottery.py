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

import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..config import RunConfig
from ..data import DataSplits, load_dataset
from ..errors import TicketlabError
from ..masks import Mask, layer_kind, prunable
from ..models import build_model
from ..pruning import magnitude_prune, target_counts
from ..store import (DEFAULT_ROOT, is_done, level_dir, load_weights, read_json, record_config, save_weights,
                     write_json)
from ..training.loop import Checkpointing, Hooks, train

Progress = Callable[[str, int, int], None]  # (label, step, last step)


@dataclass
class LotteryResult:
    run_dir: Path
    levels: list[dict[str, Any]]  # each level's summary.json


def run_lottery(config: RunConfig, *, data: DataSplits | None = None, model_fn: Callable[[], nn.Module] | None = None,
                root: Path | str = DEFAULT_ROOT, data_dir: str | Path | None = None, device: str = "cpu",
                progress: Progress | None = None, checkpoint_every: int = 1000, download: bool = True) -> LotteryResult:
    """Run (or resume, or read back) every level of one replicate of `config`.

    `model_fn` builds any nn.Module in place of the registry's model (give the config a model name of its
    own, since the name is what the run is filed under); it is called under torch.manual_seed(seed).
    """
    dev = _device(device)
    data = (data if data is not None else load_dataset(config.dataset, data_dir, download)).to(dev)
    model = _initial_model(config, data, model_fn).to(dev)
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    run_dir = record_config(config, root, _provenance())
    kinds = layer_kind(model)
    levels = config.lottery.levels if config.kind == "lottery" else 0
    summaries = []
    for level in range(levels + 1):
        job = level_dir(run_dir, level)
        if not is_done(job):
            mask = Mask.ones(model) if level == 0 else _next_mask(config, run_dir, level, kinds)
            start = theta0 if level == 0 else _rewind_state(run_dir, config, theta0)
            _train_level(config, model, data, mask, start, job, run_dir, level, progress, checkpoint_every)
        summaries.append(read_json(job / "summary.json"))
    return LotteryResult(run_dir=run_dir, levels=summaries)


def _train_level(config: RunConfig, model: nn.Module, data: DataSplits, mask: Mask, start: dict[str, torch.Tensor],
                 job: Path, run_dir: Path, level: int, progress: Progress | None, checkpoint_every: int) -> None:
    k = config.lottery.rewind_step if level > 0 else 0
    model.load_state_dict(start)
    with torch.no_grad():
        for name, p in prunable(model).items():
            p.mul_(mask[name].to(p.device, p.dtype))
    job.mkdir(parents=True, exist_ok=True)
    if not (job / "mask.safetensors").is_file():
        mask.save(job / "mask.safetensors")
    save_weights(job / "init.safetensors", model)
    hooks = Hooks(progress=(lambda s, t: progress(f"level {level}", s, t)) if progress else None)
    if level == 0:  # keep theta_k, the state later levels rewind to
        hooks.at_step[config.lottery.rewind_step] = lambda m: save_weights(run_dir / "rewind.safetensors", m)
    began = time.perf_counter()
    result = train(model, data, config.training, mask, data_seed=config.seed, start_step=k,
                   checkpoint=Checkpointing(job / "checkpoint.pt", checkpoint_every), hooks=hooks)
    seconds = time.perf_counter() - began
    save_weights(job / "final.safetensors", model)
    write_json(job / "metrics.json", result.evals)
    summary = {"level": level, "rewind_step": k, "density": mask.density(), "layer_density": mask.layer_density(),
               "layer_counts": mask.counts(), **result.summary(),
               "checks": _checks(config, mask, level, model, result.checks), "train_seconds_this_session": seconds}
    write_json(job / "summary.json", summary)  # last: marks the level done
    (job / "checkpoint.pt").unlink(missing_ok=True)


def _next_mask(config: RunConfig, run_dir: Path, level: int, kinds: dict[str, str]) -> Mask:
    job = level_dir(run_dir, level)
    if (job / "mask.safetensors").is_file():  # written before an interruption: the same mask
        return Mask.load(job / "mask.safetensors")
    prev = level_dir(run_dir, level - 1)
    weights = load_weights(prev / "final.safetensors")
    return magnitude_prune(weights, Mask.load(prev / "mask.safetensors"), config.pruning, kinds, level)


def _rewind_state(run_dir: Path, config: RunConfig, theta0: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if config.lottery.rewind_step == 0:
        return theta0
    path = run_dir / "rewind.safetensors"
    if not path.is_file():
        raise TicketlabError(f"{path} is missing: level 0 of this run did not keep its rewind point; "
                             f"delete {run_dir} and rerun")
    return load_weights(path)


def _checks(config: RunConfig, mask: Mask, level: int, model: nn.Module, pruned: dict[str, float]) -> dict[str, Any]:
    """The level's self-checks; a pruned weight or optimizer state that is not exactly 0 is a bug: stop."""
    if any(v != 0.0 for v in pruned.values()):
        raise RuntimeError(f"level {level}: pruned positions are not exactly zero after training: {pruned}")
    counts, sizes = mask.counts(), mask.sizes()
    if config.kind == "lottery":
        wanted = target_counts(config.pruning, sizes, layer_kind(model), level)
        if "*" in wanted:  # global: the pooled total
            achieved = sum(c for k, c in counts.items() if k not in config.pruning.ignore)
            counts_ok = achieved == wanted["*"]
        else:
            counts_ok = counts == wanted
    else:
        counts_ok = counts == sizes
    collapsed = [k for k, c in counts.items() if c == 0]
    return {"pruned_max_abs": pruned, "counts_as_requested": counts_ok, "collapsed_layers": collapsed}


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
