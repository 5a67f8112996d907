"""Exact masks: pruned weights, their gradients and their optimizer state are exactly 0 after many steps."""

import pytest
import torch

from ticketlab import Mask, TrainingHparams, prunable, train
from ticketlab.masks import MaskApplier
from ticketlab.models import build_model
from ticketlab.config import ModelHparams


def random_mask(model, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Mask({k: torch.rand(p.shape, generator=g) < density for k, p in prunable(model).items()})


@pytest.mark.parametrize("optim", [
    dict(optimizer="adam", lr=1e-2, weight_decay=1e-3),
    dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-3),
    dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True),
])
def test_pruned_weights_grads_and_state_stay_exactly_zero(synthetic, optim):
    model = build_model(ModelHparams(name="mlp_64_32"), synthetic.input_shape, 10, seed=1)
    mask = random_mask(model, 0.3)
    # Training from weights that are NOT zero at pruned positions: installing the mask must zero them.
    hp = TrainingHparams(train_steps=300, eval_every=100, batch_size=32, **optim)
    result = train(model, synthetic, hp, mask, data_seed=0)
    assert result.checks == {"weight": 0.0, "grad": 0.0, "optimizer_state": 0.0}
    moved = 0
    for name, p in prunable(model).items():
        assert torch.all(p[~mask[name]] == 0.0), name
        moved += int((p[mask[name]] != 0).sum())
    assert moved > 0.9 * sum(mask.counts().values())  # the survivors did train


def test_optimizer_state_is_zeroed_when_a_mask_is_installed():
    layer = torch.nn.Linear(4, 3)
    model = torch.nn.Sequential(layer)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    mask = Mask({"0.weight": torch.tensor([[1, 0, 1, 0]] * 3)})
    MaskApplier(model, mask).optimizer_state(opt)
    for value in opt.state[layer.weight].values():
        if torch.is_tensor(value) and value.shape == layer.weight.shape:
            assert torch.all(value[:, 1] == 0) and torch.all(value[:, 0] != 0)


def test_mask_checks_its_keys_shapes_and_values(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    with pytest.raises(Exception, match="does not fit"):
        Mask({"other.weight": torch.ones(3, 4)}).check_matches(model)
    with pytest.raises(Exception, match="shape"):
        Mask({"0.weight": torch.ones(4, 3)}).check_matches(model)
    from safetensors.torch import save_file
    save_file({"0.weight": torch.full((3, 4), 2, dtype=torch.uint8)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(Exception, match="0 or 1"):
        Mask.load(tmp_path / "m.safetensors")
