"""The random source network the construction prunes, drawn as the theorem assumes.

Pensia et al. (2020) assume every weight i.i.d. uniform on [-1, 1]; that is what is drawn here, in float64,
from NumPy's default generator seeded by seeds.derive_seed(seed, "existence-source", layer, part), so each
layer's draw is one recorded stream. A target of L layers d_0 -> d_1 -> ... -> d_L gets a source of 2L layers:
block l is

    A_l: d_{l-1} -> (d_{l-1} + c) n    (ReLU after it)
    B_l: (d_{l-1} + c) n -> d_l        (ReLU after it, except after the last block)

with n the width factor (intermediate neurons per target input) and c = 1 when the target has a non-zero bias:
n more intermediate neurons whose incoming weights are all pruned and whose own bias a_j ~ U[-1, 1] is kept,
so they output the constant relu(a_j) (Fischer & Burkholz 2022's use of biases, in the simplest form: a
target bias is a weight from a constant input). Without target biases the source has none (all zero), as in
Pensia et al.
"""

from __future__ import annotations

import numpy as np

from ..seeds import derive_seed
from .targets import Layer


def draw_uniform(shape: tuple[int, ...], seed: int, layer: int, part: str) -> np.ndarray:
    rng = np.random.default_rng(derive_seed(seed, "existence-source", layer, part))
    return rng.uniform(-1.0, 1.0, size=shape)


def draw_source(target: list[Layer], width_factor: int, seed: int, biased: bool) -> list[Layer]:
    """The dense random source network for `target` (2 layers per target layer, see the module's docstring)."""
    source: list[Layer] = []
    c = 1 if biased else 0
    for l, (w, _) in enumerate(target):
        d_out, d_in = w.shape
        hidden = (d_in + c) * width_factor
        a = draw_uniform((hidden, d_in), seed, l, "A")
        b = draw_uniform((d_out, hidden), seed, l, "B")
        zeros_a, zeros_b = np.zeros(hidden), np.zeros(d_out)
        source.append(Layer(a, draw_uniform((hidden,), seed, l, "A.bias") if biased else zeros_a))
        source.append(Layer(b, draw_uniform((d_out,), seed, l, "B.bias") if biased else zeros_b))
    return source
