"""MNIST and Fashion-MNIST: IDX files (plain or .gz) from a folder, the Debian package, or the official source."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ..errors import TicketlabError
from .download import CACHE, fetch

SHAPE, CLASSES = (28, 28), 10  # MNIST and Fashion-MNIST alike
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

SOURCES = {
    "fashion_mnist": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "md5": {"train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"},
        "system": [Path("/usr/share/datasets/fashion-mnist")],  # Debian: dataset-fashion-mnist
        "hint": "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
    },
    "mnist": {
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
        "md5": {"train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c"},
        "system": [],
        "hint": "download the four MNIST IDX files on a machine that is online",
    },
}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (unsigned bytes) as an array; gzip is detected by its magic bytes."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise TicketlabError(f"corrupt gzip file {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise TicketlabError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise TicketlabError(f"{path}: damaged IDX header ({ndim} dimensions, {len(raw)} bytes in all)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(dims):  # Python integers: a forged header cannot overflow
        raise TicketlabError(f"{path}: header says {dims} but holds {body.size} bytes")
    return body.reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def locate(name: str, data_dir: Path | None, download: bool) -> list[Path]:
    source = SOURCES[name]
    folders = [data_dir] if data_dir is not None else [*source["system"], CACHE / name]
    for folder in folders:
        found = [_find(folder, stem) for stem in FILES]
        if all(found):
            return found  # type: ignore[return-value]
    if data_dir is None and download:
        dest = CACHE / name
        ok = all(_find(dest, stem) or fetch([m + stem + ".gz" for m in source["mirrors"]], dest / (stem + ".gz"),
                                            source["md5"][stem]) for stem in FILES)
        if ok:
            return [_find(dest, stem) for stem in FILES]  # type: ignore[misc]
    where = str(data_dir) if data_dir is not None else ", ".join(str(f) for f in folders)
    raise TicketlabError(f"{name}: IDX files not found in {where} and could not be downloaded; "
                         f"{source['hint']}, or pass --data-dir DIR holding {', '.join(f + '.gz' for f in FILES)}")


def load(name: str, data_dir: Path | None, download: bool) -> tuple[np.ndarray, ...]:
    """(train images [N,1,28,28] uint8, train labels, test images, test labels)."""
    paths = locate(name, data_dir, download)
    train_x, train_y, test_x, test_y = arrays = [read_idx(p) for p in paths]
    for path, a, ndim, what in zip(paths, arrays, (3, 1, 3, 1), ("images [N, 28, 28]", "labels [N]") * 2):
        if a.ndim != ndim or (ndim == 3 and a.shape[1:] != SHAPE):
            raise TicketlabError(f"{name}: {path} holds an array of shape {a.shape}, expected {what}")
    for images, labels, x, y in ((paths[0], paths[1], train_x, train_y), (paths[2], paths[3], test_x, test_y)):
        if len(x) != len(y):
            raise TicketlabError(f"{name}: {images} holds {len(x)} images but {labels} {len(y)} labels")
        if len(y) and y.max() >= CLASSES:
            raise TicketlabError(f"{name}: {labels} holds label {int(y.max())}, outside [0, {CLASSES}) "
                                 f"({name} has {CLASSES} classes)")
    return train_x[:, None], train_y, test_x[:, None], test_y
