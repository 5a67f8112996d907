"""Shared fixtures: the generated data set, a small fast config, and running the CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ticketlab import build_config, load_dataset

torch.set_num_threads(1)


def small_config(**sections):
    """A config that trains in about a second: mlp_32_16 on the synthetic set."""
    base = {"kind": "lottery", "seed": 0,
            "dataset": {"name": "synthetic", "val_size": 500},
            "model": {"name": "mlp_32_16"},
            "training": {"train_steps": 200, "eval_every": 50, "batch_size": 32, "lr": 3e-3},
            "lottery": {"levels": 2}}
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return build_config(base)


@pytest.fixture(scope="session")
def synthetic():
    return load_dataset(small_config().dataset)


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "TICKETLAB_DATA": "/nonexistent-ticketlab-cache", **(env or {})}
    return subprocess.run([sys.executable, "-m", "ticketlab.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=Path(__file__).parent)
