"""Augmentation of whole training batches with tensor ops, a pure function of (data seed, step).

`flip_crop` is the CIFAR recipe of OpenLTH / He et al.: a random horizontal flip and a random crop of the
image zero-padded by 4 pixels on each side. "Zero" is black in the raw image, so after the data set's
per-channel normalisation the padding is (0 - mean) / std per channel, as torchvision's RandomCrop followed
by Normalize gives. Crop and flip of the whole batch are one gather (no per-example Python loop).

The random draws of step s come from a CPU generator seeded with derive_seed(data seed, "augment", s), so a
run resumed at any step sees exactly the augmented batches it would have seen, on any device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..config import AUGMENTS
from ..errors import TicketlabError
from ..seeds import derive_seed

PAD = 4


def flip_crop(x: torch.Tensor, generator: torch.Generator, fill: tuple[float, ...] = (), pad: int = PAD,
              ) -> torch.Tensor:
    """Each image of `x` [N, C, H, W] flipped left-right with probability 1/2, padded by `pad` with `fill`
    (per channel; () = 0) and cropped back to H x W at a uniformly drawn offset."""
    if x.dim() != 4:
        raise TicketlabError(f"flip_crop augments image batches [N, C, H, W], got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    flip = torch.rand(n, generator=generator) < 0.5
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    padded = F.pad(x, (pad, pad, pad, pad))
    if fill and any(f != 0 for f in fill):
        border = torch.ones(1, 1, h + 2 * pad, w + 2 * pad, dtype=x.dtype, device=x.device)
        border[..., pad:pad + h, pad:pad + w] = 0
        padded = padded + border * torch.tensor(fill, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    rows = dy[:, None] + torch.arange(h)  # [N, H]
    cols_ = torch.arange(w)
    cols = dx[:, None] + torch.where(flip[:, None], w - 1 - cols_, cols_)  # crop, then flip: one gather
    dev = x.device
    batch = torch.arange(n, device=dev)[:, None, None, None]
    chans = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch, chans, rows.to(dev)[:, None, :, None], cols.to(dev)[:, None, None, :]]


@dataclass(frozen=True)
class Augment:
    """A named augmentation with the data set's padding value per channel; call (x, data seed, step)."""

    name: str
    fill: tuple[float, ...] = ()

    def __call__(self, x: torch.Tensor, seed: int, step: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(derive_seed(seed, "augment", step))
        return flip_crop(x, generator, self.fill)


def build(name: str, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
          ) -> Augment | None:
    """The augmentation `name` ("none": None) for data normalised with `mean`/`std` (None: not normalised,
    padding 0)."""
    if name not in AUGMENTS:
        raise TicketlabError(f"dataset.augment must be one of {', '.join(AUGMENTS)}, got {name!r}")
    if name == "none":
        return None
    fill = tuple(-m / s for m, s in zip(mean, std)) if mean is not None and std is not None else ()
    return Augment(name, fill)
