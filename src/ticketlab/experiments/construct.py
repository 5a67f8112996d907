"""The experiment kind `construct`: a strong lottery ticket built by an existence proof's construction
(existence/), stored as a run.

Folder: construct_<h>/seed_<s>/, h = digest of the target's numbers (existence.targets.fingerprint: a planted
name, a stored run's folder and a ticket file holding the same network are one target), the construction,
eps and its settings, and existence.VERSION. The job writes init.safetensors (the dense random source
network, as an nn.Sequential of Linear and ReLU names it: 0.weight, 0.bias, 2.weight, ...), mask.safetensors
(1 = kept), bias_mask.safetensors (when the source has biases), final.safetensors (the ticket: the source
times its masks, float64) and summary.json (existence.report: errors, bound, widths, kept weights, solver
figures). A finished job is read back, not computed again (jobs.execute: the store's done rule).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import store
from ..errors import TicketlabError
from ..existence import CONSTRUCTIONS, SOLVERS, VERSION, construct, report
from ..existence.targets import Layer, fingerprint, from_state, planted_target
from ..identity import digest
from ..jobs import Job, Runtime, register_kind
from ..models.planted import NAME as PLANTED_NAME
from ..settings import setting
from .plan import provenance, relative
from .registry import Experiment, Planned, register_experiment


@dataclass(frozen=True)
class ConstructPlan:
    target: str = setting("", "the target: a planted model name planted_<task>_<depth>_<width> (its target "
                          "network), a stored run's job folder (final.safetensors, masked by mask.safetensors) or "
                          "a ticket file (.safetensors, from `ticketlab export`)", metavar="TARGET")
    eps: float = setting(0.01, "the sup-norm error to reach on inputs in [-1, 1]^d")
    construction: str = setting("subset-sum", "the existence proof's construction: subset-sum (Pensia et al. "
                                "2020, 2L layers)", choices=CONSTRUCTIONS)
    seed: int = setting(0, "the seed of the random source network (uniform on [-1, 1]) and of the sampled inputs")
    width_factor: int = setting(0, "intermediate neurons per target input; 0: the smallest even one (up to "
                                "--max-width-factor) whose construction meets eps")
    max_width_factor: int = setting(64, "the largest width factor the search tries")
    solver: str = setting("auto", "subset-sum solver: auto (enumeration up to 16 values, else milp), "
                          "enumerate, milp (scipy.optimize.milp, HiGHS)", choices=SOLVERS)
    time_limit: float = setting(10.0, "seconds per MILP subset-sum problem")
    samples: int = setting(10_000, "random inputs the sup-norm error is measured on (plus the box's corners)")


def load_target(text: str) -> list[Layer]:
    """The target's layers from a planted name, a job folder or a ticket/weights file (one line if none)."""
    if not text:
        raise TicketlabError("give --target: a planted_<task>_<depth>_<width> name, a stored run's folder or a "
                             "ticket file")
    if PLANTED_NAME.fullmatch(text):
        return planted_target(text)
    path = Path(text)
    if path.is_dir():
        if not (path / store.FINAL).is_file():
            raise TicketlabError(f"{path} holds no {store.FINAL}: give a finished job's folder (a level_<L>)")
        masks = store.load_weights(path / store.MASK) if (path / store.MASK).is_file() else None
        return from_state(store.load_weights(path / store.FINAL), masks)
    if path.is_file():
        tensors = store.load_weights(path)
        if any(k.startswith("final.") for k in tensors):  # a ticket file of `ticketlab export`
            from ..export import load_ticket

            ticket = load_ticket(path)
            return from_state(ticket["final"], {k: v.double() for k, v in ticket["masks"].items()})
        return from_state(tensors)
    raise TicketlabError(f"--target {text!r} is neither a planted model name (planted_<task>_<depth>_<width>) nor "
                         "an existing folder or file")


def identity(plan: ConstructPlan, target: list[Layer]) -> dict[str, Any]:
    return {"target": fingerprint(target), "construction": plan.construction, "eps": plan.eps,
            "width_factor": plan.width_factor, "max_width_factor": plan.max_width_factor, "solver": plan.solver,
            "time_limit": plan.time_limit, "samples": plan.samples, "version": VERSION}


def _names(layer: int) -> tuple[str, str]:
    return f"{2 * layer}.weight", f"{2 * layer}.bias"  # nn.Sequential(Linear, ReLU, Linear, ...)'s names


@register_kind("construct")
def run_construct(job: Job, rt: Runtime) -> None:
    plan: ConstructPlan = job.params["plan"]
    target = load_target(plan.target)
    if fingerprint(target) != job.params["fingerprint"]:
        raise TicketlabError(f"the target {plan.target} changed since this job was planned")
    start = time.perf_counter()
    built = construct(target, plan.construction, plan.eps, plan.seed,
                      width_factor=plan.width_factor or None, max_width_factor=plan.max_width_factor,
                      solver=plan.solver, time_limit=plan.time_limit)
    summary = report(target, built, plan.samples, time.perf_counter() - start)
    folder = rt.path(job.folder)
    folder.mkdir(parents=True, exist_ok=True)
    biased = any(np.any(mb) for _, mb in built.masks)
    init, final, mask, bias_mask = {}, {}, {}, {}
    for i, ((w, b), (mw, mb)) in enumerate(zip(built.source, built.masks)):
        wn, bn = _names(i)
        init[wn], init[bn] = torch.from_numpy(w), torch.from_numpy(b)
        final[wn], final[bn] = torch.from_numpy(w * mw), torch.from_numpy(b * mb)
        mask[wn], bias_mask[bn] = torch.from_numpy(mw.astype(np.float32)), torch.from_numpy(mb.astype(np.float32))
    store.save_weights(folder / store.INIT, init)
    store.save_weights(folder / store.FINAL, final)
    store.save_weights(folder / store.MASK, mask)
    if biased:
        store.save_weights(folder / store.BIAS_MASK, bias_mask)
    store.finish_job(folder, {**summary, "target": plan.target, "density": summary["kept"] / summary["source_weights"]})


def _validate(plan: ConstructPlan) -> None:
    if not plan.eps > 0 or not np.isfinite(plan.eps):
        raise TicketlabError(f"--eps must be a positive number, got {plan.eps}")
    if plan.width_factor < 0 or plan.max_width_factor < 2:
        raise TicketlabError("--width-factor must be >= 0 (0: search) and --max-width-factor >= 2")
    if not plan.time_limit > 0 or plan.samples < 1:
        raise TicketlabError("--time-limit must be positive and --samples at least 1")
    load_target(plan.target)  # a bad target is one line before anything is written


def _plan(plan: ConstructPlan, runtime: Runtime) -> Planned:
    target = load_target(plan.target)
    ident = identity(plan, target)
    h = digest(ident)
    experiment = store.experiment_dir(runtime.root, "construct", h)
    experiment.mkdir(parents=True, exist_ok=True)
    store.record_experiment(experiment, {"kind": "construct", "hash": h, "identity": ident, "target": plan.target},
                            provenance)
    folder = relative(store.seed_dir(experiment, plan.seed), runtime)
    return Planned([Job("construct", folder, {"plan": plan, "fingerprint": ident["target"]},
                        label=f"construct {plan.construction} eps {plan.eps:g}")])


def _read(plan: ConstructPlan, planned: Planned, runtime: Runtime) -> dict[str, Any]:
    job = planned.jobs[0]
    return {**store.read_summary(runtime.path(job.folder)), "folder": str(runtime.path(job.folder))}


def table(row: dict[str, Any]) -> str:
    return "\n".join([
        f"construction {row['construction']}  eps {row['eps']:g}  seed {row['seed']}  target {row['target']}",
        f"width factor {row['width_factor']} (log2(d l / eps) = {row['log2_dl_over_eps']:.2f}, ratio "
        f"{row['width_factor_over_log']:.2f})  per-weight tolerance {row['per_weight_tolerance']:.3g}",
        f"sup-norm error {row['sup_error']:.3g} on {row['measured_inputs']} inputs (within eps: "
        f"{'yes' if row['within_eps'] else 'NO'}); bound from the per-weight errors {row['bound']:.3g}",
        f"kept {row['kept']:,} of {row['source_weights']:,} source weights (target: {row['target_weights']:,}); "
        f"{row['solves']['problems']} subset-sum problems ({row['solves']['enumerate']} enumerated, "
        f"{row['solves']['milp']} milp, {row['solves']['not_optimal']} at the time limit), {row['seconds']:.2f} s",
        f"run folder: {row['folder']}"])


CONSTRUCT = register_experiment(Experiment(
    "construct", "a strong lottery ticket built by an existence proof's construction, measured against its bound",
    ConstructPlan, _plan, _read, validate=_validate, configs=lambda plan: [], table=table, command="construct"))


def run_construct_plan(plan: ConstructPlan, root: Path | str = store.DEFAULT_ROOT) -> dict[str, Any]:
    """The Python API of the command: run (or read back) `plan` in the store at `root`."""
    from .registry import drive

    return drive(CONSTRUCT, plan, root=root)
