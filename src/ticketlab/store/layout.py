"""Where everything lives in a run store: the root, the file names, every folder name and the links.

Every folder name comes from what determines its contents (identity.py names the hashes; this module only
joins them into paths), so nothing here may change without renaming stored runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import TicketlabError

DEFAULT_ROOT = Path(os.environ.get("TICKETLAB_RUNS", "runs"))

CONFIG = "config.json"  # an experiment's identity, settings and provenance
MASK, INIT, FINAL = "mask.safetensors", "init.safetensors", "final.safetensors"
METRICS, SUMMARY, CHECKPOINT = "metrics.json", "summary.json", "checkpoint.pt"
STABILITY = "stability.json"
BIAS_MASK = "bias_mask.safetensors"  # a strong ticket's masks over biases (edge-popup --bias-mask)


# ---- Folders -----------------------------------------------------------------------------------------------


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


def density_dir(replicate: Path, density: float) -> Path:
    return replicate / f"density_{density:g}"


def check_dir(job: Path, check: str) -> Path:
    return job / f"check_{check}"


def seed_of(folder: Path) -> int | None:
    """The seed of a `seed_<s>` folder; None for anything else."""
    tail = folder.name[5:]
    return int(tail) if folder.name.startswith("seed_") and tail.isdigit() and folder.is_dir() else None


def seed_dirs(experiment: Path) -> list[Path]:
    return sorted((d for d in experiment.glob("seed_*") if seed_of(d) is not None), key=seed_of)


# ---- What is part of a store -------------------------------------------------------------------------------


def is_experiment(folder: Path) -> bool:
    return (folder / CONFIG).is_file()


def _is_experiment_folder(folder: Path) -> bool:
    """An experiment of a run store: named <kind>_<hex hash> and holding config.json (a project folder that
    merely holds some config.json is not one)."""
    kind, _, digest = folder.name.partition("_")
    return kind.isalpha() and len(digest) >= 8 and all(c in "0123456789abcdef" for c in digest) \
        and is_experiment(folder)


def store_part(path: Path | str) -> Path | None:
    """The part of a run store that writing `path` (a file or folder, existing or not) would change: an
    experiment folder it is in or below (through links too), or a store root (a folder holding experiment
    folders) that it is or lies directly in. None when writing there touches no stored result. Exports and
    reports refuse such a path: the store is read-only to them."""
    p = Path(os.path.abspath(path))
    for candidate in dict.fromkeys((p, Path(os.path.realpath(p)))):
        for folder in (candidate, *candidate.parents):
            if _is_experiment_folder(folder):
                return folder
        for folder in (candidate, candidate.parent):
            try:
                if folder.is_dir() and any(_is_experiment_folder(c) for c in folder.iterdir()):
                    return folder
            except OSError:  # unreadable: not a store we can see
                continue
    return None


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
