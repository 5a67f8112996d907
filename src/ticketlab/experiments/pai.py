"""Pruning at initialisation, random masks and their sanity checks, on equal terms with IMP.

A method is a point on the pruning axes applied to theta_0 (before any training):
    magnitude  |w| at init, global            snip   |g * w| on one mini-batch, global
    grasp      w * Hg, 10 examples per class   synflow  data-free, 100 exponential rounds, global
    random     random scores, uniform layers  random-erk (RigL's ERK) / random-erk-gadhikar / random-balanced
                                              (Gadhikar et al.'s) / random-balanced-reshared / random-pyramidal
The subnetwork then trains from theta_0 with the experiment's recipe, seeds and data order, like IMP's
tickets. Sanity checks (Frankle et al. 2021) branch off each method's mask:
    shuffle  the mask permuted within each layer (same layer densities, positions forgotten)
    reinit   the same mask on fresh initial weights
    invert   the method's scores negated: keep the weights it ranks lowest (scored methods only)
A method whose accuracy survives shuffling chose layer densities, not weights.

Counts are rounded by the config's pruning.rounding (nearest, or synaptic-flow: Synaptic-Flow's n - int((1 - d)
n), at each of SynFlow's rounds too), in the identity unless it is the default.

Scores are computed with the model in eval mode (`score_mode`, as Synaptic-Flow; "train": with the batch's
own batch-norm statistics), which matters only on a model with batch norm or dropout; there the mode is in
the identity (eval) and in each summary.

Job kind `pai`: `pai_<h>/seed_<s>/density_<d>/` (h = the dense experiment's identity + the method), checks in
`density_<d>/check_<name>/`. A mask the doctor finds collapsed (no input-output path) is not trained
(experiments/job.py): its summary says so, and so do the CLI and the report.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import store
from ..config import PruningHparams, RunConfig
from ..errors import TicketlabError
from ..identity import changed_fields
from ..jobs import Job, Runtime, register_kind
from ..masks import Mask
from ..pruning import REVISIONS, SCORERS, budget_for, prune
from ..seeds import derive_seed
from .controls import shuffle_mask
from .job import require_healthy, run_training
from .plan import Replicate, dense_experiment, initialised, method_experiment, relative


@dataclass(frozen=True)
class Method:
    scorer: str
    allocation: str = "global"
    schedule: str = "oneshot"
    rounds: int = 1
    batch: str = "none"  # none | minibatch (the recipe's batch size) | per_class (examples_per_class of each)
    examples_per_class: int = 10

    @property
    def random(self) -> bool:
        return self.scorer == "random"


METHODS: dict[str, Method] = {
    "magnitude": Method("magnitude"),
    "snip": Method("snip", batch="minibatch"),
    "grasp": Method("grasp", batch="per_class"),
    "synflow": Method("synflow", schedule="exponential", rounds=100, batch="minibatch"),  # only its shape is used
    "random": Method("random", "uniform"),
    "random-erk": Method("random", "erk"),
    "random-erk-gadhikar": Method("random", "erk-gadhikar"),
    "random-balanced": Method("random", "balanced"),  # Gadhikar et al.'s: its identity holds the revision
    "random-balanced-reshared": Method("random", "balanced-reshared"),
    "random-pyramidal": Method("random", "pyramidal"),
}
CHECKS = ("shuffle", "reinit", "invert")
# The module mode scores are computed in: Synaptic-Flow scores with the model in eval mode (batch norm with
# its running statistics, no dropout); "train" scores with the batch's own statistics (ticketlab before
# there was a choice). The two differ only on a model with batch norm or dropout (mode_dependent).
SCORE_MODES = ("eval", "train")


def mode_dependent(model: torch.nn.Module) -> bool:
    """Whether eval and train mode compute different things: batch norm or dropout somewhere."""
    return any(isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.modules.dropout._DropoutNd))
               for m in model.modules())


def method(name: str) -> Method:
    if name not in METHODS:
        raise TicketlabError(f"unknown method {name!r}; choose from: imp, {', '.join(METHODS)}")
    return METHODS[name]


def checks_for(name: str, wanted: tuple[str, ...]) -> list[str]:
    """The sanity checks that mean something for a method: a random mask has no scores to invert and no
    positions to forget."""
    return [c for c in wanted if not (method(name).random and c in ("shuffle", "invert"))]


def pai_jobs(config: RunConfig, names: list[str], densities: list[float], reps: list[Replicate], runtime: Runtime,
             checks: tuple[str, ...] = CHECKS, score_mode: str = "eval") -> tuple[dict[str, Path], list[Job]]:
    """Each method's experiment folder and its jobs: one per (seed, density), plus its sanity checks.
    `score_mode`: SCORE_MODES, the mode the model is in while it is scored."""
    if score_mode not in SCORE_MODES:
        raise TicketlabError(f"unknown score mode {score_mode!r}; choose from: {', '.join(SCORE_MODES)}")
    for d in densities:
        if not 0 < d < 1:
            raise TicketlabError(f"densities must be in (0, 1), got {d}")
    for c in checks:
        if c not in CHECKS:
            raise TicketlabError(f"unknown sanity check {c!r}; choose from: {', '.join(CHECKS)}")
    dense_id, _ = dense_experiment(config, runtime, record=False)
    data = runtime.data(config.dataset)
    # eval mode on a model where it matters is a new result; train mode is the one stored before the choice
    moded = score_mode == "eval" and mode_dependent(runtime.model(config, data, reps[0].seeds["init"]))
    folders, jobs = {}, []
    for name in names:
        spec = method(name)
        identity = {"dense": dense_id, "method": dataclasses.asdict(spec), "ignore": list(config.pruning.ignore)}
        if moded and not spec.random:
            identity["score_mode"] = "eval"
        if spec.allocation == "layerwise":  # the only allocation that reads the per-layer rates
            identity["pruning"] = changed_fields(config.pruning)
        if spec.allocation in REVISIONS:  # a name that once meant another rule: never its old results
            identity["allocation_revision"] = REVISIONS[spec.allocation]
        if config.pruning.rounding != PruningHparams.rounding:  # every allocation's counts
            identity["rounding"] = config.pruning.rounding
        folder = method_experiment(config, runtime, "pai", identity, method=name)
        folders[name] = folder
        for rep in reps:
            for d in densities:
                base = relative(store.density_dir(store.seed_dir(folder, rep.seed), d), runtime)
                params = {"rep": rep, "method": name, "spec": spec, "density": d, "score_mode": score_mode}
                jobs.append(Job("pai", base, {**params, "check": None}, label=f"seed {rep.seed} {name} d={d:g}"))
                for c in checks_for(name, checks):
                    jobs.append(Job("pai", store.check_dir(Path(base), c).as_posix(), {**params, "check": c},
                                    (base,), label=f"seed {rep.seed} {name} d={d:g} check {c}"))
    return folders, jobs


def scoring_batch(spec: Method, data: Any, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The data a scorer sees: one seeded mini-batch, or `examples_per_class` seeded examples of each class."""
    if spec.batch == "none":
        return None
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data.train_y), generator=g).to(data.train_y.device)
    if spec.batch == "minibatch":
        idx = order[:batch_size]
    else:
        labels = data.train_y[order]
        idx = torch.cat([order[labels == c][: spec.examples_per_class] for c in range(data.num_classes)])
    return data.train_x[idx], data.train_y[idx]


@register_kind("pai")
def run_pai(job: Job, rt: Runtime) -> None:
    p = job.params
    rep: Replicate = p["rep"]
    spec: Method = p["spec"]
    config, density, check = rep.config, p["density"], p["check"]
    data, model, theta0 = initialised(rep, rt)
    draw = derive_seed(rep.seed, "pai", p["method"], density)
    budget = budget_for(model, density, spec.allocation, config.pruning)
    start = theta0
    if check in ("shuffle", "reinit"):
        require_healthy(rt.path(job.deps[0]), job.describe().rsplit(" check ", 1)[0])
        mask = Mask.load(rt.path(job.deps[0]) / store.MASK)
        if check == "shuffle":
            mask = shuffle_mask(mask, torch.Generator().manual_seed(derive_seed(draw, "shuffle")))
        else:
            start = rt.model(config, data, derive_seed(draw, "reinit")).state_dict()
    else:
        scorer = SCORERS[spec.scorer]
        if check == "invert":
            def inverted(*args):  # noqa: ANN002, ANN202  (keep the weights the method ranks lowest)
                return {k: -s for k, s in scorer(*args).items()}
            chosen = inverted
        else:
            chosen = scorer
        mode = p.get("score_mode", "train")
        model.train(mode == "train")
        mask = prune(model, density=density, scorer=chosen, allocation=spec.allocation, hp=config.pruning,
                     batch=scoring_batch(spec, data, config.training.batch_size, derive_seed(draw, "batch")),
                     schedule=spec.schedule, rounds=spec.rounds, generator=torch.Generator().manual_seed(draw))
        model.train()
    info = {"method": p["method"], "variant": f"check_{check}" if check else "ticket", "requested_density": density,
            "level": 0, "rewind_step": 0, "seed": rep.seed, "seeds": rep.seeds}
    if not spec.random and mode_dependent(model):  # the mode its mask was scored in (the reinit check's too)
        info["score_mode"] = p.get("score_mode", "train")
    run_training(rt.path(job.folder), model=model, data=data, training=config.training, mask=mask, start=start,
                 start_step=0, data_seed=rep.seeds["data"], budget=budget, info=info, label=job.describe(),
                 progress=rt.progress, checkpoint_every=rt.options.checkpoint_every)
