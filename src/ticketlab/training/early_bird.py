"""Early-bird tickets (You et al. 2020, REFERENCE.md section 14): while the dense network trains, draw the
mask at the target density at the start of every epoch (the first one at initialisation) and keep the last
5; the ticket is drawn once the newest mask's normalised Hamming distance to each of the 4 older ones is at
most epsilon = 0.1. The search then stops (EarlyBirdFound): what it saves is the dense training after that
point. The masks so far are the policy's state, so a search killed mid-way resumes where it was.

Two variants:
- weights (the paper's description; its code has no such variant): one global ranking of |w| over every
  prunable weight, ties to the lower flat index (`magnitude_mask`).
- channels (the paper's code, network slimming): an L1 penalty s = 1e-4 on every batch-norm scale (s sign(γ)
  added to γ's gradient), and the channel mask over all BN layers at once as the code draws it: the ascending
  |γ| at index int(total * (1 - density)) is the threshold, a channel is kept when |γ| > threshold
  (`channel_mask`). The ticket removes a channel by holding its BN scale and shift at exactly 0 (its output is
  then 0 whatever feeds it) and masking its filter in the layer the BN normalises (`ChannelTicket`).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import TicketlabError
from ..masks import Mask, MaskApplier, prunable, top_k
from ..models.init import LAYERS
from .policy import MaskPolicy, StaticMask

KEEP = 5  # masks compared (the paper's epoch_keep)
EPSILON = 0.1
SPARSITY = 1e-4  # the channel variant's L1 weight on BN scales (the paper's --s)
VARIANTS = ("weights", "channels")


class EarlyBirdFound(Exception):
    """The search found its ticket at `step` (the start of epoch `epoch`)."""

    def __init__(self, step: int, epoch: int, mask: Mask, distances: list[float]):
        super().__init__(f"early-bird ticket at step {step} (epoch {epoch})")
        self.step, self.epoch, self.mask, self.distances = step, epoch, mask, distances


def magnitude_mask(model: nn.Module, density: float) -> Mask:
    """The global magnitude mask keeping round(density * all prunable weights)."""
    params = prunable(model)
    flat = torch.cat([p.detach().abs().flatten() for p in params.values()])
    keep = top_k(flat, round(density * flat.numel()))
    out, at = {}, 0
    for name, p in params.items():
        out[name] = keep[at:at + p.numel()].view_as(p).cpu()
        at += p.numel()
    return Mask(out)


def batch_norms(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    """The model's batch-norm layers with a learned scale, by module name."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine}


def channel_mask(model: nn.Module, density: float) -> Mask:
    """Network slimming's mask: BN scale name -> bool per channel, one threshold over every BN layer."""
    scales = {f"{name}.weight": m.weight.detach().abs() for name, m in batch_norms(model).items()}
    if not scales:
        raise TicketlabError("early-bird-channel needs batch-norm layers (it ranks their scales); this model has none")
    flat = torch.cat([v.flatten() for v in scales.values()])
    threshold = flat.sort().values[int(flat.numel() * (1 - density))]
    return Mask({k: (v > threshold).cpu() for k, v in scales.items()})


def distance(a: Mask, b: Mask) -> float:
    """Normalised Hamming distance: the fraction of prunable positions where the masks differ."""
    differ = sum(int((a[k] != b[k]).sum()) for k in a.keys())
    return differ / sum(v.numel() for v in a.tensors.values())


class EarlyBirdSearch(MaskPolicy):
    """Dense training that raises EarlyBirdFound at the first epoch start where the last KEEP masks agree.
    `variant`: "weights" (global |w| masks) or "channels" (BN-scale masks, with the L1 penalty on the scales)."""

    name = "early-bird"

    def __init__(self, density: float, steps_per_epoch: int, epsilon: float = EPSILON, variant: str = "weights",
                 sparsity: float = SPARSITY):
        if variant not in VARIANTS:
            raise ValueError(f"early-bird variant {variant!r} is not one of {VARIANTS}")
        self.density, self.steps_per_epoch, self.epsilon = density, steps_per_epoch, epsilon
        self.variant, self.sparsity = variant, sparsity
        self.masks: list[Mask] = []
        self.history: list[float | None] = []  # per epoch start: the largest distance (None before KEEP masks)

    def network(self, model: nn.Module) -> nn.Module:
        self.model = model
        self.scales = [m.weight for m in batch_norms(model).values()] if self.variant == "channels" else []
        return model

    def draw(self) -> Mask:
        if self.variant == "channels":
            return channel_mask(self.model, self.density)
        return magnitude_mask(self.model, self.density)

    def before_forward(self, step: int, net: nn.Module) -> None:
        if step % self.steps_per_epoch:
            return
        epoch = step // self.steps_per_epoch
        if len(self.history) > epoch:  # resumed at an epoch start already drawn
            return
        self.masks = [*self.masks, self.draw()][-KEEP:]
        if len(self.masks) < KEEP:
            self.history.append(None)
            return
        distances = [distance(self.masks[-1], older) for older in self.masks[:-1]]
        self.history.append(max(distances))
        if max(distances) <= self.epsilon:
            raise EarlyBirdFound(step, epoch, self.masks[-1], distances)

    def after_backward(self, step: int, net: nn.Module) -> None:
        """Network slimming's sparsity term: the subgradient of s |γ|, added before the optimizer's step."""
        for scale in self.scales:
            if scale.grad is not None:
                scale.grad.add_(self.sparsity * torch.sign(scale.detach()))

    def state_dict(self) -> dict[str, Any]:
        return {"masks": [m.tensors for m in self.masks], "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.masks = [Mask(t) for t in state["masks"]]
            self.history = list(state["history"])


def normalised_layers(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, str]:
    """BN module name -> the prunable weight whose output that BN reads directly (the same tensor), found by
    one forward pass of a copy in eval mode; a BN fed by anything else (an addition, a pooling) is left out."""
    probe = copy.deepcopy(model).eval()
    last: dict[str, Any] = {}
    found: dict[str, str] = {}

    def layer_out(name: str):  # noqa: ANN202
        return lambda module, inputs, output: last.update(tensor=output, name=name)

    def bn_in(name: str):  # noqa: ANN202
        def hook(module, inputs, output):  # noqa: ANN001, ANN202
            if last.get("tensor") is inputs[0]:
                found[name] = f"{last['name']}.weight" if last["name"] else "weight"
        return hook

    norms = batch_norms(model)
    for name, m in probe.named_modules():
        if isinstance(m, LAYERS):
            m.register_forward_hook(layer_out(name))
        elif name in norms:
            m.register_forward_hook(bn_in(name))
    device = next(model.parameters()).device
    with torch.no_grad():
        probe(torch.zeros(2, *input_shape, device=device))
    return found


def channel_ticket(model: nn.Module, channels: Mask, input_shape: tuple[int, ...]) -> "ChannelTicket":
    """The policy that trains `model` without the channels `channels` prunes: the filters feeding each pruned
    channel masked (where a layer feeds its BN directly), the BN scale and shift of the channel held at 0."""
    weights = Mask({k: v.cpu() for k, v in Mask.ones(model).tensors.items()})  # masks live on the CPU, as loaded
    prunable_weights = prunable(model)
    for bn, weight in normalised_layers(model, input_shape).items():
        keep = channels[f"{bn}.weight"]
        if prunable_weights[weight].shape[0] == keep.numel():
            weights.tensors[weight] &= keep.view(-1, *[1] * (prunable_weights[weight].dim() - 1))
    norms = Mask({f"{bn}.{part}": channels[f"{bn}.weight"] for bn in batch_norms(model) for part in ("weight", "bias")})
    return ChannelTicket(weights, norms)


class ChannelTicket(StaticMask):
    """A fixed weight mask plus a mask on batch-norm scales and shifts, both exact (weights, gradients and
    optimizer state 0 where pruned); `finish` measures both."""

    name = "channel-ticket"

    def __init__(self, mask: Mask, norms: Mask):
        super().__init__(mask)
        self.norms = norms

    def network(self, model: nn.Module) -> nn.Module:
        params = dict(model.named_parameters())
        self.norm_applier = MaskApplier(model, self.norms, {k: params[k] for k in self.norms.keys()})
        self.norm_applier.weights()
        return super().network(model)

    def start(self, net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        super().start(net, optimizer)
        self.norm_applier.optimizer_state(optimizer)

    def after_backward(self, step: int, net: nn.Module) -> None:
        super().after_backward(step, net)
        self.norm_applier.grads()

    def after_step(self, step: int, net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        super().after_step(step, net, optimizer)
        self.norm_applier.weights()

    def finish(self, net: nn.Module, optimizer: torch.optim.Optimizer, result: Any) -> None:
        super().finish(net, optimizer, result)
        norms = self.norm_applier.pruned_magnitudes(optimizer)
        result.checks = {k: max(v, norms[k]) for k, v in result.checks.items()}

    def channel_density(self) -> float:
        kept = sum(int(v.sum()) for k, v in self.norms.tensors.items() if k.endswith(".weight"))
        return kept / sum(v.numel() for k, v in self.norms.tensors.items() if k.endswith(".weight"))
