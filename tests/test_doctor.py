"""The ticket doctor on hand-made masks."""

import torch
from torch import nn

from ticketlab import Mask
from ticketlab.doctor import examine
from ticketlab.models import ConvNet


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))


def masks(**layers):
    full = {"1.weight": torch.ones(3, 4), "3.weight": torch.ones(2, 3), "5.weight": torch.ones(2, 2)}
    return Mask({**full, **layers})


def test_a_dense_network_has_every_path():
    report = examine(mlp(), masks(), (4,))
    assert report["paths"] == 4 * 3 * 2 * 2 and not report["collapsed"]
    assert report["collapsed_layers"] == [] and report["wasted"] == {"1.weight": 0, "3.weight": 0, "5.weight": 0}


def test_a_layer_cut_off_collapses_the_network_even_with_weights_left():
    # every unit of the second layer loses its input... except through hidden unit 0, whose outputs are pruned
    second = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    first = torch.zeros(3, 4)
    first[1] = 1  # unit 1 gets input, but nothing reads unit 1
    report = examine(mlp(), masks(**{"1.weight": first, "3.weight": second}), (4,))
    assert report["collapsed"] and report["paths"] == 0
    assert set(report["collapsed_layers"]) == {"1.weight", "3.weight", "5.weight"}
    assert report["wasted"]["1.weight"] == 4 and report["wasted"]["3.weight"] == 2


def test_an_empty_layer_is_flagged_and_counts_are_compared_with_the_budget():
    report = examine(mlp(), masks(**{"5.weight": torch.zeros(2, 2)}), (4,), budget={("5.weight",): 1,
                                                                                  ("1.weight",): 12,
                                                                                  ("3.weight",): 6})
    assert report["empty_layers"] == ["5.weight"] and report["collapsed"]
    assert report["counts_as_requested"] is False and report["requested"]["5.weight"] == 1


def test_wasted_weights_of_a_dead_unit_in_a_conv_net():
    net = ConvNet((1, 8, 8), [2, 2], 3, fc=(4,))
    mask = Mask({k: torch.ones_like(p, dtype=torch.bool) for k, p in net.state_dict().items()
                 if k.endswith("weight")})
    mask.tensors["convs.1.weight"][0] = False  # output channel 0 of the second conv: no input
    report = examine(net, mask, (1, 8, 8))
    assert not report["collapsed"] and report["wasted"]["convs.1.weight"] == 0
    # the first linear layer's weights reading channel 0 (4 x 4 x 4 positions... 16 per unit) are wasted
    assert report["wasted"]["hidden.0.weight"] == 4 * 16
