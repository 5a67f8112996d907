"""CIFAR-10 from the `cifar-10-batches-py` pickles, read by an unpickler that builds only arrays and builtins."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

from ..errors import TicketlabError
from .download import CACHE, fetch

URLS = ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
MD5 = "c58f30108f718f92721af3b95e74349a"
TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
TEST = ["test_batch"]
CLASSES = 10

# What a CIFAR batch file may reconstruct: numpy arrays and their dtypes. Anything else is refused,
# so a tampered file cannot run code when it is read.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("builtins", "bytes"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _SafeUnpickler(f, encoding="bytes").load()
        data = batch.get(b"data", batch.get("data"))
        labels = batch.get(b"labels", batch.get("labels"))
        x = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(labels, dtype=np.int64)
    except Exception as e:  # noqa: BLE001  (an untrusted file: whatever fails in reading it, it is unreadable)
        reason = " ".join(str(e).split()) or type(e).__name__
        raise TicketlabError(f"cannot read CIFAR-10 batch {path}: {reason}") from None
    if y.ndim != 1 or len(x) != len(y):
        raise TicketlabError(f"CIFAR-10 batch {path}: {len(x)} images but labels of shape {y.shape}")
    bad = y[(y < 0) | (y >= CLASSES)]
    if bad.size:
        raise TicketlabError(f"CIFAR-10 batch {path}: label {int(bad[0])} is outside [0, {CLASSES}) "
                             f"({bad.size} such label(s))")
    return x, y


def _folder(data_dir: Path | None, download: bool) -> Path:
    candidates = [data_dir, data_dir / "cifar-10-batches-py"] if data_dir else [CACHE / "cifar-10-batches-py"]
    for c in candidates:
        if all((c / n).is_file() for n in TRAIN + TEST):
            return c
    if data_dir is None and download:
        archive = CACHE / "cifar-10-python.tar.gz"
        if archive.is_file() or fetch(URLS, archive, MD5, timeout=120):
            with tarfile.open(archive) as tar:
                tar.extractall(CACHE, filter="data")
            return CACHE / "cifar-10-batches-py"
    where = data_dir or CACHE
    raise TicketlabError(f"cifar10: cifar-10-batches-py not found in {where} and could not be downloaded; "
                         f"pass --data-dir DIR holding cifar-10-batches-py (from cifar-10-python.tar.gz)")


def load(data_dir: Path | None, download: bool) -> tuple[np.ndarray, ...]:
    folder = _folder(data_dir, download)
    train = [_read_batch(folder / n) for n in TRAIN]
    test_x, test_y = _read_batch(folder / TEST[0])
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), test_x, test_y)
