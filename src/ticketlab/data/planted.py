"""The planted-ticket tasks of Fischer & Burkholz ("Plant 'n' Seek", ICLR 2022; REFERENCE.md section 6).

  circle  x ~ U[-1, 1]^2, 4 classes by s = x1^2 + x2^2 with boundaries at s = 0.2, 0.5, 0.7 (the class is the
          argmax of the four lines 0.1 s, 0.2 s - 0.02, 0.4 s - 0.12, 0.8 s - 0.4, which cross there); with
          probability `NOISE` a label is replaced by the runner-up class
  relu    x ~ U[-1, 1], y = relu(x) + N(0, NOISE^2)                           (regression, 1 -> 1)
  helix   x ~ U[-1, 1], t = 5 pi + 3 pi x, y = (t cos t, t sin t, t) / (8 pi) + N(0, NOISE^2 I)   (1 -> 3)

10,000 examples each, as in the reference, drawn once from a fixed seed (always the same data); the last
10% are the held-out test set. Regression targets are float arrays [N, outputs].
"""

from __future__ import annotations

import numpy as np

N, TEST = 10_000, 1_000
TRAIN = N - TEST
NOISE = 0.01
BOUNDS = (0.2, 0.5, 0.7)  # of x1^2 + x2^2
SEEDS = {"circle": 20221, "relu": 20222, "helix": 20223}
SHAPES = {"circle": (2,), "relu": (1,), "helix": (1,)}
OUTPUTS = {"circle": 4, "relu": 1, "helix": 3}  # classes (circle) or regression outputs


def circle_logits(s: np.ndarray) -> np.ndarray:
    """The four lines whose argmax is the class of s = x1^2 + x2^2 (boundaries 0.2, 0.5, 0.7)."""
    return np.stack([0.1 * s, 0.2 * s - 0.02, 0.4 * s - 0.12, 0.8 * s - 0.4], axis=1)


def helix(x: np.ndarray) -> np.ndarray:
    t = 5 * np.pi + 3 * np.pi * x
    return np.stack([t * np.cos(t), t * np.sin(t), t], axis=1) / (8 * np.pi)


def generate(task: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEEDS[task])
    x = rng.uniform(-1.0, 1.0, size=(N, *SHAPES[task]))
    if task == "circle":
        order = np.argsort(circle_logits((x ** 2).sum(1)), axis=1)
        flip = rng.uniform(size=N) < NOISE
        y = np.where(flip, order[:, -2], order[:, -1]).astype(np.int64)
    elif task == "relu":
        y = (np.maximum(x[:, :1], 0) + rng.normal(0, NOISE, size=(N, 1)))
    else:
        y = helix(x[:, 0]) + rng.normal(0, NOISE, size=(N, 3))
    x = x.astype(np.float32)
    y = y if task == "circle" else y.astype(np.float32)
    return x, y


def load(task: str) -> tuple[np.ndarray, ...]:
    x, y = generate(task)
    return x[:TRAIN], y[:TRAIN], x[TRAIN:], y[TRAIN:]
