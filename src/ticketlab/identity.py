"""Identity: what determines a result, as a canonical dict, and the hash that names its folder.

A folder is named by exactly the settings that change what is in it, no more and no fewer:

  data      the data set's name, a fingerprint of its contents and its split (other files under the same
            name are other data)
  model     the config's model settings and what the module is: its class and its parameters' and buffers'
            names, shapes and dtypes (a user's own module under the default name is not LeNet)
  training  the optimisation recipe
  numerics  the device kind and the CPU thread count, which change the last bits of every result
  dense     data + model + training + numerics: one dense run per seed, shared by every experiment on it
  lottery   dense + pruning + retraining (not the number of levels: level L is the same whatever comes after)

Only fields that differ from their dataclass defaults enter a hash, so a field added later with a
"no change" default leaves every stored folder findable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import torch
from torch import nn

from .config import ModelHparams, RunConfig
from .models.registry import resolved


def digest(obj: Any, length: int = 16) -> str:
    """Hash of the canonical JSON form (sorted keys, no spaces) of `obj`."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def changed_fields(section: Any, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A config dataclass as {field: value} for the fields that differ from their defaults."""
    out = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if f.name not in drop and value != default:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def model_signature(model: nn.Module) -> dict[str, Any]:
    """What a module is: its class, the names, shapes and dtypes of its parameters and buffers, and the version
    of its construction where its weights are built, not drawn (models/planted.py)."""
    cls = type(model)
    tensors = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]
    signature = {"class": f"{cls.__module__}.{cls.__qualname__}", "tensors": digest(tensors)}
    construction = getattr(model, "construction", None)  # a model whose weights are a construction: its version
    return signature if construction is None else {**signature, "construction": construction}


def numerics(device: torch.device, threads: int, population: str | int | None = None) -> dict[str, Any]:
    """The device kind (and GPU model), on a CPU the thread count, and the population setting when networks
    train as populations (executors/population.py; None: each alone): each changes a result's last bits."""
    out = {"device": f"cuda:{torch.cuda.get_device_name(device)}"} if device.type == "cuda" else \
        {"device": device.type, "threads": threads}
    return out if population is None else {**out, "population": population}


# Model settings whose default, "preset", resolves per model (models.registry.resolved): the identity holds the
# resolved value and leaves it out where it is the value that was the default before "preset" existed. So a
# folder is named by what is drawn (ModelHparams("cifar_resnet_20") and the CLI name the same one), and every
# folder stored before keeps its name (--bias-init zeros finds the OpenLTH presets' zero-bias runs).
RESOLVED_DEFAULTS = {"init": "glorot_normal", "bias_init": "zeros"}


def model_fields(hp: ModelHparams) -> dict[str, Any]:
    """changed_fields of `hp` with its "preset" values resolved, left out where they resolve to the old default."""
    drawn = resolved(hp)
    out = changed_fields(drawn)
    for name, old in RESOLVED_DEFAULTS.items():
        if getattr(drawn, name) == old:
            out.pop(name, None)
    return out


def dense_identity(config: RunConfig, data_fingerprint: str, model: dict[str, Any],
                   numeric: dict[str, Any]) -> dict[str, Any]:
    return {"data": {**changed_fields(config.dataset), "name": config.dataset.name, "fingerprint": data_fingerprint},
            "model": {**model_fields(config.model), "name": config.model.name, **model},
            "training": changed_fields(config.training), "numerics": numeric}


def lottery_identity(dense: dict[str, Any], config: RunConfig, *, revisions: dict[str, str]) -> dict[str, Any]:
    """`revisions`: allocation name -> what tells its current meaning from an earlier one (pruning.REVISIONS;
    passed in: identity sits below pruning), entered for the config's strategy so no old result is found."""
    pruning = changed_fields(config.pruning)
    if config.pruning.strategy in revisions:  # an allocation name that once meant another rule
        pruning["strategy_revision"] = revisions[config.pruning.strategy]
    return {"dense": dense, "pruning": pruning, "lottery": changed_fields(config.lottery, drop=("levels",))}
