"""The run store: it owns every path, writes every file atomically, and says when a job is done.

Layout (every folder name comes from what determines its contents; see identity.py):

    <root>/train_<h>/config.json                          a dense experiment: data, model, training, numerics
    <root>/train_<h>/seed_<s>/level_0/                    the dense run of replicate s (shared, see below)
    <root>/train_<h>/seed_<s>/prefix_k<k>/                the dense run stopped at step k (theta_k, rewinding)
    <root>/lottery_<h>/config.json                        an IMP experiment: the dense one + pruning + retraining
    <root>/lottery_<h>/seed_<s>/level_0 -> ../../train_<h'>/seed_<s>/level_0   (a relative link)
    <root>/lottery_<h>/seed_<s>/level_<L>/                a pruned level: mask, init, final, metrics, summary
    .../level_<L>/control_<variant>_<i>/                  a control branched off the level
    .../level_<L>/stability_k<k>/copy_<c>/                the two copies of a stability analysis from step k
    .../level_<L>/stability_k<k>/analysis_<h>/stability.json   one analysis of those copies (settings in h)
    <root>/ticket_<h>/seed_<s>/level_<L>/                 a ticket file trained again (--ticket)

Every experiment that starts from the same dense run links its level 0 to that one folder, so the dense
network is trained once, whatever the pruning. Every file is written to a temporary name and renamed into
place: a killed run leaves the old file or the new one, never half of one. A job is finished when its
summary.json exists; it is written last.
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

from .errors import TicketlabError

DEFAULT_ROOT = Path(os.environ.get("TICKETLAB_RUNS", "runs"))

CONFIG = "config.json"  # an experiment's identity, settings and provenance
MASK, INIT, FINAL = "mask.safetensors", "init.safetensors", "final.safetensors"
METRICS, SUMMARY, CHECKPOINT = "metrics.json", "summary.json", "checkpoint.pt"
STABILITY = "stability.json"


# ---- Paths -------------------------------------------------------------------------------------------------


def experiment_dir(root: Path | str, kind: str, identity_hash: str) -> Path:
    return Path(root) / f"{kind}_{identity_hash}"


def seed_dir(experiment: Path, seed: int) -> Path:
    return experiment / f"seed_{seed}"


def level_dir(replicate: Path, level: int) -> Path:
    return replicate / f"level_{level}"


def control_dir(level: Path, variant: str, index: int) -> Path:
    return level / f"control_{variant}_{index}"


def prefix_dir(dense_replicate: Path, step: int) -> Path:
    return dense_replicate / f"prefix_k{step}"


def stability_dir(level: Path, step: int) -> Path:
    return level / f"stability_k{step}"


def copy_dir(stability: Path, copy: int) -> Path:
    return stability / f"copy_{copy}"


def analysis_dir(stability: Path, settings_hash: str) -> Path:
    return stability / f"analysis_{settings_hash}"


def seed_of(folder: Path) -> int | None:
    """The seed of a `seed_<s>` folder; None for anything else."""
    tail = folder.name[5:]
    return int(tail) if folder.name.startswith("seed_") and tail.isdigit() and folder.is_dir() else None


def seed_dirs(experiment: Path) -> list[Path]:
    return sorted((d for d in experiment.glob("seed_*") if seed_of(d) is not None), key=seed_of)


def finished_levels(replicate: Path) -> list[int]:
    """The numbers of a replicate's finished levels."""
    names = (p.name.removeprefix("level_") for p in replicate.glob("level_*") if is_done(p))
    return sorted(int(n) for n in names if n.isdigit())


def job_summaries(replicate: Path) -> list[Path]:
    """summary.json of every finished level and control of a replicate (level 0 through its link)."""
    return sorted(replicate.glob(f"level_*/{SUMMARY}")) + sorted(replicate.glob(f"level_*/control_*/{SUMMARY}"))


def stability_files(experiment: Path) -> list[Path]:
    return sorted(experiment.glob(f"seed_*/level_*/stability_k*/analysis_*/{STABILITY}"))


def is_experiment(folder: Path) -> bool:
    return (folder / CONFIG).is_file()


def link(path: Path, target: Path) -> None:
    """Make `path` a relative link to the folder `target` (which may not exist yet), replacing a stale link."""
    rel = os.path.relpath(target, path.parent)
    if path.is_symlink():
        if os.readlink(path) == rel:
            return
        path.unlink()
    elif path.exists():
        raise TicketlabError(f"{path} exists and is not a link to {target}: the store is damaged; move it away")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(rel, path, target_is_directory=True)
    except FileExistsError:  # another process made the same link just now
        if os.readlink(path) != rel:
            raise


# ---- Files -------------------------------------------------------------------------------------------------


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


def load_weights(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in load_file(str(path)).items()}


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda p: torch.save(state, p))


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def is_done(job: Path) -> bool:
    return (job / SUMMARY).is_file()


def read_summary(job: Path) -> dict[str, Any]:
    return read_json(job / SUMMARY)


def record_experiment(experiment: Path, body: dict[str, Any], provenance: Callable[[], dict[str, Any]]) -> None:
    """Write an experiment's config.json once (later runs find it by its hash). `provenance` (git revision,
    versions) is only asked for when the file is written."""
    config_file = experiment / CONFIG
    if not config_file.is_file():
        write_json(config_file, {**body, "provenance": provenance()})
