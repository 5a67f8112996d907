"""Building a run's config from layers: dataclass defaults <- the model's preset <- overrides.

This module sits above `config` (the dataclasses, parsing and validation), `models` (whose registry holds
the presets), `data` (whose registry knows each data set's size) and `pruning` (whose registry of
allocations names the valid pruning.strategy values), so `config` never imports upward.
Durations given in epochs ("2ep", "1ep10it") become steps here, from the data set's size:
steps per epoch = (training examples - dataset.val_size) // training.batch_size, as the training loop
draws its batches, with every value as it stands after the preset and the overrides.
"""

from __future__ import annotations

from typing import Any

from .config import (DatasetHparams, ModelHparams, RunConfig, TrainingHparams, _coerce, check_top_level,
                     config_from_layers, merge)
from .data import DATASETS
from .errors import TicketlabError
from .models import preset_for
from .pruning import ALLOCATIONS
from .seeds import check_seed


def build_config(overrides: dict[str, Any], steps_per_epoch: int | None = None) -> RunConfig:
    """Defaults <- the model's preset <- `overrides` (TOML and flags already merged), every value validated.

    Durations in epochs use `steps_per_epoch` when given, else the data set's size from the data registry;
    for a data set the registry does not know, they raise (plain step counts need no size). A model name
    the registry does not know is allowed and has no preset."""
    if not isinstance(overrides, dict):
        raise TicketlabError(f"config overrides must be a dict of sections, got {overrides!r}")
    check_top_level(overrides)
    if isinstance(overrides.get("seed"), bool):  # TOML `seed = true`: the seed's own message, not "expected int"
        check_seed(overrides["seed"])
    model = overrides.get("model", {})
    model_name = model.get("name", ModelHparams.name) if isinstance(model, dict) else ModelHparams.name
    layers = merge(preset_for(str(model_name)), overrides)
    if steps_per_epoch is None:
        config = config_from_layers(layers, lambda: steps_per_epoch_for(layers))
    elif isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise TicketlabError(f"steps_per_epoch must be a whole number >= 1, got {steps_per_epoch!r}")
    else:
        config = config_from_layers(layers, steps_per_epoch)
    check_strategy(config.pruning.strategy)
    return config


def check_strategy(strategy: str) -> None:
    """pruning.strategy must name an allocation of the pruning registry (built-in or user-registered)."""
    if strategy not in ALLOCATIONS:
        raise TicketlabError(f"pruning.strategy must be one of {', '.join(ALLOCATIONS)} (the registered "
                             f"allocations), got {strategy!r}")


def steps_per_epoch_for(layers: dict[str, Any]) -> int:
    """Optimizer steps in one epoch for merged config layers (preset and overrides): the training set less
    the validation split, in whole batches (at least 1). Raises TicketlabError when the data set's size is
    unknown (a name the data registry does not hold)."""
    dataset = _table(layers, "dataset")
    training = _table(layers, "training")
    name = str(dataset.get("name", DatasetHparams.name))
    if name not in DATASETS:
        raise TicketlabError(f"the size of dataset {name!r} is unknown (not in the data registry: "
                             f"{', '.join(DATASETS)}); pass steps_per_epoch to build_config, or give steps "
                             "(e.g. 500 or '500it')")
    train_size = DATASETS[name].train_size
    val_size = _coerce(dataset.get("val_size", DatasetHparams.val_size), int, "dataset.val_size")
    batch_size = _coerce(training.get("batch_size", TrainingHparams.batch_size), int, "training.batch_size")
    if not 0 <= val_size < train_size:
        raise TicketlabError(f"dataset.val_size must be in [0, {train_size}) for {name}, got {val_size}")
    if batch_size <= 0:
        raise TicketlabError(f"training.batch_size must be > 0, got {batch_size}")
    return max(1, (train_size - val_size) // batch_size)


def _table(layers: dict[str, Any], section: str) -> dict[str, Any]:
    value = layers.get(section, {})
    return value if isinstance(value, dict) else {}


__all__ = ["build_config", "check_strategy", "steps_per_epoch_for"]
