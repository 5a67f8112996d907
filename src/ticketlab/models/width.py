"""The width multiplier of every built-in model (ModelHparams.width): one rounding rule for all of them."""

from __future__ import annotations

import math


def scaled(widths: list[int] | tuple[int, ...], width: float) -> list[int]:
    """Hidden widths times the model's width multiplier, rounded half up, at least 1 (width sweeps)."""
    return [max(1, math.floor(w * width + 0.5)) for w in widths]
