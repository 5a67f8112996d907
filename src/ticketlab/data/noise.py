"""Training-set subsampling and label noise: seeded, exact in count, applied to the training split only.

Both run in `load_dataset` after the validation split, so validation and test labels are never touched:
  subsample  a seeded subset of `subsample` training examples (seed: derive_seed(split_seed, "subsample")),
             the same for every replicate; noise is applied to that subset
  noise      exactly round(p n) training labels changed (n = the training examples eligible for the noise
             type), chosen by a seeded permutation (seed: derive_seed(noise_seed, "label_noise")), the same
             for every replicate:
               symmetric   the new label is drawn uniformly among the C - 1 *other* classes (never the same)
               pairflip    class c becomes c + 1 mod C
               asymmetric  the data set's map of confusable classes (ASYMMETRIC below); only examples whose
                           class the map moves are eligible, so p is the fraction of *those* that flip
The clean training labels are kept beside the noisy ones (`DataSplits.train_y_clean`), so a training job can
say how well it fits the labels it was trained on and the true ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..config import NOISE_TYPES, DatasetHparams  # noqa: F401  (NOISE_TYPES: re-exported)
from ..errors import TicketlabError
from ..seeds import derive_seed

# Confusable-class maps (class -> the class its label flips to), one per data set that has one.
# MNIST: the map of Patrini et al. 2017 / Han et al. 2018 (co-teaching): 2->7, 3->8, 5<->6, 7->1.
# Fashion-MNIST: the pairs a human confuses most (Xiao et al. 2017's class list): T-shirt/top (0) <-> Shirt (6),
# Pullover (2) <-> Coat (4), Sandal (5) <-> Sneaker (7).
# CIFAR-10: Patrini et al. 2017: truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog.
ASYMMETRIC: dict[str, dict[int, int]] = {
    "mnist": {2: 7, 3: 8, 5: 6, 6: 5, 7: 1},
    "fashion_mnist": {0: 6, 6: 0, 2: 4, 4: 2, 5: 7, 7: 5},
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
}


def check(hp: DatasetHparams) -> None:
    """What needs the data registry's names only: an asymmetric map exists for this data set."""
    if hp.label_noise > 0 and hp.noise_type == "asymmetric" and hp.name not in ASYMMETRIC:
        raise TicketlabError(f"dataset.noise_type asymmetric needs a map of confusable classes, and {hp.name} has "
                             f"none (maps exist for {', '.join(ASYMMETRIC)}); use symmetric or pairflip")


def describe(hp: DatasetHparams) -> str:
    """The part of the data fingerprint these settings add: '' for the defaults, so fingerprints of data
    without subsampling or noise stay what they were."""
    parts = []
    if hp.subsample:
        parts.append(f"subsample={hp.subsample}")
    if hp.label_noise > 0:
        parts.append(f"noise={hp.noise_type}:{hp.label_noise!r}:{hp.noise_seed}")
    return "/" + "/".join(parts) if parts else ""


def subsample(train: torch.Tensor, hp: DatasetHparams) -> torch.Tensor:
    """`hp.subsample` of the training indices `train` (all of them for 0), a seeded subset in their order."""
    if not hp.subsample:
        return train
    if hp.subsample > len(train):
        raise TicketlabError(f"dataset.subsample ({hp.subsample}) exceeds the training split of {hp.name} "
                             f"({len(train)} examples after the validation split)")
    g = torch.Generator().manual_seed(derive_seed(hp.split_seed, "subsample"))
    keep = torch.randperm(len(train), generator=g)[: hp.subsample]
    return train[keep.sort().values]


def flip_map(hp: DatasetHparams, num_classes: int) -> dict[int, int] | None:
    """The fixed class map of pairflip / asymmetric noise; None for symmetric (a random other class)."""
    if hp.noise_type == "pairflip":
        return {c: (c + 1) % num_classes for c in range(num_classes)}
    if hp.noise_type == "asymmetric":
        check(hp)
        return dict(ASYMMETRIC[hp.name])
    return None


def corrupt(labels: torch.Tensor, p: float, num_classes: int, seed: int,
            mapping: dict[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy labels, indices changed): exactly round(p n) of the n eligible labels changed, chosen by a
    permutation seeded with `seed`. mapping None: each to a uniformly random other class; else by the map
    (eligible: labels the map moves to another class)."""
    if not 0 <= p <= 1:
        raise TicketlabError(f"label noise must be in [0, 1], got {p}")
    if num_classes < 2:
        raise TicketlabError(f"label noise needs at least 2 classes, got {num_classes}")
    labels = labels.to(torch.int64)
    if mapping is None:
        eligible = torch.arange(len(labels))
    else:
        moved = torch.tensor([c for c, d in mapping.items() if c != d], dtype=torch.int64)
        eligible = torch.isin(labels, moved).nonzero().flatten()
    g = torch.Generator().manual_seed(seed)
    count = int(p * len(eligible) + 0.5)  # round half up: exact, no banker's rounding
    chosen = eligible[torch.randperm(len(eligible), generator=g)[:count]].sort().values
    noisy = labels.clone()
    if mapping is None:  # an offset in [1, C - 1] never lands on the same class, and is uniform over the others
        offset = torch.randint(1, num_classes, (count,), generator=g)
        noisy[chosen] = (labels[chosen] + offset) % num_classes
    else:
        table = torch.arange(num_classes)
        for c, d in mapping.items():
            table[c] = d
        noisy[chosen] = table[labels[chosen]]
    return noisy, chosen


def apply(splits: Any, hp: DatasetHparams) -> Any:
    """`splits` (a DataSplits) with hp's label noise on its training labels only; the clean ones are kept
    in `train_y_clean`. Unchanged without noise."""
    if hp.label_noise <= 0:
        return splits
    if splits.train_y.is_floating_point():
        raise TicketlabError(f"dataset.label_noise needs class labels, and {hp.name} has regression targets")
    mapping = flip_map(hp, splits.num_classes)
    noisy, _ = corrupt(splits.train_y, hp.label_noise, splits.num_classes,
                       derive_seed(hp.noise_seed, "label_noise", hp.noise_type), mapping)
    return dataclasses.replace(splits, train_y=noisy, train_y_clean=splits.train_y)


def record(splits: Any) -> dict[str, Any]:
    """How many training labels the noise changed (0 without noise), for summaries."""
    clean = getattr(splits, "train_y_clean", None)
    changed = 0 if clean is None else int((clean != splits.train_y).sum())
    return {"train_examples": len(splits.train_y), "labels_changed": changed}
