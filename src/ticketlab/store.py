"""The run store: content-addressed folders, atomic writes, and the 'done' rule for reuse.

Layout (one folder per experiment, one per replicate, one per level or branch):

    <root>/<kind>_<hash>/config.json            the canonical configuration (seed excluded)
    <root>/<kind>_<hash>/seed_<s>/rewind.safetensors   weights at the rewind step of the dense run
    <root>/<kind>_<hash>/seed_<s>/level_<L>/{mask,init,final}.safetensors, metrics.json, summary.json

Every file is written to a temporary name and renamed into place, so a killed run leaves either the old
file or the new one, never half of one. A job is finished when its summary.json exists: it is written last.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .config import RunConfig

DEFAULT_ROOT = Path(os.environ.get("TICKETLAB_RUNS", "runs"))


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_weights(path: Path, model_or_state: nn.Module | dict[str, torch.Tensor]) -> None:
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    atomic_write(path, lambda p: save_file(tensors, str(p)))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda p: torch.save(state, p))


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def experiment_dir(config: RunConfig, root: Path | str = DEFAULT_ROOT) -> Path:
    return Path(root) / f"{config.kind}_{config.hash()}"


def replicate_dir(config: RunConfig, root: Path | str = DEFAULT_ROOT) -> Path:
    return experiment_dir(config, root) / f"seed_{config.seed}"


def level_dir(run_dir: Path, level: int) -> Path:
    return run_dir / f"level_{level}"


def is_done(job_dir: Path) -> bool:
    return (job_dir / "summary.json").is_file()


def record_config(config: RunConfig, root: Path | str, provenance: Callable[[], dict[str, Any]]) -> Path:
    """Write the experiment's config.json (once; later runs find it by hash) and return the replicate dir.
    `provenance` (git revision, versions) is only asked for when the file is written."""
    exp = experiment_dir(config, root)
    config_file = exp / "config.json"
    if not config_file.is_file():
        body = config.to_dict()
        body.pop("seed")
        write_json(config_file, {"hash": config.hash(), "config": body, "provenance": provenance()})
    return replicate_dir(config, root)
