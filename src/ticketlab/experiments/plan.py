"""From a config and seeds to the folders of their experiments: identities resolved once, at plan time.

`Replicate` is plain data (strings and the config) that every job of one seed carries: where its dense run
lives (shared by every experiment on the same data, model, training and numerics), where its pruned levels
live, and the data fingerprint the jobs must find. Planning records each experiment's config.json and links
the lottery experiment's level 0 to the shared dense run.
"""

from __future__ import annotations

import dataclasses
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import store
from ..config import RunConfig
from ..identity import dense_identity, digest, lottery_identity, model_signature, numerics
from ..jobs import Runtime
from ..pruning import REVISIONS
from ..errors import TicketlabError
from ..executors import trained_as
from ..seeds import MAX_SEED, check_seed, streams


@dataclass(frozen=True)
class Replicate:
    config: RunConfig  # its seed is this replicate's
    fingerprint: str  # of the data every job of this replicate must train on
    dense: str  # the dense experiment's seed folder, relative to the store root
    lottery: str | None  # the lottery experiment's seed folder (None for a dense-only experiment)

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def seeds(self) -> dict[str, int]:
        return streams(self.config.seed)

    @property
    def home(self) -> str:
        """The seed folder users see: the lottery one if any, else the dense one."""
        return self.lottery or self.dense

    def level(self, level: int) -> str:
        """Where level `level` really lives (level 0: the shared dense run)."""
        if level == 0:
            return store.level_dir(Path(self.dense), 0).as_posix()
        if self.lottery is None:
            raise ValueError("a dense experiment has no pruned levels")
        return store.level_dir(Path(self.lottery), level).as_posix()

    def prefix(self, step: int) -> str:
        return store.prefix_dir(Path(self.dense), step).as_posix()

    def rewind(self) -> str | None:
        """The dense run stopped at the rewind step k (theta_k), or None for k = 0 (theta_0: level 0's init)."""
        k = self.config.lottery.rewind_step
        return self.prefix(k) if k > 0 else None


def initialised(rep: Replicate, runtime: Runtime) -> tuple[Any, Any, dict[str, torch.Tensor]]:
    """What a job that trains from initialisation starts from: the replicate's data (checked against its
    fingerprint), its model built from the init seed, and a copy of those initial weights (theta_0)."""
    data = runtime.data(rep.config.dataset, rep.fingerprint)
    model = runtime.model(rep.config, data, rep.seeds["init"])
    return data, model, {k: v.clone() for k, v in model.state_dict().items()}


def dense_experiment(config: RunConfig, runtime: Runtime, record: bool = True) -> tuple[dict[str, Any], Path]:
    """The dense experiment of `config`: identity and folder (its config.json written if `record`). The
    data are loaded and the model built once here to know what they are."""
    data = runtime.data(config.dataset)
    model = runtime.model(config, data, streams(config.seed)["init"])
    numeric = numerics(runtime.device, runtime.options.threads, trained_as(runtime.options))
    identity = dense_identity(config, data.fingerprint, model_signature(model), numeric)
    folder = store.experiment_dir(runtime.root, "train", digest(identity))
    if record:
        body = config.to_dict()
        store.record_experiment(folder, {"kind": "train", "hash": digest(identity), "identity": identity,
                                         "config": {k: body[k] for k in ("dataset", "model", "training")}},
                                provenance)
    return identity, folder


def method_experiment(config: RunConfig, runtime: Runtime, kind: str, identity: dict[str, Any],
                      **fields: Any) -> Path:
    """The folder `<kind>_<hash of identity>` of an experiment that branches off the dense one (pai, sparse,
    earlybird, strong), its config.json written once: the kind, `fields` (the method, ...), the identity and
    the config without the seed (every replicate shares it)."""
    folder = store.experiment_dir(runtime.root, kind, digest(identity))
    body = config.to_dict()
    body.pop("seed")
    store.record_experiment(folder, {"kind": kind, **fields, "hash": digest(identity), "identity": identity,
                                     "config": body}, provenance)
    return folder


def resolve(config: RunConfig, seeds: list[int], runtime: Runtime) -> list[Replicate]:
    """The replicates of `config`: its experiments' folders (config.json written) and level-0 links."""
    check_seeds(seeds)
    dense_id, dense_exp = dense_experiment(config, runtime)
    lottery_exp = None
    if config.kind == "lottery":
        lottery_id = lottery_identity(dense_id, config, revisions=REVISIONS)
        lottery_exp = store.experiment_dir(runtime.root, "lottery", digest(lottery_id))
        body = config.to_dict()
        body.pop("seed")
        body["lottery"].pop("levels")
        store.record_experiment(lottery_exp, {"kind": "lottery", "hash": digest(lottery_id), "identity": lottery_id,
                                              "config": body, "dense_experiment": dense_exp.name}, provenance)
    fingerprint = dense_id["data"]["fingerprint"]
    out = []
    for s in seeds:
        rep = Replicate(dataclasses.replace(config, seed=s), fingerprint, relative(store.seed_dir(dense_exp, s), runtime),
                        relative(store.seed_dir(lottery_exp, s), runtime) if lottery_exp else None)
        if rep.lottery:
            store.link(store.level_dir(runtime.path(rep.lottery), 0), runtime.path(rep.level(0)))
        out.append(rep)
    return out


def check_seeds(seeds: list[int]) -> None:
    """Every replicate's seed in range, said in terms of what the user gave (the first seed and the count)."""
    for s in seeds:
        if s != seeds[0] and isinstance(s, int) and s > MAX_SEED:
            raise TicketlabError(f"seeds {seeds[0]} to {seeds[-1]} ({len(seeds)} replicates) go past 2^63 - 1, the "
                                 "largest seed: start lower or ask for fewer replicates")
        check_seed(s)


def relative(path: Path, runtime: Runtime) -> str:
    """A job folder as jobs name it: relative to the store root, so a store can move."""
    return path.relative_to(runtime.root).as_posix()


def provenance() -> dict[str, Any]:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {"git_revision": rev, "torch": torch.__version__, "python": platform.python_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
