"""Controls: branches off an IMP level that ask whether the ticket's mask and its initial values matter.

Each control is a job in the level's folder, `level_<L>/control_<variant>_<index>/`, trained exactly like
the ticket (same schedule, start step and data order) from a start that differs in one respect:

  reinit        the ticket's mask, fresh weights from the same initial distribution (LTH section 2)
  sign_reinit   the ticket's mask, fresh magnitudes with the ticket's signs (Zhou et al.)
  random_prune  a random mask (the random scorer) with the ticket's allocation: its per-layer counts
                (layer-wise runs) or its pooled total (global runs), on theta_k
  shuffle       the ticket's mask permuted within each layer, on theta_k (the sanity check of Frankle et al.
                2021; for a layer-wise run it is random pruning by another name)
  noise         the ticket's initial values plus Gaussian noise of `scale` x the layer's initial std
                (the empirical std of theta_0's layer; LTH App. F.7: 0.5, 1, 2, 3)
  oneshot       pruned once (trained magnitude), from the dense network's final weights straight to the
                level's density, on theta_k. Deterministic: one draw, whatever --control-reps says.

Every draw has its own seed, derived from the replicate's seed, the control and its index (seeds.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .. import store
from ..errors import TicketlabError
from ..jobs import Job, Runtime, register_kind
from ..masks import Mask
from ..pruning import budget_for, ladder_density, layers_of, prune
from ..seeds import derive_seed
from .job import require_healthy, run_training
from .lottery import prefix_job, rewind_state
from .plan import Replicate

CONTROLS = ("reinit", "sign_reinit", "random_prune", "shuffle", "noise", "oneshot")
DETERMINISTIC = ("oneshot",)  # the same result for every draw: one job, never n identical copies


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

    def seed(self, replicate_seed: int) -> int:
        return derive_seed(replicate_seed, "control", self.variant, self.index)


def control_jobs(rep: Replicate, level: int, control: Control) -> list[Job]:
    """The control's job, and the prefix run to the rewind step where it starts from theta_k."""
    ticket = rep.level(level)
    folder = store.control_dir(Path(ticket), control.variant, control.index).as_posix()
    jobs, deps = [], [ticket]
    if control.name == "oneshot":
        deps.append(rep.level(0))
    if control.name in ("shuffle", "random_prune", "oneshot") and rep.rewind():
        jobs.append(prefix_job(rep, rep.config.lottery.rewind_step))
        deps.append(rep.rewind())
    return jobs + [Job("control", folder, {"rep": rep, "level": level, "control": control}, tuple(deps),
                       label=f"seed {rep.seed} level {level} control {control.variant} {control.index}")]


@register_kind("control")
def run_control(job: Job, rt: Runtime) -> None:
    rep: Replicate = job.params["rep"]
    level, control = job.params["level"], job.params["control"]
    if not control.applies_to(level):
        raise TicketlabError(f"the {control.name} control needs a pruned level (1 or more)")
    # a control of a diverged ticket compares with nothing; oneshot also prunes from the dense final weights
    ticket = require_healthy(rt.path(rep.level(level)), f"seed {rep.seed} level {level}")
    if control.name == "oneshot":
        require_healthy(rt.path(rep.level(0)), f"seed {rep.seed} level 0")
    data = rt.data(rep.config.dataset, rep.fingerprint)
    model = rt.model(rep.config, data, rep.seeds["init"])
    seed = control.seed(rep.seed)
    mask, start, budget = _start(rep, level, control, torch.Generator().manual_seed(seed), rt, model, data)
    info = {"level": level, "control": control.name, "variant": control.variant, "control_index": control.index,
            "control_seed": seed, "noise_scale": control.scale or None, "rewind_step": ticket["rewind_step"],
            "seed": rep.seed, "seeds": rep.seeds}
    run_training(rt.path(job.folder), model=model, data=data, training=rep.config.training, mask=mask, start=start,
                 start_step=ticket["start_step"], data_seed=rep.seeds["data"], budget=budget, info=info,
                 label=job.describe(), progress=rt.progress, checkpoint_every=rt.options.checkpoint_every)


def _start(rep: Replicate, level: int, control: Control, g: torch.Generator, rt: Runtime, model, data):  # noqa: ANN001,ANN202
    """(mask, start weights, requested budget) of a control: the one thing it changes about the ticket."""
    ticket = rt.path(rep.level(level))
    mask = Mask.load(ticket / store.MASK)
    ticket_init = store.load_weights(ticket / store.INIT, rt.device)
    exact = {(k,): n for k, n in mask.counts().items()}  # the ticket's own counts, layer by layer
    name = control.name
    if name in ("reinit", "sign_reinit"):
        fresh = rt.model(rep.config, data, control.seed(rep.seed)).state_dict()
        if name == "reinit":
            return mask, fresh, exact
        start = dict(ticket_init)
        for k in mask.keys():
            start[k] = fresh[k].abs() * torch.sign(ticket_init[k])
        return mask, start, exact
    if name == "noise":
        theta0 = store.load_weights(rt.path(rep.level(0)) / store.INIT, rt.device)
        start = dict(ticket_init)
        for k in mask.keys():
            std = theta0[k].float().std()
            start[k] = ticket_init[k] + control.scale * std * torch.randn(mask[k].shape, generator=g).to(rt.device)
        return mask, start, exact
    if name == "shuffle":
        return shuffle_mask(mask, g), rewind_state(rep, rt), exact
    # random_prune and oneshot: the ticket's allocation at the level's density, with another scorer
    hp = rep.config.pruning
    density = ladder_density(layers_of(model), hp, level)
    budget = budget_for(model, density, hp.strategy, hp)
    if name == "random_prune":
        chosen = prune(model, density=density, scorer="random", allocation=hp.strategy, hp=hp, generator=g)
    else:  # oneshot: from the dense run's final weights
        model.load_state_dict(store.load_weights(rt.path(rep.level(0)) / store.FINAL, rt.device))
        chosen = prune(model, density=density, scorer="magnitude", allocation=hp.strategy, hp=hp)
    return chosen, rewind_state(rep, rt), budget


def shuffle_mask(mask: Mask, g: torch.Generator) -> Mask:
    """Each layer's mask permuted at random: the same count per layer, positions forgotten."""
    out = {}
    for k, m in mask.tensors.items():
        flat = m.flatten()
        out[k] = flat[torch.randperm(flat.numel(), generator=g)].view_as(m)
    return Mask(out)


def parse_controls(spec: str, reps: int = 1,
                   noise_scales: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)) -> tuple[Control, ...]:
    """'reinit,random_prune,noise' -> Control objects, `reps` draws each (noise: each scale; a deterministic
    control: one draw)."""
    if reps < 1:
        raise TicketlabError(f"control draws per replicate must be at least 1, got {reps}")
    out = []
    for name in [s.strip() for s in spec.split(",") if s.strip()]:
        scales = noise_scales if name == "noise" else (0.0,)
        draws = 1 if name in DETERMINISTIC else reps
        out += [Control(name, index=i, scale=s) for s in scales for i in range(draws)]
    return tuple(out)
