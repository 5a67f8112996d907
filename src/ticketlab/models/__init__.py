"""Models by name: the registry (name -> builder and paper preset) and the built-in networks.

See `ticketlab.models.registry` for registering your own model in one call.
"""

from __future__ import annotations

from .convnet import CONV_WIDTHS, ConvNet
from .init import INITS, initialize
from .mlp import MLP
from .registry import (MODEL_NAMES, ModelEntry, build_model, construct, find_model, model_entry, preset_for,
                       register_model)
from . import planted  # noqa: F401,E402  (registers planted_<task>_<depth>_<width>)

__all__ = ["build_model", "construct", "register_model", "model_entry", "find_model", "preset_for", "ModelEntry",
           "MODEL_NAMES", "initialize", "INITS", "MLP", "ConvNet", "CONV_WIDTHS"]
