"""The model registry: a name -> how to build the network, and the paper's recipe (preset) for it.

Every model, built in or your own, is one `register_model` call; it then works by name everywhere a
config names a model (`build_model`, `build_config`, the `ticketlab` command, the TOML `[model] name`),
its preset included. A preset holds the config layers that `build_config` puts between the dataclass
defaults and your overrides, shaped like the TOML file (`{"training": {...}, "pruning": {...}}`);
durations in it may use epochs ("2ep"), resolved from the data set's size like any other.

    import math
    from torch import nn
    from ticketlab import build_config
    from ticketlab.models import build_model, register_model

    def tiny(hp, input_shape, num_classes):
        # hp: ModelHparams (hp.name, hp.dropout, ...); weights are drawn afterwards from hp.init
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 64), nn.ReLU(),
                             nn.Dropout(hp.dropout), nn.Linear(64, num_classes))

    register_model("tiny", tiny, preset={"training": {"lr": 3e-3, "train_steps": "20ep"}},
                   help="one hidden layer of 64")
    config = build_config({"model": {"name": "tiny"}, "dataset": {"name": "mnist"}})
    model = build_model(config.model, (1, 28, 28), 10, seed=config.seed)

A family of names is one entry with a `pattern` (a regular expression the whole name must match), e.g.
`mlp_<w1>_<w2>_..`: its builder reads the widths from `hp.name`. Exact names win over patterns, and a
later registration wins over an earlier one (registering a name again replaces it).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, fields
from typing import Any, Callable

import torch
from torch import nn

from ..config import PRESET_INIT, SECTIONS, ModelHparams
from ..errors import TicketlabError
from .convnet import CONV_WIDTHS, ConvNet
from .init import initialize
from . import resnet, vgg
from .mlp import MLP
from .width import scaled

# What "preset" resolves to where a model's preset names none: the LTH paper's Gaussian Glorot weights and zero
# biases (its TF code's), each the dataclass default before "preset" existed
DEFAULT_INIT, DEFAULT_BIAS_INIT = "glorot_normal", "zeros"

Builder = Callable[[ModelHparams, tuple[int, ...], int], nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    name: str  # the name a config uses; for a family, how help texts show it (e.g. "mlp_<w1>_<w2>_..")
    build: Builder  # (hp, input_shape [C, H, W], num_classes) -> an nn.Module; weights are drawn afterwards
    preset: dict[str, dict[str, Any]]  # config layers between the defaults and the overrides
    pattern: re.Pattern[str] | None = None  # for a family: the whole name must match
    help: str = ""
    # (model, hp, seed) -> None: draws the weights itself in place of hp.init (planted networks, whose
    # weights are a construction, not a draw of one distribution)
    draw: Callable[[nn.Module, ModelHparams, int], None] | None = None


_EXACT: dict[str, ModelEntry] = {}
_PATTERNS: dict[str, ModelEntry] = {}  # by display name, in registration order
# Display names of every registered model, for help texts and error messages; updated in place.
MODEL_NAMES: list[str] = []


def register_model(name: str, build: Builder, preset: dict[str, dict[str, Any]] | None = None,
                   pattern: str | None = None, help: str = "", draw: Callable | None = None) -> ModelEntry:
    """Make `name` (or, with `pattern`, every name matching it) buildable by `build_model` and give it the
    config `preset` that `build_config` applies; returns the entry. Registering a name again replaces it."""
    if not isinstance(name, str) or not name.strip():
        raise TicketlabError(f"register_model: the name must be a non-empty string, got {name!r}")
    if not callable(build):
        raise TicketlabError(f"register_model({name!r}): build must be callable "
                             f"(hp, input_shape, num_classes) -> nn.Module, got {build!r}")
    compiled = None
    if pattern is not None:
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise TicketlabError(f"register_model({name!r}): bad pattern {pattern!r}: {e}") from None
    entry = ModelEntry(name, build, _checked_preset(name, preset), compiled, help, draw)
    _EXACT.pop(name, None)
    _PATTERNS.pop(name, None)
    (_PATTERNS if compiled else _EXACT)[name] = entry
    if name not in MODEL_NAMES:
        MODEL_NAMES.append(name)
    return entry


def _checked_preset(name: str, preset: Any) -> dict[str, dict[str, Any]]:
    if preset is None:
        return {}
    if not isinstance(preset, dict):
        raise TicketlabError(f"register_model({name!r}): preset must be a dict of config sections, got {preset!r}")
    for section, values in preset.items():
        if section not in SECTIONS:
            raise TicketlabError(f"register_model({name!r}): preset section {section!r} is not one of "
                                 f"{', '.join(SECTIONS)}")
        if section == "model" and isinstance(values, dict) and "name" in values:  # [model] may set init, width..
            raise TicketlabError(f"register_model({name!r}): preset section 'model' cannot set the name")
        if not isinstance(values, dict):
            raise TicketlabError(f"register_model({name!r}): preset section {section!r} must be a dict, "
                                 f"got {values!r}")
        known = {f.name for f in fields(SECTIONS[section])}
        unknown = set(values) - known
        if unknown:
            raise TicketlabError(f"register_model({name!r}): unknown key(s) in preset [{section}]: "
                                 f"{', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    return copy.deepcopy(preset)


def find_model(name: str) -> ModelEntry | None:
    """The entry for `name`: an exact name first, then the latest registered pattern it matches; or None."""
    if name in _EXACT:
        return _EXACT[name]
    for entry in reversed(_PATTERNS.values()):
        if entry.pattern is not None and entry.pattern.fullmatch(name):
            return entry
    return None


def model_entry(name: str) -> ModelEntry:
    entry = find_model(name)
    if entry is None:
        raise TicketlabError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)} "
                             "(or register your own with ticketlab.models.register_model)")
    return entry


def preset_for(name: str) -> dict[str, dict[str, Any]]:
    """The model's preset as config layers (a copy); {} for a name nobody registered."""
    entry = find_model(name)
    return copy.deepcopy(entry.preset) if entry else {}


def init_of(hp: ModelHparams) -> str:
    """The init the weights are drawn from: hp.init, or for "preset" the model's preset init, else
    glorot_normal (the LTH paper's)."""
    if hp.init != PRESET_INIT:
        return hp.init
    return preset_for(hp.name).get("model", {}).get("init", DEFAULT_INIT)


def bias_init_of(hp: ModelHparams) -> str:
    """The bias init: hp.bias_init, or for "preset" the model's preset's, else zeros."""
    if hp.bias_init != PRESET_INIT:
        return hp.bias_init
    return preset_for(hp.name).get("model", {}).get("bias_init", DEFAULT_BIAS_INIT)


def resolved(hp: ModelHparams) -> ModelHparams:
    """`hp` with every "preset" value replaced by what it draws (the form a run's identity is computed from)."""
    return dataclasses.replace(hp, init=init_of(hp), bias_init=bias_init_of(hp))


def build_model(hp: ModelHparams, input_shape: tuple[int, ...], num_classes: int, seed: int) -> nn.Module:
    """The named model with weights drawn from `init_of(hp)`, then biases from `bias_init_of(hp)`, by one
    generator seeded with `seed`: ModelHparams("cifar_resnet_20") alone draws what the CLI's preset draws."""
    model = construct(hp, input_shape, num_classes)
    draw = model_entry(hp.name).draw
    if draw is not None:  # the entry draws its own weights (models/planted.py)
        if hp.bias_init not in (PRESET_INIT, DEFAULT_BIAS_INIT):  # its biases are part of the construction
            raise TicketlabError(f"{hp.name}: model.bias_init does not apply: this network's weights and biases "
                                 f"are built, not drawn")
        draw(model, hp, seed)
        return model
    initialize(model, init_of(hp), torch.Generator().manual_seed(seed), bias_init=bias_init_of(hp))
    # A model may ask for a memory format (ResNet, VGG: channels_last, measured 1.36x faster per training step
    # for ResNet-20 on this CPU). Converted after the draw, so the weights drawn do not depend on it.
    fmt = getattr(model, "memory_format", None)
    return model.to(memory_format=fmt) if fmt is not None else model


def construct(hp: ModelHparams, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The named model as its builder makes it, weights not drawn yet; what goes wrong said in one line. Under
    `with torch.device("meta")` it costs no memory: `configure.check_model` checks a config that way."""
    entry = model_entry(hp.name)
    input_shape = tuple(input_shape)
    try:
        model = entry.build(hp, input_shape, num_classes)
    except TicketlabError:
        raise
    except ValueError as e:
        raise TicketlabError(f"{hp.name}: {_one_line(e)}") from e
    except Exception as e:  # a user's builder: say which model, for which data, on one line
        raise TicketlabError(f"{hp.name}: cannot be built for input shape {input_shape} and {num_classes} "
                             f"classes: {type(e).__name__}: {_one_line(e)}") from e
    if not isinstance(model, nn.Module):
        raise TicketlabError(f"{hp.name}: its builder returned {type(model).__name__}, not an nn.Module")
    return model


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# ---- Built-in models and their paper presets (../shared/REFERENCE.md section 1.1) ---------------------------

_LENET = {"training": {"optimizer": "adam", "lr": 1.2e-3, "batch_size": 60, "train_steps": 50_000},
          "pruning": {"strategy": "layerwise", "rate": 0.2, "output_rate": 0.1}}


def _conv_preset(lr: float, steps: int, conv_rate: float) -> dict[str, dict[str, Any]]:
    return {"training": {"optimizer": "adam", "lr": lr, "batch_size": 60, "train_steps": steps},
            "pruning": {"strategy": "layerwise", "rate": 0.2, "conv_rate": conv_rate, "output_rate": 0.1}}


def _lenet(hp: ModelHparams, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return MLP(input_shape, scaled([300, 100], hp.width), num_classes, hp.dropout)


def _mlp(hp: ModelHparams, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    widths = [int(w) for w in hp.name.split("_")[1:]]
    if min(widths) < 1:
        raise TicketlabError(f"model {hp.name!r}: every hidden width of mlp_<w1>_<w2>_.. must be at least 1, "
                             f"got {', '.join(map(str, widths))}")
    return MLP(input_shape, scaled(widths, hp.width), num_classes, hp.dropout)


def _conv(widths: list[int]) -> Builder:
    def build(hp: ModelHparams, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        if len(input_shape) != 3:
            raise TicketlabError(f"{hp.name} needs image inputs [C, H, W], got shape {input_shape}")
        return ConvNet(input_shape, scaled(widths, hp.width), num_classes, fc=tuple(scaled((256, 256), hp.width)),
                       dropout=hp.dropout)
    return build


register_model("lenet_300_100", _lenet, _LENET, help="LeNet-300-100: FC 300, 100 (LTH paper)")
register_model("mlp_<w1>_<w2>_..", _mlp, _LENET, pattern=r"mlp(_\d+)+",
               help="fully connected, hidden widths w1, w2, ..; LeNet's recipe")
register_model("conv2", _conv(CONV_WIDTHS["conv2"]), _conv_preset(2e-4, 20_000, 0.1),
               help="Conv-2: 64, 64, pool; FC 256, 256 (LTH paper)")
register_model("conv4", _conv(CONV_WIDTHS["conv4"]), _conv_preset(3e-4, 25_000, 0.1),
               help="Conv-4: 64, 64, pool, 128, 128, pool; FC 256, 256 (LTH paper)")
register_model("conv6", _conv(CONV_WIDTHS["conv6"]), _conv_preset(3e-4, 30_000, 0.15),
               help="Conv-6: Conv-4 + 256, 256, pool; FC 256, 256 (LTH paper)")

# Deep networks with batch norm, as OpenLTH's (REFERENCE.md 2.1): its recipes as presets (resnet.PRESET,
# vgg.PRESET); the Frankle & Carbin and Renda et al. variants are TOML files in configs/.
register_model("cifar_resnet_<D>[_<W>]", resnet.build, resnet.PRESET, pattern=r"cifar_resnet_\d+(_\d+)?",
               help="CIFAR ResNet-D, D = 6n+2 (20, 56, 110), widths W, 2W, 4W (W = 16); OpenLTH's recipe")
register_model("resnet<20|32|44|56|110>", resnet.build, resnet.PRESET, pattern=r"resnet(20|32|44|56|110)",
               help="= cifar_resnet_<D>")
register_model("cifar_vgg_<11|13|16|19>", vgg.build, vgg.PRESET, pattern=r"cifar_vgg_(11|13|16|19)",
               help="VGG-11/13/16/19 with batch norm; OpenLTH's recipe (fc.weight not pruned)")
register_model("vgg<11|13|16|19>", vgg.build, vgg.PRESET, pattern=r"vgg(11|13|16|19)", help="= cifar_vgg_<D>")
