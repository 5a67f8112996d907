"""Masks: which prunable weights survive, and their exact application to weights, gradients and
optimizer state.

Exactness by construction: a pruned weight starts at 0, its gradient is zeroed before every step, and
its optimizer state is zeroed when the mask is installed. Adam's moments and SGD's momentum of a weight
whose gradient is always 0 stay 0, so the update is 0 and the weight stays exactly 0.0 (weight decay of
a 0 weight is 0 as well). The weights are re-multiplied after every step all the same, so even an
optimizer we do not know cannot make a pruned weight drift.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .errors import TicketlabError
from .files import write_safetensors
from .models.init import LAYERS


def prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights of Linear/Conv layers, by parameter name, in registration order (last = output)."""
    return {f"{name}.weight" if name else "weight": m.weight for name, m in model.named_modules()
            if isinstance(m, LAYERS)}


def layer_kind(model: nn.Module) -> dict[str, str]:
    """'conv' or 'linear' per prunable weight: per-kind pruning rates use it."""
    return {name: "linear" if p.dim() == 2 else "conv" for name, p in prunable(model).items()}


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the k largest scores (-inf never chosen); ties go to the lower flat index. The k-th largest
    value from topk, then everything above it and the lowest-index entries equal to it: no full sort."""
    flat = scores.flatten()
    out = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    k = min(k, int(torch.isfinite(flat).sum()))
    if k > 0:
        threshold = torch.topk(flat, k, sorted=False).values.min()
        out = flat > threshold
        ties = (flat == threshold).nonzero().flatten()[: k - int(out.sum())]
        out[ties] = True
    return out.view_as(scores)


class Mask:
    """name -> bool tensor of the weight's shape; True = the weight survives."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = {k: v.to(torch.bool) for k, v in tensors.items()}

    @classmethod
    def ones(cls, model: nn.Module) -> "Mask":
        return cls({k: torch.ones_like(p, dtype=torch.bool) for k, p in prunable(model).items()})

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def keys(self):  # noqa: ANN201
        return self.tensors.keys()

    def counts(self) -> dict[str, int]:
        return {k: int(v.sum()) for k, v in self.tensors.items()}

    def sizes(self) -> dict[str, int]:
        return {k: v.numel() for k, v in self.tensors.items()}

    def density(self) -> float:
        return sum(self.counts().values()) / sum(self.sizes().values())

    def layer_density(self) -> dict[str, float]:
        sizes = self.sizes()
        return {k: c / sizes[k] for k, c in self.counts().items()}

    def check_matches(self, model: nn.Module) -> None:
        """Keys and shapes must be the model's prunable weights: a mask for another model is an error."""
        params = prunable(model)
        if set(params) != set(self.tensors):
            raise TicketlabError(f"mask does not fit the model: mask has {sorted(self.tensors)}, "
                                 f"model has {sorted(params)}")
        for k, p in params.items():
            if p.shape != self.tensors[k].shape:
                raise TicketlabError(f"mask for {k} has shape {tuple(self.tensors[k].shape)}, weight {tuple(p.shape)}")

    def save(self, path: Path) -> None:
        """Written whole or not at all (a temporary file renamed into place): a kill never leaves half a mask."""
        write_safetensors(Path(path), {k: v.to(torch.uint8) for k, v in self.tensors.items()})

    @classmethod
    def load(cls, path: Path) -> "Mask":
        try:
            tensors = load_file(str(path))
        except SafetensorError as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise TicketlabError(f"{path}: the mask file is damaged ({reason})") from None
        bad = [k for k, v in tensors.items() if not bool(((v == 0) | (v == 1)).all())]
        if bad:
            raise TicketlabError(f"{path}: mask values must be 0 or 1 (layers {', '.join(bad)})")
        return cls(tensors)


class MaskApplier:
    """The hot-path form of a mask: float masks of the layers that are not dense, on the model's device,
    applied with one fused `foreach` multiply per call."""

    def __init__(self, model: nn.Module, mask: Mask, params: dict[str, nn.Parameter] | None = None):
        """`params`: the tensors the mask's names stand for (default: the model's prunable weights, which the
        mask must cover exactly); e.g. batch-norm scales and shifts for a channel mask."""
        if params is None:
            mask.check_matches(model)
            params = prunable(model)
        for k, p in params.items():
            if p.shape != mask[k].shape:
                raise TicketlabError(f"mask for {k} has shape {tuple(mask[k].shape)}, tensor {tuple(p.shape)}")
        sparse = [k for k in params if not bool(mask[k].all())]
        self.params = [params[k] for k in sparse]
        self.masks = [mask[k].to(device=params[k].device, dtype=params[k].dtype) for k in sparse]

    def weights(self) -> None:
        if self.params:
            with torch.no_grad():
                torch._foreach_mul_(self.params, self.masks)

    def grads(self) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, [m for p, m in zip(self.params, self.masks) if p.grad is not None])

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero every state tensor of a pruned weight (Adam moments, momentum buffers)."""
        with torch.no_grad():
            for p, m in zip(self.params, self.masks):
                for value in optimizer.state.get(p, {}).values():
                    if torch.is_tensor(value) and value.shape == p.shape:
                        value.mul_(m)

    def pruned_magnitudes(self, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """Largest |weight|, |gradient| and |optimizer state| at pruned positions: all must be 0.0."""
        out = {"weight": 0.0, "grad": 0.0, "optimizer_state": 0.0}
        with torch.no_grad():
            for p, m in zip(self.params, self.masks):
                pruned = m == 0
                out["weight"] = max(out["weight"], p[pruned].abs().max().item())
                if p.grad is not None:
                    out["grad"] = max(out["grad"], p.grad[pruned].abs().max().item())
                for value in optimizer.state.get(p, {}).values():
                    if torch.is_tensor(value) and value.shape == p.shape:
                        out["optimizer_state"] = max(out["optimizer_state"], value[pruned].abs().max().item())
        return out
