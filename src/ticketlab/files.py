"""Files written whole or not at all, and their content hashes: the lowest layer of file I/O.

`atomic_write` writes to a temporary file beside the target (`.<name>.<random>.tmp`), fsyncs it, renames it
over the target and fsyncs the folder, so after a kill or a power loss the target is the old file or the
new one, never part of one. A killed writer can leave its temporary file behind: `remove_stale_tmp` deletes
those older than this process (a younger one may belong to a writer that is still running).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

TMP_GLOB = ".*.tmp"


def _process_start() -> float:
    """When this process started (Linux: from /proc, rounded down), else when this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks since boot
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return min(boot + ticks / os.sysconf("SC_CLK_TCK"), time.time())
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


PROCESS_START = _process_start()


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, fsync it, rename it over `path`, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_safetensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """A safetensors file, atomically. Serialised in memory first, then written as bytes: a failed write (a
    full or read-only disk) is then an ordinary OSError naming the file, where safetensors' own writer
    would raise its own error type."""
    from safetensors.torch import save  # here, not at import: the lowest layer stays free of torch

    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    atomic_write(path, lambda p: p.write_bytes(data))


def is_tmp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def remove_stale_tmp(folder: Path, before: float | None = None) -> list[Path]:
    """Delete the temporary files of killed writers in `folder` (not below it): those last modified before
    `before` (default: this process's start). Returns what was deleted."""
    before = PROCESS_START if before is None else before
    removed = []
    try:
        candidates = list(Path(folder).glob(TMP_GLOB))
    except OSError:
        return removed
    for p in candidates:
        try:
            if p.is_file() and not p.is_symlink() and p.stat().st_mtime < before:
                p.unlink()
                removed.append(p)
        except FileNotFoundError:  # its writer renamed or removed it just now
            pass
    return removed


def file_digest(path: Path) -> str:
    """blake2b-256 of a file's bytes, in hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=32)).hexdigest()
