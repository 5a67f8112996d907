"""Planted tickets (Fischer & Burkholz, "Plant 'n' Seek", ICLR 2022; REFERENCE.md section 6): a small target
network of known sparse structure hidden in a He-initialised MLP, so the ticket and its density are known.

Targets (weights as [inputs, outputs] float64 matrices; ReLU after every layer but the last). "Depth" counts
layers of neurons, input and output included: depth 5 = 3 hidden layers.
  relu    depth-1 layers of a single unit, weight 1, bias 0: y = relu(x)                       (1 -> 1)
  helix   relu(x + 1), then a 30-knot piecewise-linear interpolation of the three helix coordinates on
          [0, 2] (a hidden layer of 30 units, each relu(+-(u - knot))), then identity layers (outputs shifted
          by +1 inside, -1 at the end, so the ReLUs pass them)                             (1 -> 3, depth >= 4)
  circle  (relu(x1), relu(-x1), relu(x2), relu(-x2)) -> (|x1|, |x2|) -> 10-knot interpolations of u^2 on [0, 1]
          for each -> 4 class logits a_j (x1^2 + x2^2) + c_j, a_j = 5, 10, 20, 40, crossing at 0.2, 0.5, 0.7
                                                                                           (2 -> 4, depth 5)
Ground truth (weights only) at depth 5, width 50: relu 4 / 5,100, circle 108 / 5,300, helix 120 / 5,200 (four
of helix's interpolation weights of its linear third coordinate are exactly 0.0 in float64 and are not
part of the ticket; the rest of that column is rounding noise of order 1e-16, as in the reference).

Planting, layer by layer, as Plant 'n' Seek's plant_target: each target unit is written into the unused unit of
the random layer whose (bias, incoming weights from the units already planted) vector is closest in L1 to a
positive multiple c of the target's (sign agreement on the target's non-zero entries required). When none
qualifies, the reference's fallback: the unit of the same index (else the first unused one) and c = |the random
weight on the first planted connection / the target's|, so the planted weights keep the init's scale. The unit
then computes c x the target unit (ReLU is positively homogeneous), and the next layer divides by c.
Everything else keeps its He-scaled draw: weights N(0, 2 / n_in), biases N(0, prod over layers so far of
2 / n_in) (the reference's init_He_scaled).

The output layer (`output`, the model setting planted_output):
  scaled  (default, the reference's) found and scaled like the hidden units, then put back in the target's
          order: the planted subnetwork computes c_j x target_j for a known c_j > 0 per output (about 1e-4
          on circle at width 50), which an evaluation of the ticket divides out (`Planting.output_scale`).
  exact   c = 1: the planted subnetwork computes the target exactly, with output weights up to 1e4 on circle:
          far off the init's scale, so magnitude-based pruning finds them for that reason alone.
Bookkeeping that differs from the reference, by choice (neither changes what a ticket is): a unit already
taken is never a candidate (the reference takes the best unit overall and, when it is taken, the first unused
one with the fallback c), and unit 0 is a candidate like any other (the reference's list of taken units starts
as zeros, so it uses unit 0 only when every other unit is taken).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..config import ModelHparams
from ..errors import TicketlabError
from .mlp import MLP
from .registry import register_model

TASKS = {"circle": (2, 4), "relu": (1, 1), "helix": (1, 3)}  # inputs, outputs
NAME = re.compile(r"planted_(circle|relu|helix)_(\d+)_(\d+)")
CIRCLE_KNOTS, HELIX_KNOTS = 10, 30
OUTPUTS = ("scaled", "exact")  # the output layer's planting rule (model.planted_output)
# The planting's version, in every planted run's identity: a change here that changes networks bumps it.
# 2: the output layer scaled as the reference's, and the reference's fallback for units with no match.
CONSTRUCTION = 2
Layers = list[tuple[np.ndarray, np.ndarray]]  # (weight [in, out], bias [out]) per layer


def _interpolation(knots: np.ndarray, signs: np.ndarray, f) -> Layers:  # noqa: ANN001
    """Two layers computing the piecewise-linear interpolation of f at `knots` (ascending) on [knots[0], ..):
    hidden unit i = relu(signs_i (u - knots_i)) (signs_0 forced +1), output = sum w_i h_i + b."""
    signs = signs.astype(np.float64).copy()
    signs[0] = 1
    w1, b1 = signs.reshape(1, -1), -knots * signs
    points = np.hstack([knots, knots[-1] + (knots[1] - knots[0])])
    values = np.asarray([f(p) for p in points], dtype=np.float64).flatten()
    slopes = (values[1:] - values[:-1]) / (points[1:] - points[:-1])
    bends = slopes[1:] - slopes[:-1]  # the slope change at knots 1..n-1
    # a unit with sign -1 adds bend * relu(knot - u) = bend * (relu(u - knot) - (u - knot)): its linear part is
    # paid back through the first unit (linear on the whole domain) and the bias
    w2 = np.concatenate(([slopes[0] + np.sum(bends[signs[1:] == -1])], bends))
    b2 = np.array([f(knots[0]) - np.sum(np.maximum(knots[0] * w1 + b1, 0) * w2)])
    return [(w1, b1), (w2.reshape(-1, 1), b2)]


def _alternating(n: int) -> np.ndarray:
    signs = np.ones(n)
    signs[1::2] = -1
    return signs


def _helix_coordinate(j: int):  # noqa: ANN202  (float64 scalar arithmetic, as the data's generator)
    def f(x: float) -> float:
        t = 5 * np.pi + 3 * np.pi * (x - 1)  # the interpolation sees u = x + 1
        return (t * np.cos(t), t * np.sin(t), t)[j] / (8 * np.pi)
    return f


def target(task: str, depth: int) -> Layers:
    """The target network of `task` with `depth` layers of neurons (input and output included)."""
    one = (np.ones((1, 1)), np.zeros(1))
    if task == "relu":
        if depth < 2:
            raise TicketlabError(f"planted relu needs depth >= 2, got {depth}")
        return [one] * (depth - 1)
    if task == "helix":
        if depth < 4:
            raise TicketlabError(f"planted helix needs depth >= 4, got {depth}")
        knots, signs = np.linspace(0, 2, HELIX_KNOTS), _alternating(HELIX_KNOTS)
        parts = [_interpolation(knots, signs, _helix_coordinate(j)) for j in range(3)]
        layers = [(np.ones((1, 1)), np.ones(1)), parts[0][0],
                  (np.hstack([p[1][0] for p in parts]), np.concatenate([p[1][1] for p in parts]))]
        if depth > 4:
            layers[-1] = (layers[-1][0], layers[-1][1] + 1)
            layers += [(np.eye(3), np.zeros(3)) for _ in range(depth - 4)]
            layers[-1] = (layers[-1][0], -np.ones(3))
        return layers
    if task == "circle":
        if depth != 5:
            raise TicketlabError(f"planted circle is built for depth 5 (the reference's depth 5 construction), "
                                 f"got {depth}")
        split = np.array([[1.0, -1, 0, 0], [0, 0, 1, -1]])
        merge = np.array([[1.0, 0], [1, 0], [0, 1], [0, 1]])
        signs = _alternating(CIRCLE_KNOTS)
        signs[-1] = 1
        (wa, ba), (wb, bb) = _interpolation(np.linspace(0, 1, CIRCLE_KNOTS), signs, lambda u: u ** 2)
        n = CIRCLE_KNOTS
        w1 = np.zeros((2, 2 * n))
        w1[0, :n], w1[1, n:] = wa.flatten(), wa.flatten()
        w2, b2 = np.zeros((2 * n, 4)), np.zeros(4)
        a_prev, offset = 5.0, 0.0
        for j, bound in enumerate((None, 0.2, 0.5, 0.7)):
            a = 5.0 * 2 ** j
            if bound is not None:  # logit_j = a_j s + c_j crosses logit_{j-1} at s = bound
                offset += (a_prev - a) * bound
            w2[:n, j], w2[n:, j] = a * wb.flatten(), a * wb.flatten()
            b2[j] = offset + 2 * bb[0] * a
            a_prev = a
        return [(split, np.zeros(4)), (merge, np.zeros(2)), (w1, np.concatenate([ba, ba])), (w2, b2)]
    raise TicketlabError(f"unknown planted task {task!r}; choose from: {', '.join(TASKS)}")


def evaluate_layers(layers: Layers, x: np.ndarray) -> np.ndarray:
    """The network `layers` on inputs x [N, in] (float64), ReLU between layers."""
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0)
    return x


def he_scaled(widths: list[int], rng: np.random.Generator) -> Layers:
    """Weights N(0, 2 / n_in); biases N(0, sigma_l^2), sigma_l = prod over layers <= l of sqrt(2 / n_in)."""
    layers, sigma_b = [], 1.0
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        sigma_b *= np.sqrt(2 / n_in)
        layers.append((rng.normal(0, np.sqrt(2 / n_in), size=(n_in, n_out)), rng.normal(0, sigma_b, size=n_out)))
    return layers


class Planting(NamedTuple):
    layers: Layers  # the planted network
    masks: list[np.ndarray]  # per layer, the boolean mask of planted weights [in, out]
    target: Layers
    output_scale: np.ndarray  # c_j per output: the planted subnetwork computes output_scale * target


def plant(goal: Layers, net: Layers, output: str = "scaled") -> tuple[Layers, list[np.ndarray], np.ndarray]:
    """`goal` written into `net` (same number of layers, each at least as wide; the output layer exactly as
    wide): the planted network, per layer the boolean mask of planted weights [in, out], and the output scale."""
    if output not in OUTPUTS:
        raise TicketlabError(f"unknown planted output rule {output!r}; choose from: {', '.join(OUTPUTS)}")
    if len(goal) != len(net):
        raise TicketlabError(f"the target has {len(goal)} layers, the network {len(net)}")
    planted, masks = [], []
    units, scale = np.arange(goal[0][0].shape[0]), np.ones(goal[0][0].shape[0])
    for layer, ((wt, bt), (w, b)) in enumerate(zip(goal, net)):
        if wt.shape[1] > w.shape[1]:
            raise TicketlabError(f"layer {layer + 1} of the target has {wt.shape[1]} units, the network only "
                                 f"{w.shape[1]}: use a larger width")
        w, b, mask = w.copy(), b.copy(), np.zeros(w.shape, dtype=bool)
        last = layer == len(goal) - 1
        chosen, scales = [], []
        for j in range(wt.shape[1]):
            rows = np.flatnonzero(wt[:, j])
            v = np.concatenate(([bt[j]], wt[rows, j] / scale[rows]))
            if last and output == "exact":
                unit, c = j, 1.0
            else:
                unit, c = _closest(v, np.vstack([b, w[units[rows], :]]), chosen, j)
            w[units[rows], unit] = c * v[1:]
            b[unit] = c * v[0]
            mask[units[rows], unit] = True
            chosen.append(unit)
            scales.append(c)
        if last:  # the outputs back in the target's order (the reference's weightInit[-1][:, ind])
            w, b, mask = w[:, chosen], b[chosen], mask[:, chosen]
        planted.append((w, b))
        masks.append(mask)
        units, scale = np.array(chosen), np.array(scales)
    return planted, masks, scale


def _closest(v: np.ndarray, candidates: np.ndarray, taken: list[int], own: int) -> tuple[int, float]:
    """The unused column u of `candidates` ([1 + rows, units]) nearest in L1 to c v with c > 0 and the signs of
    v's non-zero entries. None qualifies: the reference's fallback, unit `own` (the target unit's index) if
    unused, else the first unused one, and c = |candidates[1, u] / v[1]| (the first planted connection's random
    weight over the target's), 1 where that is not a positive number."""
    best = None
    nonzero = v != 0
    for u in range(candidates.shape[1]):
        if u in taken:
            continue
        cand = candidates[:, u]
        c = float(v @ cand / (v @ v))
        if c <= 0 or not np.all(np.sign(cand[nonzero]) == np.sign(v[nonzero])):
            continue
        distance = float(np.abs(cand - c * v).sum())
        if best is None or distance < best[0]:
            best = (distance, u, c)
    if best is not None:
        return best[1], best[2]
    u = own if own < candidates.shape[1] and own not in taken else \
        next(u for u in range(candidates.shape[1]) if u not in taken)
    c = abs(float(candidates[1, u] / v[1])) if len(v) > 1 and v[1] != 0 else 0.0
    return u, c if np.isfinite(c) and c > 0 else 1.0


def parse(name: str) -> tuple[str, int, int]:
    m = NAME.fullmatch(name)
    if not m:
        raise TicketlabError(f"{name!r} is not a planted model name (planted_<circle|relu|helix>_<depth>_<width>)")
    return m.group(1), int(m.group(2)), int(m.group(3))


def construct(task: str, depth: int, width: int, seed: int, output: str = "scaled") -> Planting:
    """The planted network of one seed: He-scaled draw from default_rng(seed), then the target planted in it
    (`output`: the output layer's rule, see the module's docstring)."""
    if not (2 <= depth <= 100 and 1 <= width <= 10_000):  # beyond: a typo, not an experiment
        raise TicketlabError(f"planted networks need depth in [2, 100] and width in [1, 10000], got depth {depth}, "
                             f"width {width}")
    inputs, outputs = TASKS[task]
    goal = target(task, depth)
    net = he_scaled([inputs] + [width] * (depth - 2) + [outputs], np.random.default_rng(seed))
    planted, masks, scale = plant(goal, net, output)
    return Planting(planted, masks, goal, scale)


def _build(hp: ModelHparams, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    task, depth, width = parse(hp.name)
    if hp.width != 1.0 or hp.dropout != 0.0:  # the planted network is fixed by its name and seed
        raise TicketlabError(f"{hp.name}: model.width and model.dropout do not apply to a planted network (its "
                             f"width is in its name: planted_<task>_<depth>_<width>)")
    inputs, outputs = TASKS[task]
    if tuple(input_shape) != (inputs,) or num_classes != outputs:
        raise TicketlabError(f"{hp.name} takes {inputs} inputs and has {outputs} outputs (the {task} data set), "
                             f"got inputs {tuple(input_shape)} and {num_classes} outputs")
    target(task, depth)  # says an unsupported depth here, when the config is checked
    if width < max(w.shape[1] for w, _ in target(task, depth)[:-1]):
        raise TicketlabError(f"{hp.name}: width {width} is narrower than the target's widest layer")
    model = MLP((inputs,), [width] * (depth - 2), outputs)
    model.construction = CONSTRUCTION  # in the run's identity (identity.model_signature): a new planting, new folders
    return model


def _draw(model: nn.Module, hp: ModelHparams, seed: int) -> None:
    """The planted network of `seed` (hp.init is not used: the weights are a construction)."""
    layers = construct(*parse(hp.name), seed, hp.planted_output).layers
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for module, (w, b) in zip(linears, layers):
            module.weight.copy_(torch.from_numpy(w.T))
            module.bias.copy_(torch.from_numpy(b))


def planted_mask(name: str, seed: int, output: str = "scaled") -> dict[str, torch.Tensor]:
    """The planted weights of model `name` built with init seed `seed`, by prunable weight name."""
    masks = construct(*parse(name), seed, output).masks
    depth = len(masks)
    names = [f"hidden.{i}.weight" for i in range(depth - 1)] + ["out.weight"]
    return {n: torch.from_numpy(m.T.copy()) for n, m in zip(names, masks)}


def recovery(kept: dict[str, torch.Tensor], planted: dict[str, torch.Tensor]) -> dict[str, float]:
    """How much of the planted mask a kept mask recovers: precision = |kept & planted| / |kept|, recall =
    |kept & planted| / |planted| (over every prunable weight; NaN when a denominator is 0)."""
    both = sum(int((kept[k].bool() & planted[k].bool()).sum()) for k in planted)
    n_kept = sum(int(kept[k].bool().sum()) for k in planted)
    n_planted = sum(int(planted[k].bool().sum()) for k in planted)
    return {"precision": both / n_kept if n_kept else float("nan"),
            "recall": both / n_planted if n_planted else float("nan"), "kept": n_kept, "planted": n_planted,
            "found": both}


_PRESET = {"dataset": {"val_size": 900},  # 10% of the 9,000 training examples
           "training": {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "train_steps": "10ep", "eval_every": 250},
           "pruning": {"strategy": "global", "rate": 0.2}}
for _task, _loss in (("circle", "cross_entropy"), ("relu", "mse"), ("helix", "mse")):
    register_model(f"planted_{_task}_<depth>_<width>", _build,
                   {**_PRESET, "dataset": {**_PRESET["dataset"], "name": _task},
                    "training": {**_PRESET["training"], "loss": _loss}},
                   pattern=rf"planted_{_task}_\d+_\d+", draw=_draw,
                   help=f"the {_task} target planted in a He-initialised MLP (Plant 'n' Seek); weights drawn "
                        "by planting, not by --init")
