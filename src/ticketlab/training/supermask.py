"""Strong tickets: masks learned on FROZEN weights (no weight is ever trained), for any nn.Module.

Each prunable weight w (masks.prunable) gets a score tensor s of its shape; the network is evaluated with
`torch.func.functional_call(model, {name: w * m(s)})`, so the module's own parameters are never written
(checked bitwise at the end of every run). Only the scores are optimised.

  edge-popup (Ramanujan et al. 2020)  m = the top-k of |s| in each layer, k = the fraction of weights KEPT
        (exactly kept_count(n, k) per layer, ties broken by the lower flat index); the backward pass is
        straight-through (dL/ds = dL/dm * sign(s)); scores start kaiming_uniform(a=sqrt(5)). With bias_mask
        (Plant 'n' Seek's edge-popup) each layer's biases get scores too, and a top-k mask with the same k.
  supermask (Zhou et al. 2019)  m ~ Bernoulli(sigmoid(s)) sampled at every step (straight-through:
        dL/ds = dL/dm * sigmoid'(s)); scores start at logit(k), so k is the starting expected fraction kept;
        evaluated and stored with the deterministic mask sigmoid(s) > 0.5.
  large_final_same_sign (Zhou et al.)  no learning: keep, per layer, the k n largest |final| among weights
        whose sign at init and after dense training agree; applied to the untrained network.

Frozen weights are the model's own initial weights or the signed Kaiming constant sign(w) sqrt(2 / fan_in)
(optionally / sqrt(k), edge-popup's --scale-fan). Batch norm is non-affine (weight 1, bias 0, frozen); its
running statistics still update in training mode. The LR follows a cosine from hp.lr to 0 over
hp.train_steps (edge-popup's schedule), after hp.warmup_steps of linear warm-up.

Learning runs on the one training loop (training/loop.py) under a ScoresPolicy: batches, the data set's
augmentation, the evaluation schedule, divergence checks and checkpoints are the loop's, so the run is a
function of (seed, step) and resumes bit-identically from its checkpoint (scores, optimizer, buffers, RNG,
evaluations).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.func import functional_call

from ..config import TrainingHparams
from ..data import DataSplits
from ..errors import TicketlabError
from ..masks import Mask, prunable, top_k
from ..seeds import derive_seed
from .evaluate import evaluate
from .loop import Checkpointing, Hooks, TrainResult, _result, train
from .policy import MaskPolicy, register_policy

METHODS = ("edge-popup", "supermask", "lfss")
WEIGHTS = ("own", "signed_constant")
# --scale-fan: the signed constant computed with a fan that counts only part of the inputs. "kept" (the
# paper, Ramanujan et al. 2020: the fan of the weights kept, fan_in * k, i.e. sqrt(2 / fan_in) / sqrt(k)) or
# "hidden-networks" (its code: fan_in * (1 - prune_rate), which is fan_in * (1 - k), i.e. / sqrt(1 - k)).
# At k = 0.3 the two differ by 1.53x.
SCALE_FAN_RULES = ("kept", "hidden-networks")
# How many of a layer's n weights the top-k keeps at fraction k. "nearest" (ticketlab's): round half up, at
# least 1. "hidden-networks" (GetSubnet in hidden-networks and Plant 'n' Seek): n - int((1 - k) n) in float
# arithmetic, i.e. about ceil(k n): one more than "nearest" wherever the fraction of k n is below a half.
ROUNDINGS = ("nearest", "hidden-networks")


@dataclass(frozen=True)
class StrongSpec:
    method: str = "edge-popup"  # edge-popup | supermask | lfss (large_final_same_sign)
    k: float = 0.5  # edge-popup, lfss: fraction of each layer's weights KEPT; supermask: starting keep prob.
    weights: str = "own"  # own (the model's init) | signed_constant (sign(w) sqrt(2 / fan_in))
    scale_fan: bool = False  # signed_constant scaled by its fan of kept inputs: edge-popup's --scale-fan
    scale_fan_rule: str = "kept"  # SCALE_FAN_RULES: the paper's fan (default) or its code's
    bias_mask: bool = False  # edge-popup: a top-k mask over each layer's biases too (Plant 'n' Seek's)
    rounding: str = "nearest"  # ROUNDINGS: how many of a layer's weights the top-k keeps

    def check(self) -> None:
        if self.method not in METHODS:
            raise TicketlabError(f"unknown strong-ticket method {self.method!r}; choose from: {', '.join(METHODS)}")
        if not 0 < self.k <= 1:
            raise TicketlabError(f"k (the fraction of weights kept) must be in (0, 1], got {self.k}")
        if self.weights not in WEIGHTS:
            raise TicketlabError(f"unknown frozen-weight init {self.weights!r}; choose from: {', '.join(WEIGHTS)}")
        if self.scale_fan and self.weights != "signed_constant":
            raise TicketlabError("--scale-fan scales the signed-constant weights: it needs --weights signed_constant "
                                 f"(got --weights {self.weights})")
        if self.scale_fan_rule not in SCALE_FAN_RULES:
            raise TicketlabError(f"unknown --scale-fan-rule {self.scale_fan_rule!r}; choose from: "
                                 f"{', '.join(SCALE_FAN_RULES)}")
        if self.scale_fan_rule != "kept" and not self.scale_fan:
            raise TicketlabError("--scale-fan-rule has no effect here: it applies only with --scale-fan")
        if self.scale_fan and self.scale_fan_rule == "hidden-networks" and self.k >= 1:
            raise TicketlabError("--scale-fan-rule hidden-networks divides by sqrt(1 - k): it needs k < 1")
        if self.bias_mask and self.method != "edge-popup":
            raise TicketlabError(f"--bias-mask is edge-popup's (Plant 'n' Seek): it does not apply to {self.method}")
        if self.rounding not in ROUNDINGS:
            raise TicketlabError(f"unknown --rounding {self.rounding!r}; choose from: {', '.join(ROUNDINGS)}")
        if self.rounding != "nearest" and self.method == "supermask":
            raise TicketlabError("--rounding has no effect on supermask (its mask is sampled, not a top-k)")


def kept_count(n: int, k: float, rounding: str = "nearest") -> int:
    """Weights kept of a layer of n at fraction k (ROUNDINGS): nearest, round half up; hidden-networks,
    n - int((1 - k) n) as its GetSubnet computes it; at least 1, at most n."""
    kept = n - int((1 - k) * n) if rounding == "hidden-networks" else math.floor(k * n + 0.5)
    return min(n, max(1, kept))


def bias_names(model: nn.Module) -> dict[str, str]:
    """Prunable weight name -> the name of its module's bias, for the modules that have one."""
    params = dict(model.named_parameters())
    return {k: f"{k.rpartition('.')[0]}.bias" for k in prunable(model)
            if f"{k.rpartition('.')[0]}.bias" in params}


def topk_mask(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """0/1 tensor (scores' dtype) with 1 at the `keep` largest scores; equal scores: the lower flat index first
    (a stable descending sort), so the mask is a function of the values alone."""
    return top_k(scores.detach(), keep).to(scores.dtype)  # the picks of a stable sort, without one


def fan_in(weight: torch.Tensor) -> int:
    return weight[0].numel()


def scaled_fan(spec: StrongSpec) -> float:
    """The factor --scale-fan applies to fan_in in the signed constant's sqrt(2 / fan): 1 without it."""
    if not spec.scale_fan:
        return 1.0
    return spec.k if spec.scale_fan_rule == "kept" else 1.0 - spec.k


def prepare_frozen(model: nn.Module, spec: StrongSpec) -> nn.Module:
    """In place: the frozen weights of `spec` (signed constant or the model's own), non-affine batch norm,
    every parameter requires_grad False. Returns the model."""
    with torch.no_grad():
        if spec.weights == "signed_constant":
            for w in prunable(model).values():
                scale = math.sqrt(2.0 / fan_in(w)) / math.sqrt(scaled_fan(spec))  # as before rules: bit for bit
                w.copy_(torch.sign(w) * scale)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class MaskedNet(nn.Module):
    """`model` evaluated with w * m(score) for each prunable weight; its own parameters are never written."""

    def __init__(self, model: nn.Module, spec: StrongSpec, generator: torch.Generator):
        super().__init__()
        self.model, self.spec = model, spec
        self.names = list(prunable(model))
        self.scores = nn.ParameterList()
        for w in prunable(model).values():
            s = torch.empty(w.shape, dtype=w.dtype)  # drawn on the CPU (its generator's device): any device alike
            if spec.method == "edge-popup":
                nn.init.kaiming_uniform_(s, a=math.sqrt(5), generator=generator)
            else:
                s.fill_(math.log(spec.k / (1 - spec.k)) if spec.k < 1 else 10.0)
            self.scores.append(nn.Parameter(s.to(w.device)))
        self.sample_seed: int | None = None  # supermask: the seed of this step's Bernoulli draw (None: eval)
        # an evaluation's masks, computed once for all its batches (cache_masks); None while training
        self.cached: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None
        # bias scores (spec.bias_mask): drawn after every weight's, so the weight scores are the same with and
        # without; U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as PyTorch draws a layer's bias. Plant 'n' Seek starts
        # them at 0, where |s| has no gradient: its bias masks never move (docs/REFERENCES.md)
        self.biases = bias_names(model) if spec.bias_mask else {}
        self.bias_scores = nn.ParameterList()
        weights = prunable(model)
        for name, bias in self.biases.items():
            bound = 1 / math.sqrt(fan_in(weights[name]))
            s = torch.empty(dict(model.named_parameters())[bias].shape, dtype=weights[name].dtype)
            self.bias_scores.append(nn.Parameter(s.uniform_(-bound, bound, generator=generator)
                                                 .to(weights[name].device)))

    def _top_k(self, s: torch.Tensor, straight_through: bool) -> torch.Tensor:
        a = s.abs()
        hard = topk_mask(a, kept_count(a.numel(), self.spec.k, self.spec.rounding))
        return hard + a - a.detach() if straight_through else hard

    def bias_masks(self, straight_through: bool = True) -> dict[str, torch.Tensor]:
        """Bias name -> its mask (empty without spec.bias_mask)."""
        return {bias: self._top_k(s, straight_through) for bias, s in zip(self.biases.values(), self.bias_scores)}

    def masks(self, straight_through: bool = True) -> dict[str, torch.Tensor]:
        out = {}
        gen = None
        if self.spec.method == "supermask" and self.sample_seed is not None:
            gen = torch.Generator(device=self.scores[0].device).manual_seed(self.sample_seed)
        for name, s in zip(self.names, self.scores):
            if self.spec.method == "edge-popup":
                out[name] = self._top_k(s, straight_through)
                continue
            a = torch.sigmoid(s)
            if gen is not None:
                hard = (torch.rand(a.shape, generator=gen, device=a.device) < a.detach()).to(a.dtype)
            else:
                hard = (a.detach() > 0.5).to(a.dtype)
            out[name] = hard + a - a.detach() if straight_through else hard
        return out

    def cache_masks(self) -> None:
        """Compute the masks once for the forward passes that follow (an evaluation's batches) until
        `cached` is set to None. Computed as forward computes them, without autograd: the same values, so an
        evaluation gives what it gave when every batch sorted the scores again."""
        with torch.no_grad():
            self.cached = (self.masks(), self.bias_masks())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = prunable(self.model)
        m, mb = self.cached if self.cached is not None else (self.masks(), self.bias_masks())
        masked = {k: weights[k] * m[k] for k in self.names}
        if mb:
            params = dict(self.model.named_parameters())
            masked.update({b: params[b] * mask for b, mask in mb.items()})
        return functional_call(self.model, masked, (x,))

    def binary_bias_mask(self) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {k: v.bool().cpu() for k, v in self.bias_masks(straight_through=False).items()}

    def binary_mask(self) -> Mask:
        with torch.no_grad():
            sample, self.sample_seed = self.sample_seed, None
            hard = self.masks(straight_through=False)
            self.sample_seed = sample
        return Mask({k: v.bool().cpu() for k, v in hard.items()})


class _Fixed(nn.Module):
    """`model` with a fixed binary mask applied functionally (for evaluation of lfss masks)."""

    def __init__(self, model: nn.Module, mask: Mask):
        super().__init__()
        self.model = model
        self.mask = {k: v.to(p.device, p.dtype) for (k, p), v in zip(prunable(model).items(), mask.tensors.values())}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = prunable(self.model)
        return functional_call(self.model, {k: weights[k] * self.mask[k] for k in self.mask}, (x,))


def large_final_same_sign(init: dict[str, torch.Tensor], final: dict[str, torch.Tensor], k: float) -> Mask:
    """Zhou et al.'s mask: per layer, the kept_count(n, k) largest |final| among weights whose sign at init and
    at the end agree (fewer if fewer agree); ties by the lower flat index."""
    out = {}
    for name, w0 in init.items():
        wf = final[name].to(w0.device)
        same = torch.sign(w0) == torch.sign(wf)
        keep = min(kept_count(w0.numel(), k), int(same.sum()))
        score = torch.where(same, wf.abs().double(), torch.tensor(-1.0, dtype=torch.float64, device=w0.device))
        out[name] = topk_mask(score, keep).bool().cpu() if keep else torch.zeros_like(w0, dtype=torch.bool).cpu()
    return Mask(out)


def evaluate_fixed(model: nn.Module, mask: Mask, data: DataSplits) -> TrainResult:
    """One evaluation row (step 0) of `model` under `mask`, weights untouched."""
    net = _Fixed(model, mask)
    val_loss, val_acc = evaluate(net, data.val_x, data.val_y)
    test_loss, test_acc = evaluate(net, data.test_x, data.test_y)
    row = {"step": 0, "val_loss": val_loss, "val_accuracy": val_acc, "test_loss": test_loss, "test_accuracy": test_acc}
    return _result([row])


def cosine_lr(hp: TrainingHparams, step: int) -> float:
    lr = 0.5 * hp.lr * (1 + math.cos(math.pi * step / hp.train_steps))
    if hp.warmup_steps:
        lr *= min(1.0, (step + 1) / hp.warmup_steps)
    return lr


@register_policy("scores")
class ScoresPolicy(MaskPolicy):
    """Edge-popup and supermask as a policy of the one loop: the loop trains MaskedNet's scores (weights
    frozen) with its batches, augmentation, evaluation schedule, divergence checks and checkpoints.

    What differs from weight training, each a choice of the reference codes: the LR is a cosine over
    hp.train_steps (edge-popup); the optimizer is torch's non-fused Adam/SGD over the scores only (the
    fused kernels round differently, and stored strong runs were made with these); supermask draws its
    Bernoulli mask of step s from derive_seed(seed, "supermask", s) (its own stream, so resume and
    evaluation never shift it) and evaluates the deterministic mask sigmoid(s) > 0.5."""

    name = "scores"

    def __init__(self, spec: StrongSpec, seed: int):
        self.spec, self.seed = spec, seed
        self.frozen: dict[str, torch.Tensor] = {}
        self.net: MaskedNet | None = None

    def network(self, model: nn.Module) -> nn.Module:
        self.frozen = {k: v.detach().clone() for k, v in model.named_parameters()}
        device = next(model.parameters()).device
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "scores"))
        self.net = MaskedNet(model, self.spec, gen).to(device)  # kept: learn_mask reads its mask at the end
        return self.net

    def optimizer(self, net: nn.Module, hp: TrainingHparams) -> torch.optim.Optimizer:
        params = list(net.scores) + list(net.bias_scores)
        if hp.optimizer == "adam":
            return torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov,
                               weight_decay=hp.weight_decay)

    def lr(self, hp: TrainingHparams, step: int) -> float:
        return cosine_lr(hp, step)

    def before_forward(self, step: int, net: nn.Module) -> None:
        net.cached = None  # a training step computes its masks (and their straight-through gradients) anew
        net.sample_seed = derive_seed(self.seed, "supermask", step) if self.spec.method == "supermask" else None

    def evaluation(self, net: nn.Module) -> nn.Module:
        net.sample_seed = None  # the deterministic mask
        net.cache_masks()  # once per evaluation, not once per batch: the scores do not change within one
        return net

    def load_checkpoint(self, net: nn.Module, state: dict[str, Any]) -> None:
        if "scores" not in state:  # the loop's own format
            return super().load_checkpoint(net, state)
        with torch.no_grad():  # a checkpoint of the earlier strong-ticket loop: scores and buffers only
            for s, saved in zip(net.scores, state["scores"]):
                s.copy_(saved)
            for name, b in net.model.named_buffers():
                b.copy_(state["buffers"][name])

    def finish(self, net: nn.Module, optimizer: torch.optim.Optimizer, result: Any) -> None:
        net.sample_seed, net.cached = None, None
        changed = [k for k, v in net.model.named_parameters() if not torch.equal(v.detach(), self.frozen[k])]
        if changed:
            raise RuntimeError(f"frozen weights changed while learning a mask: {changed}")


@dataclass
class Learned:
    mask: Mask
    result: TrainResult
    weights_changed: list[str]  # names of module parameters that differ bitwise from before: must be []
    buffers: dict[str, torch.Tensor]  # the model's state after learning (BN running statistics updated)
    bias_mask: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)  # spec.bias_mask: bias -> mask


def learn_mask(model: nn.Module, data: DataSplits, hp: TrainingHparams, spec: StrongSpec, *, seed: int,
               checkpoint: Path | None = None, checkpoint_every: int = 1000,
               progress: Callable[[int, int], None] | None = None) -> Learned:
    """Learn an edge-popup or supermask mask on `model`'s frozen weights (prepare_frozen first) with the one
    training loop (training.loop.train under a ScoresPolicy). `seed` drives the score init, batch order,
    augmentation, dropout and Bernoulli draws. Raises Diverged when the loss or the scores stop being
    finite, RuntimeError if any weight changed."""
    spec.check()
    if spec.method not in ("edge-popup", "supermask"):
        raise TicketlabError(f"{spec.method} is not learned: use large_final_same_sign")
    policy = ScoresPolicy(spec, seed)
    result = train(model, data, hp, data_seed=seed, policy=policy, hooks=Hooks(progress=progress),
                   checkpoint=Checkpointing(checkpoint, checkpoint_every) if checkpoint else None)
    return Learned(policy.net.binary_mask(), result, [],
                   {k: v.detach().clone() for k, v in model.state_dict().items()}, policy.net.binary_bias_mask())


def summary_of(result: TrainResult) -> dict[str, Any]:
    """TrainResult.summary plus the test losses (regression tasks have no accuracy)."""
    es = result.early_stop
    return {**result.summary(), "early_stop_test_loss": es["test_loss"] if es else None,
            "final_test_loss": result.final["test_loss"]}
