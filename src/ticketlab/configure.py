"""Building a run's config from layers: dataclass defaults <- the model's preset <- overrides.

This module sits above `config` (the dataclasses, parsing and validation), `models` (whose registry holds
the presets), `data` (whose registry knows each data set's size) and `pruning` (whose registry of
allocations names the valid pruning.strategy values), so `config` never imports upward.
Durations given in epochs ("2ep", "1ep10it") become steps here, from the data set's size:
steps per epoch = (training examples - dataset.val_size, or dataset.subsample) // training.batch_size, as the loop
draws its batches, with every value as it stands after the preset and the overrides.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from .config import (DatasetHparams, ModelHparams, RunConfig, TrainingHparams, _coerce, check_top_level,
                     config_from_layers, merge)
from .data import DATASETS, noise
from .errors import TicketlabError
from .models import construct, find_model, preset_for
from .models.init import BIAS_CHOICES, check_bias_init
from .pruning import ALLOCATIONS, layer_rates, layers_of, openlth_remaining, round_half_up
from .seeds import check_seed
from .settings import flag_name, setting_of


def build_config(overrides: dict[str, Any], steps_per_epoch: int | None = None,
                 given: dict[str, Any] | None = None) -> RunConfig:
    """Defaults <- the model's preset <- `overrides` (TOML and flags already merged), every value validated.
    `given`: what of `overrides` the user gave (default all of it), for check_applies: a method's own recipe
    merged in by its command is not the user's word.

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
    check_bias_init(config.model.bias_init, BIAS_CHOICES)  # a TOML or Python value: said before anything runs
    return check_applies(config, overrides if given is None else given)


SECTIONS = ("dataset", "model", "training", "pruning", "lottery")


class NoEffect(TicketlabError):
    """A setting the user gave where it has no effect (check_applies); `key` = (section, field)."""

    def __init__(self, message: str, key: tuple[str, str]):
        super().__init__(message)
        self.key = key


def check_applies(config: RunConfig, given: dict[str, Any]) -> RunConfig:
    """The one rule for settings that act only with another (settings.Setting.applies): a value `given` by
    the user where it has no effect is refused in one line; one a model's preset set is put back to its
    default, so that it never makes a new folder for the same results."""
    for section in SECTIONS:
        values, reset = getattr(config, section), {}
        for f in dataclasses.fields(values):
            rule = setting_of(f).applies if setting_of(f) else None
            if rule is None or getattr(values, f.name) == f.default or rule[1](config):
                continue
            if f.name in (given.get(section) or {}):
                raise NoEffect(f"--{flag_name(f)} ({section}.{f.name} = {getattr(values, f.name)!r}) has no "
                               f"effect here: it applies only {rule[0]}", (section, f.name))
            reset[f.name] = f.default
        if reset:
            config = dataclasses.replace(config, **{section: dataclasses.replace(values, **reset)})
    return config


def check_data_size(config: RunConfig) -> None:
    """For a data set of the data registry, loaded from it: the validation split leaves training examples, and
    one batch fits in them (the command line says so before anything is loaded or written; a run given its
    data tensors is checked against those instead)."""
    info = DATASETS.get(config.dataset.name)
    if info is None:
        return
    name, val_size, batch_size = config.dataset.name, config.dataset.val_size, config.training.batch_size
    if not 0 <= val_size < info.train_size:
        raise TicketlabError(f"dataset.val_size must be in [0, {info.train_size}) for {name}, got {val_size}")
    if config.dataset.subsample > info.train_size - val_size:
        raise TicketlabError(f"dataset.subsample ({config.dataset.subsample}) exceeds the training split of {name} "
                             f"({info.train_size} - {val_size} validation = {info.train_size - val_size} examples)")
    if batch_size > info.train_size - val_size:
        raise TicketlabError(f"training.batch_size ({batch_size}) exceeds the training set ({name}: "
                             f"{info.train_size} - {val_size} validation = {info.train_size - val_size} examples)")
    if batch_size > (config.dataset.subsample or batch_size):
        raise TicketlabError(f"training.batch_size ({batch_size}) exceeds the training subsample "
                             f"(dataset.subsample = {config.dataset.subsample} examples)")
    noise.check(config.dataset)
    if info.regression != (config.training.loss == "mse"):  # the loop would say it only after writing files
        raise TicketlabError(f"{name} has regression targets: set training.loss = mse" if info.regression else
                             f"{name} has class labels: training.loss mse needs regression targets (relu, helix)")


def check_model(config: RunConfig, levels: int | None = None) -> None:
    """What only the network can tell, said before anything is trained or written: the model builds for the
    data set (e.g. `mlp_0` does not), the layer names in [pruning] exist, and `levels` (default: the config's,
    for kind lottery) leave at least one weight in some pruned layer. The network is built on the meta device
    (shapes only, no memory). Skipped for a model or data set that its registry does not know."""
    info = DATASETS.get(config.dataset.name)
    if find_model(config.model.name) is None or info is None:
        return
    try:
        with torch.device("meta"):
            model = construct(config.model, info.input_shape, info.num_classes)
    except TicketlabError:
        raise
    except Exception:  # noqa: BLE001  (a user's builder that needs real tensors: build it for real)
        model = construct(config.model, info.input_shape, info.num_classes)
    layers = layers_of(model)
    if not layers:
        return
    rates = layer_rates(config.pruning, {k: v.kind for k, v in layers.items()})  # checks the names given
    if levels is None:
        levels = config.lottery.levels if config.kind == "lottery" else 0
    empty = empty_level(layers, rates, config.pruning.strategy, config.pruning.rate, config.pruning.ignore,
                        config.pruning)
    if empty is not None and levels >= empty:
        raise TicketlabError(f"lottery.levels {levels:,} would prune every layer of {config.model.name} to nothing "
                             f"after level {empty - 1} (at these pruning rates, level {empty} keeps no weight): "
                             f"use at most {empty - 1} levels")


def empty_level(layers: dict[str, Any], rates: dict[str, float], strategy: str, rate: float,
                ignore: tuple[str, ...] = (), hp: Any = None) -> int | None:
    """The first IMP level at which no pruned layer keeps a weight (counts rounded as the allocations round
    them): layer-wise, each layer at its own rate; any other allocation, the pooled layers at `rate`, counted
    as hp.counting counts them (openlth: its recurrence, pruning.openlth_remaining). None when nothing is
    pruned (every rate 0)."""
    if hp is not None and hp.counting == "openlth" and strategy != "layerwise" and rate > 0:
        ignored = sum(info.size for k, info in layers.items() if k in ignore)
        if sum(info.size for info in layers.values()) == ignored:
            return None
        level = 1  # each level prunes at least one weight: the pooled layers empty within their size
        while openlth_remaining(layers, hp, level) > ignored:
            level += 1
        return level
    if strategy == "layerwise":
        groups = [(info.size, rates[k]) for k, info in layers.items() if rates[k] > 0]
    else:
        pooled = sum(info.size for k, info in layers.items() if k not in ignore)
        groups = [(pooled, rate)] if rate > 0 and pooled else []
    if not groups:
        return None

    def first_empty(size: int, r: float) -> int:
        level = max(0, math.floor(math.log(2 * size) / -math.log1p(-r)) - 1)  # just below, then step up
        while round_half_up(size * (1 - r) ** level) > 0:
            level += 1
        return level

    return max(first_empty(size, r) for size, r in groups)


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
    subsample = _coerce(dataset.get("subsample", DatasetHparams.subsample), int, "dataset.subsample")
    examples = min(subsample, train_size - val_size) if subsample > 0 else train_size - val_size
    return max(1, examples // batch_size)


def _table(layers: dict[str, Any], section: str) -> dict[str, Any]:
    value = layers.get(section, {})
    return value if isinstance(value, dict) else {}


__all__ = ["build_config", "check_data_size", "check_model", "check_strategy", "empty_level", "steps_per_epoch_for"]
