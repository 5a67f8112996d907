"""Early-bird tickets in the run store (training/early_bird.py draws them), trained like lottery tickets.

Job kinds: `early_bird_search` in `earlybird_<h>/seed_<s>/density_<d>/search/` trains the dense network with
the config's recipe until the early-bird mask is drawn (or to the end, if the masks never settle: then the
trained network's mask, said as "found": false), and stores that mask, the weights at that step and the
epoch; `early_bird` in `density_<d>/` trains the mask from the initial weights (rewound to theta_0, as a
lottery ticket). h = the dense experiment's identity + the search's settings (epsilon, masks kept; the
channel variant adds its L1 weight). Training FLOPs: the dense search up to its step, then the ticket's.

Method names: `early-bird` (a global |w| mask at density d) and `early-bird-channel` (network slimming's BN
channel mask keeping the fraction d of channels, on models with batch norm; the ticket's weight density is
what removing those channels' filters leaves, and its summary says both). The channel ticket is trained
without the L1 term, like every other ticket in `compare`; the paper's code may keep it on (`--sr`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .. import store
from ..config import RunConfig
from ..jobs import Job, Runtime, register_kind
from ..masks import Mask
from ..training.cost import dense_counts, training_flops, uses_per_example
from ..errors import TicketlabError
from ..training.early_bird import (EPSILON, KEEP, SPARSITY, EarlyBirdFound, EarlyBirdSearch, batch_norms,
                                   channel_ticket)
from ..training.loop import Checkpointing, Diverged, Hooks, train
from .job import DIVERGED, require_healthy, run_training
from .plan import Replicate, dense_experiment, initialised, method_experiment, relative

SEARCH = "search"
VARIANT = {"early-bird": "weights", "early-bird-channel": "channels"}  # method name -> EarlyBirdSearch variant


def early_bird_jobs(config: RunConfig, method: str, densities: list[float], reps: list[Replicate],
                    runtime: Runtime) -> tuple[Path, list[Job]]:
    """`method`: a name in VARIANT. The channel variant is refused here, before anything trains, on a model
    without batch norm."""
    dense_id, _ = dense_experiment(config, runtime, record=False)
    settings = {"epsilon": EPSILON, "keep": KEEP, "start": "rewind"}
    if VARIANT[method] == "channels":
        data = runtime.data(config.dataset)
        if not batch_norms(runtime.model(config, data, reps[0].seeds["init"])):
            raise TicketlabError(f"{method} ranks batch-norm scales, and {config.model.name} has no batch norm: "
                                 "use early-bird, or a model with batch norm (e.g. resnet20, vgg16)")
        settings = {**settings, "variant": "channels", "sparsity": SPARSITY}
    folder = method_experiment(config, runtime, "earlybird", {"dense": dense_id, "early_bird": settings},
                               method=method)
    jobs = []
    for rep in reps:
        for d in densities:
            ticket = relative(store.density_dir(store.seed_dir(folder, rep.seed), d), runtime)
            search = (Path(ticket) / SEARCH).as_posix()
            params = {"rep": rep, "method": method, "density": d}
            jobs.append(Job("early_bird_search", search, params, label=f"seed {rep.seed} {method} d={d:g} search"))
            jobs.append(Job("early_bird", ticket, params, (search,), label=f"seed {rep.seed} {method} d={d:g}"))
    return folder, jobs


@register_kind("early_bird_search")
def run_search(job: Job, rt: Runtime) -> None:
    rep: Replicate = job.params["rep"]
    config, density = rep.config, job.params["density"]
    folder = rt.path(job.folder)
    data = rt.data(config.dataset, rep.fingerprint)
    model = rt.model(config, data, rep.seeds["init"])
    per_epoch = max(1, len(data.train_x) // config.training.batch_size)
    method = job.params["method"]
    policy = EarlyBirdSearch(density, per_epoch, variant=VARIANT[method])
    folder.mkdir(parents=True, exist_ok=True)
    hooks = Hooks(progress=(lambda s, t: rt.progress(job.describe(), s, t)) if rt.progress else None)
    began = time.perf_counter()
    head = {"method": method, "variant": "search", "requested_density": density, "seed": rep.seed,
            "seeds": rep.seeds, "steps_per_epoch": per_epoch, "epsilon": EPSILON, "keep": KEEP}
    try:
        train(model, data, config.training, data_seed=rep.seeds["data"], policy=policy, hooks=hooks,
              checkpoint=Checkpointing(folder / store.CHECKPOINT, rt.options.checkpoint_every))
        found, step, mask = False, config.training.train_steps, policy.draw()
    except EarlyBirdFound as e:
        found, step, mask = True, e.step, e.mask
    except Diverged as d:
        print(f"{job.describe()} diverged at step {d.step}: {d.reason}", file=sys.stderr)
        store.finish_job(folder, {**head, "status": DIVERGED, "diverged_at_step": d.step,
                                  "diverged_because": d.reason, "density": None,
                                  "train_seconds_this_session": time.perf_counter() - began})
        (folder / store.CHECKPOINT).unlink(missing_ok=True)
        return
    uses = uses_per_example(model, data.input_shape)
    mask.save(folder / store.MASK)
    store.save_weights(folder / store.FINAL, model)  # the weights at the step the mask was drawn
    store.finish_job(folder, {**head, "status": "ok", "found": found, "step": step, "epoch": step // per_epoch,
                              # the channel variant's density: the fraction of BN channels kept
                              "largest_distances": policy.history, "density": mask.density(),
                              "layer_counts": mask.counts(),
                              "train_flops": training_flops(uses, dense_counts(model), step,
                                                            config.training.batch_size),
                              "train_seconds_this_session": time.perf_counter() - began})
    (folder / store.CHECKPOINT).unlink(missing_ok=True)


@register_kind("early_bird")
def run_ticket(job: Job, rt: Runtime) -> None:
    rep: Replicate = job.params["rep"]
    config, method = rep.config, job.params["method"]
    search = require_healthy(rt.path(job.deps[0]), job.describe() + " search")
    drawn = Mask.load(rt.path(job.deps[0]) / store.MASK)
    data, model, theta0 = initialised(rep, rt)
    info = {"method": method, "variant": "ticket", "requested_density": job.params["density"], "level": 0,
            "rewind_step": 0, "seed": rep.seed, "seeds": rep.seeds, "early_bird_found": search["found"],
            "early_bird_step": search["step"], "early_bird_epoch": search["epoch"]}
    mask, policy = drawn, None
    if VARIANT[method] == "channels":  # the weights the kept channels leave, and their BN held at 0
        policy = channel_ticket(model, drawn, data.input_shape)
        mask, info["channel_density"] = policy.mask, policy.channel_density()
    run_training(rt.path(job.folder), model=model, data=data, training=config.training, mask=mask, start=theta0,
                 start_step=0, data_seed=rep.seeds["data"], budget={(k,): n for k, n in mask.counts().items()},
                 info=info, label=job.describe(), progress=rt.progress, checkpoint_every=rt.options.checkpoint_every,
                 policy=policy)
