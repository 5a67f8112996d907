"""Controls: branches off an IMP level that ask whether the ticket's mask and its initial values matter.

Each control is a job in the level's folder, `level_<L>/control_<name>[_<scale>]_<index>/`, trained exactly
like the ticket (same schedule, start step and data order) from a start that differs in one respect:

  reinit        the ticket's mask, fresh weights from the same initial distribution (LTH section 2)
  sign_reinit   the ticket's mask, fresh magnitudes with the ticket's signs (Zhou et al.)
  random_prune  a random mask with the ticket's per-layer counts (layer-wise runs) or its total (global
                runs, spread uniformly over the pooled layers), on theta_k
  shuffle       the ticket's mask permuted within each layer, on theta_k (the sanity check of Frankle et al.
                2021; for a layer-wise run it is random pruning by another name)
  noise         the ticket's initial values plus Gaussian noise of `scale` x the layer's initial std
                (the empirical std of theta_0's layer; LTH App. F.7: 0.5, 1, 2, 3)
  oneshot       pruned once, from the dense network's final weights, straight to the level's density

Every control has its own seed, derived from the replicate's seed, the control and its index.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import TicketlabError
from ..masks import Mask
from ..pruning import magnitude_prune, target_counts
from ..store import is_done, level_dir, load_weights, read_json
from .job import run_job
from .lottery import Replicate

CONTROLS = ("reinit", "sign_reinit", "random_prune", "shuffle", "noise", "oneshot")


@dataclass(frozen=True)
class Control:
    name: str
    index: int = 0  # which draw of this control (e.g. 3 re-initialisations per replicate)
    scale: float = 0.0  # noise: multiple of the layer's initial std

    def __post_init__(self) -> None:
        if self.name not in CONTROLS:
            raise TicketlabError(f"unknown control {self.name!r}; choose from: {', '.join(CONTROLS)}")
        if self.name == "noise" and not self.scale > 0:
            raise TicketlabError("the noise control needs a scale > 0 (e.g. 0.5, 1, 2, 3)")

    def applies_to(self, level: int) -> bool:
        """At the dense level 0 a random, shuffled or one-shot mask is the all-ones mask: the ticket itself."""
        return level > 0 or self.name not in ("random_prune", "shuffle", "oneshot")

    @property
    def variant(self) -> str:
        """What a table or figure groups by: the control's name, with its scale for noise."""
        return f"noise_{self.scale:g}" if self.name == "noise" else self.name

    @property
    def folder(self) -> str:
        return f"control_{self.variant}_{self.index}"

    def seed(self, replicate_seed: int) -> int:
        digest = hashlib.sha256(f"{replicate_seed}/{self.variant}/{self.index}".encode()).digest()
        return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def run_control(rep: Replicate, level: int, control: Control) -> dict[str, Any]:
    """Train one control of `level` (which must be finished) and return its summary."""
    ticket = level_dir(rep.run_dir, level)
    job = ticket / control.folder
    if is_done(job):
        return read_json(job / "summary.json")
    if not is_done(ticket):
        raise TicketlabError(f"level {level} of {rep.run_dir} is not finished: run its levels first")
    if not control.applies_to(level):
        raise TicketlabError(f"the {control.name} control needs a pruned level (1 or more)")
    seed = control.seed(rep.config.seed)
    mask, start, wanted = _start(rep, level, control, torch.Generator().manual_seed(seed))
    summary = read_json(ticket / "summary.json")
    info = {"level": level, "control": control.name, "variant": control.variant, "control_index": control.index,
            "control_seed": seed, "noise_scale": control.scale or None, "rewind_step": summary["rewind_step"]}
    return run_job(job, model=rep.model, data=rep.data, training=rep.config.training, mask=mask, start=start,
                   start_step=summary["start_step"], data_seed=rep.config.seed, wanted_counts=wanted, info=info,
                   label=f"level {level} {control.folder}", progress=rep.progress,
                   checkpoint_every=rep.checkpoint_every)


def _start(rep: Replicate, level: int, control: Control, g: torch.Generator):  # noqa: ANN202
    """(mask, start weights, wanted counts) of a control: the one thing it changes about the ticket."""
    ticket = level_dir(rep.run_dir, level)
    mask = Mask.load(ticket / "mask.safetensors")
    device = rep.data.train_x.device
    ticket_init = {k: v.to(device) for k, v in load_weights(ticket / "init.safetensors").items()}
    counts = mask.counts()
    name = control.name
    if name == "reinit":
        return mask, rep.fresh_weights(control.seed(rep.config.seed)), counts
    if name == "sign_reinit":
        fresh = rep.fresh_weights(control.seed(rep.config.seed))
        start = dict(ticket_init)
        for k in mask.keys():
            start[k] = fresh[k].abs() * torch.sign(ticket_init[k])
        return mask, start, counts
    if name == "noise":
        start = dict(ticket_init)
        for k in mask.keys():
            std = rep.theta0[k].float().std()
            start[k] = ticket_init[k] + control.scale * std * torch.randn(mask[k].shape, generator=g).to(device)
        return mask, start, counts
    if name == "shuffle":
        return shuffle_mask(mask, g), rep.rewind_state(), counts
    if name == "random_prune":
        pooled = rep.config.pruning.strategy == "global"
        ignore = set(rep.config.pruning.ignore)
        random = random_mask(mask, g, pooled=[k for k in mask.keys() if k not in ignore] if pooled else None)
        wanted = ({"*": sum(c for k, c in counts.items() if k not in ignore), **{k: counts[k] for k in ignore}}
                  if pooled else counts)
        return random, rep.rewind_state(), wanted
    # oneshot: from the dense run's final weights straight to this level's counts
    dense = level_dir(rep.run_dir, 0)
    weights = load_weights(dense / "final.safetensors")
    oneshot = magnitude_prune(weights, Mask.load(dense / "mask.safetensors"), rep.config.pruning, rep.kinds, level)
    wanted = target_counts(rep.config.pruning, mask.sizes(), rep.kinds, level)
    return oneshot, rep.rewind_state(), wanted


def shuffle_mask(mask: Mask, g: torch.Generator) -> Mask:
    """Each layer's mask permuted at random: the same count per layer, positions forgotten."""
    out = {}
    for k, m in mask.tensors.items():
        flat = m.flatten()
        out[k] = flat[torch.randperm(flat.numel(), generator=g)].view_as(m)
    return Mask(out)


def random_mask(mask: Mask, g: torch.Generator, pooled: list[str] | None = None) -> Mask:
    """A random mask with `mask`'s count in every layer, or (pooled) its total over the `pooled` layers,
    placed uniformly at random among all their weights; other layers keep their count per layer."""
    if pooled is None:
        return shuffle_mask(mask, g)
    out = dict(shuffle_mask(Mask({k: v for k, v in mask.tensors.items() if k not in pooled}), g).tensors)
    total = sum(int(mask[k].sum()) for k in pooled)
    sizes = [mask[k].numel() for k in pooled]
    keep = torch.zeros(sum(sizes), dtype=torch.bool)
    keep[torch.randperm(sum(sizes), generator=g)[:total]] = True
    for k, part in zip(pooled, keep.split(sizes)):
        out[k] = part.view_as(mask[k])
    return Mask(out)
