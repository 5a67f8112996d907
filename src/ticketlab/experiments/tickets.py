"""A ticket as an input: train a given mask again (`--ticket FILE`, a file from `export --format safetensors`).

Two starts:
  stored  the file's own weights (those its level trained from, theta_k masked) at its start step: the same
          ticket retrained under this run's recipe, data order and numerics
  own     the mask applied to this run's model, which must have the same prunable names and shapes, from its
          own initial weights at step 0 (a ticket transferred to another initialisation or model)

Job kind `ticket`: `ticket_<h>/seed_<s>/level_<L>/`, h = the dense experiment's identity + a hash of the
file's contents + the start, L = the level the ticket came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from .. import store
from ..config import RunConfig
from ..errors import TicketlabError
from ..export import load_ticket
from ..identity import digest
from ..jobs import Job, Runtime, register_kind
from ..masks import Mask
from ..seeds import streams
from .job import run_training
from .plan import check_seeds, dense_experiment, provenance, relative

STARTS = ("stored", "own")


def ticket_jobs(config: RunConfig, path: str | Path, seeds: list[int], runtime: Runtime,
                start: str = "stored") -> tuple[Path, list[Job]]:
    """The ticket experiment's folder and one job per seed; the mask is checked against the model here."""
    if start not in STARTS:
        raise TicketlabError(f"unknown ticket start {start!r}; choose one of: {', '.join(STARTS)}")
    check_seeds(seeds)
    ticket = load_ticket(path)
    data = runtime.data(config.dataset)
    model = runtime.model(config, data, streams(config.seed)["init"])
    mask = Mask(ticket["masks"])
    mask.check_matches(model)
    if start == "stored":
        own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if {k: tuple(v.shape) for k, v in ticket["init"].items()} != own:
            raise TicketlabError(f"{path}: its stored weights do not fit this model (names or shapes differ); "
                                 f"use the model's own initial weights instead (start 'own')")
        start_step = int(ticket["metadata"].get("start_step", 0))
        if start_step >= config.training.train_steps:  # said here, before any folder is written
            raise TicketlabError(f"the ticket starts at step {start_step}, at or past this run's "
                                 f"{config.training.train_steps} training steps")
    file_digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    dense_id, _ = dense_experiment(config, runtime, record=False)
    identity = {"dense": dense_id, "ticket": file_digest, "start": start}
    folder = store.experiment_dir(runtime.root, "ticket", digest(identity))
    body = config.to_dict()
    body.pop("seed")
    store.record_experiment(folder, {"kind": "ticket", "hash": digest(identity), "identity": identity,
                                     "config": body, "ticket": {"file": str(path), "metadata": ticket["metadata"]}},
                            provenance)
    level = int(ticket["metadata"].get("level", 0))
    jobs = []
    for s in seeds:
        job_folder = relative(store.level_dir(store.seed_dir(folder, s), level), runtime)
        params = {"config": dataclasses.replace(config, seed=s), "fingerprint": data.fingerprint,
                  "file": str(Path(path).resolve()), "digest": file_digest, "start": start, "level": level}
        jobs.append(Job("ticket", job_folder, params, label=f"seed {s} ticket {Path(path).name}"))
    return folder, jobs


@register_kind("ticket")
def run_ticket(job: Job, rt: Runtime) -> None:
    p: dict[str, Any] = job.params
    config: RunConfig = p["config"]
    if hashlib.sha256(Path(p["file"]).read_bytes()).hexdigest()[:16] != p["digest"]:
        raise TicketlabError(f"{p['file']} changed since this job was planned: plan it again")
    ticket = load_ticket(p["file"])
    seeds = streams(config.seed)
    data = rt.data(config.dataset, p["fingerprint"])
    model = rt.model(config, data, seeds["init"])
    mask = Mask(ticket["masks"])
    if p["start"] == "stored":
        start = {k: v.to(rt.device) for k, v in ticket["init"].items()}
        start_step = int(ticket["metadata"].get("start_step", 0))
    else:
        start, start_step = model.state_dict(), 0
    info = {"level": p["level"], "variant": "ticket", "ticket_file": p["file"], "ticket_digest": p["digest"],
            "ticket_start": p["start"], "rewind_step": start_step, "seed": config.seed, "seeds": seeds}
    run_training(rt.path(job.folder), model=model, data=data, training=config.training, mask=mask, start=start,
                 start_step=start_step, data_seed=seeds["data"], budget={(k,): n for k, n in mask.counts().items()},
                 info=info, label=job.describe(), progress=rt.progress, checkpoint_every=rt.options.checkpoint_every)
