"""Sparse from the start: dynamic sparse training (SET, RigL) and gradual magnitude pruning, trained with the
experiment's recipe, seeds and data order at the same densities as IMP and pruning at init (`compare`).

Job kind `sparse`: `sparse_<h>/seed_<s>/density_<d>/` (h = the dense experiment's identity + the method's
settings, training/dynamic.py). The starting mask: set, set-magnitude and rigl start from a random mask with
ERK layer densities (Evci et al.; Erdos-Renyi for dense layers, as SET's), drawn as `random-erk` draws it;
gmp starts dense and prunes each layer to the uniform density (Zhu & Gupta). The stored mask is the one
training ends with; the summary holds its training FLOPs against one dense run (training/cost.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .. import store
from ..config import RunConfig
from ..errors import TicketlabError
from ..jobs import Job, Runtime, register_kind
from ..masks import Mask
from ..pruning import SCORERS, budget_for, prune
from ..seeds import derive_seed
from ..training.dynamic import METHODS, DynamicMask, DynamicSpec
from .job import run_training
from .plan import Replicate, dense_experiment, initialised, method_experiment, relative

# the layer densities: ERK for the rewiring methods (RigL's; DEEP R's own code hand-set 1%/3%/30% for its MLP),
# uniform for gmp (Zhu & Gupta)
START = {"set": "erk", "set-magnitude": "erk", "rigl": "erk", "deepr": "erk", "gmp": "uniform"}


def spec_of(name: str) -> DynamicSpec:
    if name not in METHODS:
        raise TicketlabError(f"unknown dynamic sparse method {name!r}; choose from: {', '.join(METHODS)}")
    return METHODS[name]


def sparse_jobs(config: RunConfig, names: list[str], densities: list[float], reps: list[Replicate],
                runtime: Runtime) -> tuple[dict[str, Path], list[Job]]:
    """Each method's experiment folder and its jobs: one per (seed, density)."""
    dense_id, _ = dense_experiment(config, runtime, record=False)
    folders, jobs = {}, []
    for name in names:
        spec = spec_of(name)
        identity = {"dense": dense_id, "sparse": dataclasses.asdict(spec), "start": START[name],
                    "ignore": list(config.pruning.ignore)}
        folder = method_experiment(config, runtime, "sparse", identity, method=name)
        folders[name] = folder
        for rep in reps:
            for d in densities:
                where = relative(store.density_dir(store.seed_dir(folder, rep.seed), d), runtime)
                jobs.append(Job("sparse", where, {"rep": rep, "method": name, "spec": spec, "density": d},
                                label=f"seed {rep.seed} {name} d={d:g}"))
    return folders, jobs


def per_layer(budget: dict) -> dict[str, int]:
    """A per-layer budget {(name,): count} as {name: count}."""
    if any(len(group) != 1 for group in budget):
        raise TicketlabError("dynamic sparse training keeps a count per layer: its allocation must be per layer")
    return {group[0]: n for group, n in budget.items()}


@register_kind("sparse")
def run_sparse(job: Job, rt: Runtime) -> None:
    p = job.params
    rep: Replicate = p["rep"]
    spec: DynamicSpec = p["spec"]
    config, density, name = rep.config, p["density"], p["method"]
    data, model, theta0 = initialised(rep, rt)
    draw = derive_seed(rep.seed, "sparse", name, density)
    budget = budget_for(model, density, START[name], config.pruning)
    targets = per_layer(budget)
    if name == "gmp":
        start = Mask.ones(model)
    else:
        start = prune(model, density=density, scorer=SCORERS["random"], allocation=START[name], hp=config.pruning,
                      generator=torch.Generator().manual_seed(draw))
    policy = DynamicMask(start, spec, targets, config.training.train_steps, derive_seed(draw, "grow"),
                         data.input_shape, config.training.batch_size)
    info = {"method": name, "variant": "ticket", "requested_density": density, "level": 0, "rewind_step": 0,
            "seed": rep.seed, "seeds": rep.seeds, "sparse": dataclasses.asdict(spec)}
    run_training(rt.path(job.folder), model=model, data=data, training=config.training, mask=start, start=theta0,
                 start_step=0, data_seed=rep.seeds["data"], budget=budget, info=info, label=job.describe(),
                 progress=rt.progress, checkpoint_every=rt.options.checkpoint_every, policy=policy)
