"""A small generated image task for fast tests: 10 classes of noisy smooth prototypes, 1x16x16.

Always the same data (fixed generator), learnable in a few hundred steps but not trivially separable.
"""

from __future__ import annotations

import numpy as np

SHAPE = (1, 16, 16)
CLASSES = 10
TRAIN, TEST = 3000, 1000


def load() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(1234)
    # Smooth prototypes: low-frequency patterns, upsampled from 4x4 noise.
    coarse = rng.normal(size=(CLASSES, 1, 4, 4))
    prototypes = coarse.repeat(4, axis=2).repeat(4, axis=3)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, CLASSES, size=n)
        x = prototypes[y] + 3.0 * rng.normal(size=(n, *SHAPE))
        return x.astype(np.float32), y.astype(np.int64)

    train_x, train_y = sample(TRAIN)
    test_x, test_y = sample(TEST)
    return train_x, train_y, test_x, test_y
