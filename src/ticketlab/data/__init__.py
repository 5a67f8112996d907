"""Data sets as whole tensors in memory, a seeded validation split, and a seeded batch order.

Registry: name -> loader returning (train_x, train_y, test_x, test_y) as NumPy arrays. Images are
normalised once here with the data set's mean and std; training then only indexes tensors.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import DatasetHparams
from ..errors import TicketlabError
from . import cifar, idx, planted, synthetic
from . import augment as augment_
from . import noise


@dataclass(frozen=True)
class DatasetInfo:
    load: Callable[[Path | None, bool], tuple[np.ndarray, ...]]
    train_size: int  # before the validation split
    mean: tuple[float, ...] | None  # per channel, on the [0, 1] scale; None: already standardised
    std: tuple[float, ...] | None
    input_shape: tuple[int, ...]  # one example, [C, H, W]
    num_classes: int  # for a regression data set: the number of outputs
    regression: bool = False  # float targets [N, num_classes] (planted relu, helix): trained with loss mse


DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(lambda d, dl: idx.load("fashion_mnist", d, dl), 60_000, (0.2860,), (0.3530,),
                                 (1, 28, 28), 10),
    "mnist": DatasetInfo(lambda d, dl: idx.load("mnist", d, dl), 60_000, (0.1307,), (0.3081,), (1, 28, 28), 10),
    "cifar10": DatasetInfo(cifar.load, 50_000, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), (3, 32, 32), 10),
    "synthetic": DatasetInfo(lambda d, dl: synthetic.load(), synthetic.TRAIN, None, None, synthetic.SHAPE,
                             synthetic.CLASSES),
    "circle": DatasetInfo(lambda d, dl: planted.load("circle"), planted.TRAIN, None, None, (2,), 4),
    "relu": DatasetInfo(lambda d, dl: planted.load("relu"), planted.TRAIN, None, None, (1,), 1, regression=True),
    "helix": DatasetInfo(lambda d, dl: planted.load("helix"), planted.TRAIN, None, None, (1,), 3, regression=True),
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise TicketlabError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


@dataclass
class DataSplits:
    """Float inputs [N, C, H, W] and int64 labels, for train (minus validation), validation and test."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    # What the data are, for the identity of every result trained on them: a hash of the loaded files'
    # contents and the split (load_dataset), or of these tensors (data made another way). Same data, same
    # fingerprint; other files under the same name, another one.
    _fingerprint: str | None = None
    train_y_clean: torch.Tensor | None = None  # the training labels before label noise (None: no noise; noise.py)
    # Applied by the training loop to each training batch (never to evaluation): augment(x, data seed, step).
    augment: augment_.Augment | None = None

    SPLITS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = _fingerprint(*(getattr(self, k).cpu().numpy() for k in self.SPLITS))
        return self._fingerprint

    def to(self, device: torch.device | str) -> "DataSplits":
        moved = {k: getattr(self, k).to(device) for k in self.SPLITS}
        return DataSplits(**moved, num_classes=self.num_classes, _fingerprint=self._fingerprint,
                          train_y_clean=None if self.train_y_clean is None else self.train_y_clean.to(device),
                          augment=self.augment)


def _fingerprint(*arrays: np.ndarray, extra: str = "") -> str:
    """blake2b over the arrays' shapes, dtypes and bytes (~1 GB/s: a fraction of a second for MNIST)."""
    h = hashlib.blake2b(extra.encode(), digest_size=8)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.data)
    return h.hexdigest()


def load_dataset(hp: DatasetHparams, data_dir: str | Path | None = None, download: bool = True) -> DataSplits:
    info = dataset_info(hp.name)
    train_x, train_y, test_x, test_y = info.load(Path(data_dir) if data_dir else None, download)
    check_arrays(hp.name, info, train_x, train_y, test_x, test_y)
    if not 0 <= hp.val_size < len(train_x):
        raise TicketlabError(f"dataset.val_size must be in [0, {len(train_x)}) for {hp.name}, got {hp.val_size}")
    fingerprint = _fingerprint(train_x, train_y, test_x, test_y, extra=f"{hp.name}/{hp.val_size}/{hp.split_seed}"
                               + noise.describe(hp))  # subsample and label noise are other data
    train_x, test_x = _normalise(train_x, info), _normalise(test_x, info)
    label_type = np.float32 if info.regression else np.int64  # regression targets stay floats
    train_y, test_y = (torch.from_numpy(np.array(a, dtype=label_type)) for a in (train_y, test_y))
    # The validation split is a seeded permutation of the training set, shared by all replicates.
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(hp.split_seed))
    val, train = order[: hp.val_size], order[hp.val_size:]
    train = noise.subsample(train, hp)  # after the validation split; then label noise on these labels only
    return with_augment(noise.apply(DataSplits(train_x[train], train_y[train], train_x[val], train_y[val], test_x,
                                               test_y, num_classes=info.num_classes, _fingerprint=fingerprint), hp), hp)


def with_settings(data: DataSplits, hp: DatasetHparams) -> DataSplits:
    """Tensors given in place of the data set `hp` names (a user's own, already split), with hp's settings
    applied as load_dataset applies them to loaded files: subsample, then label noise on the training labels,
    then augmentation. Without those settings the tensors are used as given."""
    if data.train_y_clean is None and (hp.subsample or hp.label_noise > 0):
        keep = noise.subsample(torch.arange(len(data.train_x), device=data.train_x.device), hp)
        data = noise.apply(dataclasses.replace(data, train_x=data.train_x[keep], train_y=data.train_y[keep],
                                               _fingerprint=None), hp)
    return with_augment(data, hp) if data.augment is None and hp.augment != "none" else data


def with_augment(data: DataSplits, hp: DatasetHparams) -> DataSplits:
    """`data` with hp.augment attached (padding in the registry's normalisation of hp.name, if it knows it)."""
    info = DATASETS.get(hp.name)
    return dataclasses.replace(data, augment=augment_.build(hp.augment, info.mean if info else None,
                                                            info.std if info else None))


def check_arrays(name: str, info: DatasetInfo, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray) -> None:
    """A loader's arrays against the registry: example shape, as many labels as examples, every label in
    [0, classes). The class count is the registry's, never max(label) + 1: one stray label 255 is an error,
    not a 256-class model."""
    for split, x, y in (("training", train_x, train_y), ("test", test_x, test_y)):
        x, y = np.asarray(x), np.asarray(y)
        if not len(x):
            raise TicketlabError(f"{name}: the {split} split holds no examples")
        if tuple(x.shape[1:]) != tuple(info.input_shape):
            raise TicketlabError(f"{name}: {split} examples have shape {tuple(x.shape[1:])}, expected "
                                 f"{tuple(info.input_shape)}")
        if info.regression:  # float targets, one row of num_classes outputs per example
            if y.shape != (len(x), info.num_classes) or not np.issubdtype(y.dtype, np.floating):
                raise TicketlabError(f"{name}: {split} targets must be floats of shape ({len(x)}, "
                                     f"{info.num_classes}), got {y.dtype} {y.shape}")
            continue
        if y.ndim != 1 or len(y) != len(x):
            raise TicketlabError(f"{name}: the {split} split has {len(x)} examples but labels of shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise TicketlabError(f"{name}: {split} labels must be whole numbers, got {y.dtype}")
        bad = (y < 0) | (y >= info.num_classes)
        if bad.any():
            raise TicketlabError(f"{name}: {split} label {int(y[bad][0])} is outside [0, {info.num_classes}) "
                                 f"({name} has {info.num_classes} classes; {int(bad.sum())} such label(s))")


def _normalise(x: np.ndarray, info: DatasetInfo) -> torch.Tensor:
    t = torch.from_numpy(np.array(x))  # a writable copy
    if info.mean is None:
        return t.float()
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return ((t.float() / 255.0) - mean) / std


class BatchOrder:
    """Which training examples form step s's batch: a pure function of (seed, s), so a resumed run sees
    exactly the batches it would have seen. Each epoch is a fresh seeded permutation; the last partial
    batch of an epoch is dropped so every step has the same batch size."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device | str = "cpu"):
        if batch_size > n:
            raise TicketlabError(f"training.batch_size ({batch_size}) exceeds the training set ({n} examples)")
        self.n, self.batch_size, self.seed, self.device = n, batch_size, seed, device
        self.steps_per_epoch = n // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.int64)

    def indices(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.n, generator=g).to(self.device), epoch
        return self._perm[i * self.batch_size:(i + 1) * self.batch_size]
