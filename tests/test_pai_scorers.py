"""Pruning-at-initialisation scorers against hand-computed cases on tiny networks."""

import pytest
import torch
from torch import nn

from ticketlab import Mask, prune
from ticketlab.pruning import SCORERS
from ticketlab.pruning.grasp import TEMPERATURE

GEN = torch.Generator().manual_seed(0)


def tiny(bias: bool = False, bn: bool = False) -> nn.Module:
    torch.manual_seed(1)
    layers = [nn.Linear(4, 3, bias=bias)] + ([nn.BatchNorm1d(3)] if bn else []) + [nn.ReLU(), nn.Linear(3, 2, bias=bias)]
    return nn.Sequential(*layers)


def batch(n: int = 8):
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g)


def test_snip_is_the_normalised_abs_gradient_times_weight():
    model = tiny()
    x, y = batch()
    mask = Mask.ones(model)
    loss = nn.functional.cross_entropy(model(x), y)
    g = torch.autograd.grad(loss, [model[0].weight, model[2].weight])
    raw = [(g[0] * model[0].weight).abs(), (g[1] * model[2].weight).abs()]
    total = sum(r.sum() for r in raw)
    scores = SCORERS["snip"](model, (x, y), mask, GEN)
    assert torch.allclose(scores["0.weight"], raw[0] / total) and torch.allclose(scores["2.weight"], raw[1] / total)


def test_synflow_is_abs_weight_times_the_path_sum_gradient():
    model = tiny()
    w1, w2 = model[0].weight.detach().abs().double(), model[2].weight.detach().abs().double()
    # R = 1^T |W2| |W1| 1 (all-ones input, every activation positive: the ReLU passes everything)
    expect1 = w1 * w2.sum(0)[:, None]  # dR/dW1[i, j] = sum_k |W2|[k, i]
    expect2 = w2 * w1.sum(1)[None, :]  # dR/dW2[k, i] = sum_j |W1|[i, j]
    scores = SCORERS["synflow"](model, batch(), Mask.ones(model), GEN)
    assert torch.allclose(scores["0.weight"], expect1) and torch.allclose(scores["2.weight"], expect2)
    # a masked weight carries no flow: its path products are 0
    mask = Mask({"0.weight": torch.ones(3, 4).index_fill_(0, torch.tensor([1]), 0), "2.weight": torch.ones(2, 3)})
    masked = SCORERS["synflow"](model, batch(), mask, GEN)
    assert torch.all(masked["0.weight"][1] == 0) and torch.all(masked["2.weight"][:, 1] == 0)


def test_grasp_follows_the_published_sign_convention():
    model = tiny()
    x, y = batch(10)
    params = [model[0].weight, model[2].weight]
    shapes = [p.shape for p in params]
    flat = torch.cat([p.detach().flatten() for p in params]).requires_grad_()

    def loss(v):
        a, b = v[:12].view(shapes[0]), v[12:].view(shapes[1])
        return nn.functional.cross_entropy(torch.relu(x @ a.T) @ b.T / TEMPERATURE, y)

    g = torch.autograd.grad(loss(flat), flat)[0]
    hg = torch.autograd.functional.hessian(loss, flat.detach()) @ g
    published = -flat.detach() * hg  # S(-w) = -w * Hg; GraSP removes the largest S
    keep = -published  # the keep-score: w * Hg (scaled by 1 / |sum|, which the ranking ignores)
    scores = SCORERS["grasp"](model, (x, y), Mask.ones(model), GEN)
    got = torch.cat([scores["0.weight"].flatten(), scores["2.weight"].flatten()])
    assert torch.allclose(got / got.norm(), keep / keep.norm(), atol=1e-5)
    mask = prune(model, density=0.5, scorer="grasp", allocation="global", batch=(x, y))
    kept = torch.cat([mask["0.weight"].flatten(), mask["2.weight"].flatten()])
    assert published[kept].max() <= published[~kept].min()  # the largest S were removed


@pytest.mark.parametrize("name", ["snip", "grasp", "synflow", "magnitude", "random"])
def test_scoring_leaves_the_model_untouched(name):
    model = tiny(bias=True, bn=True).train()
    with torch.no_grad():
        model[1].running_mean.fill_(0.3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    mask = prune(model, density=0.5, scorer=name, allocation="global", batch=batch())
    assert mask.density() == pytest.approx(0.5, abs=0.05)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training and torch.equal(rng, torch.get_rng_state())
    assert all(p.grad is None for p in model.parameters())


def test_iterative_synflow_reaches_the_target_density_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))
    total = 64 * 32 + 32 * 16 + 16 * 10
    for density in (0.1, 0.01):
        mask = prune(model, density=density, scorer="synflow", allocation="global", schedule="exponential",
                     rounds=20, batch=(torch.zeros(1, 64), torch.zeros(1, dtype=torch.long)))
        assert sum(mask.counts().values()) == round(density * total)
        assert all(c > 0 for c in mask.counts().values())  # SynFlow avoids layer collapse
