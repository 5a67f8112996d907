"""Training cost in FLOPs, counted from the active weights (RigL's appendix, REFERENCE.md section 11).

A prunable weight is used `uses` times per example in a forward pass (1 for a linear layer, the output's
spatial positions for a convolution: measured with one forward pass, so any nn.Module works), each use a
multiply and an add. Forward FLOPs of a mask: f = 2 * sum over layers of uses * active weights. A training step
costs 3 f per example (forward, and backward = 2x forward); a RigL update step costs 2 f_S + f_D (the dense
gradient is taken, and the optimizer step is skipped). Biases, normalisation and activations are not counted:
with them the dense and sparse figures would both grow by the same small amount.
"""

from __future__ import annotations

import torch
from torch import nn

from ..masks import prunable


def uses_per_example(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Prunable weight name -> how many times each of its entries is used per example in a forward pass."""
    params = prunable(model)
    owners = {name: model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model for name in params}
    seen: dict[str, int] = {}
    handles = []
    for name, module in owners.items():
        def hook(mod, inputs, output, name=name):  # noqa: ANN001, ANN202
            out = output[0] if isinstance(output, tuple) else output
            seen[name] = int(out[0].numel() // params[name].shape[0])
        handles.append(module.register_forward_hook(hook))
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {name: seen.get(name, 1) for name in params}


def forward_flops(uses: dict[str, int], counts: dict[str, int]) -> int:
    """FLOPs of one example's forward pass through weights with `counts` active per layer."""
    return 2 * sum(uses[name] * counts[name] for name in uses)


def dense_counts(model: nn.Module) -> dict[str, int]:
    return {name: p.numel() for name, p in prunable(model).items()}


def training_flops(uses: dict[str, int], counts: dict[str, int], steps: int, batch_size: int) -> int:
    """`steps` steps of `batch_size` examples with `counts` active weights per layer throughout (a fixed mask;
    dense_counts: a dense run): forward and backward, 3 f per example per step."""
    return 3 * forward_flops(uses, counts) * steps * batch_size
