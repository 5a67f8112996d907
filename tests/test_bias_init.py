"""model.bias_init: zeros (the default, every stored folder's) or fan_in_uniform (PyTorch's default bias draw, which
OpenLTH keeps: U(-1/sqrt(fan_in), 1/sqrt(fan_in))), the OpenLTH presets' (cifar_resnet_*, cifar_vgg_*)."""

import math

import pytest
import torch
from torch import nn

from ticketlab import build_config
from ticketlab.cli import parser
from ticketlab.cli.study import config_from_args
from ticketlab.config import ModelHparams
from ticketlab.errors import TicketlabError
from ticketlab.pruning import REVISIONS
from ticketlab.identity import dense_identity, digest, lottery_identity, model_signature
from ticketlab.models import build_model, construct
from ticketlab.models.init import INITS, LAYERS, NORMS
from ticketlab.models.registry import bias_init_of

DATA = "0123456789abcdef"  # a data fingerprint, as in test_identity.py
CPU1 = {"device": "cpu", "threads": 1}
CIFAR = (3, 32, 32)


def biased_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, LAYERS) and m.bias is not None]


def nonzero_biases(model: nn.Module) -> int:
    return sum(int((m.bias != 0).sum()) for m in biased_layers(model))


def fan_in(layer: nn.Module) -> int:  # in x kernel size, as PyTorch's reset_parameters computes it
    return layer.weight[0].numel()


def preset_model(name: str, shape=CIFAR, seed: int = 0, **model) -> nn.Module:
    config = build_config({"model": {"name": name, **model}, "dataset": {"name": "cifar10"}})
    return build_model(config.model, shape, 10, seed=seed)


def test_the_openlth_presets_draw_every_bias_and_the_lth_paper_ones_none():
    # VGG-16's conv biases: 64 + 64 + 128 + 128 + 3 x 256 + 6 x 512 = 4,224, and fc's 10: 4,234, all non-zero
    # (a uniform draw is 0 with probability 0), as OpenLTH's nn.Conv2d/nn.Linear constructors leave them.
    vgg = preset_model("cifar_vgg_16")
    assert sum(m.bias.numel() for m in biased_layers(vgg)) == 4_234 == nonzero_biases(vgg)
    # ResNet-20: its convs have no bias (batch norm follows each); fc's 10 are its only ones.
    resnet = preset_model("cifar_resnet_20")
    assert [(n, p.numel()) for n, p in resnet.named_parameters() if n.endswith("bias") and
            not isinstance(resnet.get_submodule(n.rsplit(".", 1)[0]), NORMS)] == [("fc.bias", 10)]
    assert nonzero_biases(resnet) == 10
    # Batch-norm shifts stay 0 (OpenLTH's BN inits set beta = 0, as PyTorch's default does).
    for model in (vgg, resnet):
        assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in model.modules() if isinstance(m, NORMS))
    # LeNet-300-100 (OpenLTH's mnist_lenet_300_100): 300 + 100 + 10 = 410 biases when asked for; its preset is
    # the LTH paper's, whose TF code zeroes them (REFERENCE.md 2.5), so it keeps zeros
    lenet = build_model(ModelHparams("lenet_300_100", bias_init="fan_in_uniform"), (1, 28, 28), 10, seed=0)
    assert nonzero_biases(lenet) == 410
    assert bias_init_of(build_config({"model": {"name": "lenet_300_100"}}).model) == "zeros"
    assert bias_init_of(build_config({"model": {"name": "conv4"}}).model) == "zeros"
    assert bias_init_of(ModelHparams("cifar_vgg_16")) == "fan_in_uniform"  # alone, as through build_config


def test_each_bias_lies_within_its_bound_and_spreads_as_the_uniform_law():
    # U(-b, b), b = 1/sqrt(fan_in): |bias| < b, the largest of n draws near b (expected 1 - 1/(n+1) of it) and
    # the variance b^2 / 3 = 1 / (3 fan_in). For n >= 256 the sample variance's relative standard deviation is
    # sqrt((1/5 - 1/9) / n) / (1/3) <= 0.056, so 25% is over 4 of them; the seed is fixed, so neither check
    # can fail by chance.
    checked = 0
    for model in (preset_model("cifar_vgg_16", seed=1),
                  build_model(ModelHparams("lenet_300_100", bias_init="fan_in_uniform"), (1, 28, 28), 10, seed=1)):
        for layer in biased_layers(model):
            bias, bound = layer.bias.detach(), 1 / math.sqrt(fan_in(layer))
            assert float(bias.abs().max()) <= bound
            if bias.numel() >= 256:
                assert float(bias.abs().max()) / bound > 0.97
                assert float(bias.var(unbiased=False)) * 3 * fan_in(layer) == pytest.approx(1, rel=0.25)
                checked += 1
    assert checked == 9 + 1  # VGG-16's 3 x 256 + 6 x 512 convs and LeNet's 300 hidden units


def test_a_seeds_weights_and_bn_scales_are_the_same_under_both_bias_inits():
    for name, shape in (("cifar_resnet_8_2", (3, 16, 16)), ("cifar_vgg_11", CIFAR), ("lenet_300_100", (1, 28, 28))):
        zeros = build_model(ModelHparams(name, bias_init="zeros"), shape, 10, seed=5).state_dict()
        uniform = build_model(ModelHparams(name, bias_init="fan_in_uniform"), shape, 10, seed=5).state_dict()
        differ = [k for k in zeros if not torch.equal(zeros[k], uniform[k])]
        model = construct(ModelHparams(name), shape, 10)
        assert differ == [f"{n}.bias" for n, m in model.named_modules() if m in biased_layers(model)]


def _before_bias_inits(model: nn.Module, scheme: str, generator: torch.Generator) -> None:
    """initialize as it was before bias inits existed: one pass, weights drawn, biases zeroed, BN ~ U[0, 1]."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LAYERS):
                INITS[scheme](module.weight, generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, NORMS) and module.affine:
                module.weight.uniform_(0.0, 1.0, generator=generator)
                module.bias.zero_()


def test_zeros_draws_exactly_what_was_drawn_before():
    for name, scheme, shape in (("cifar_resnet_8_2", "kaiming_normal", (3, 16, 16)),
                                ("cifar_vgg_11", "kaiming_normal", CIFAR),
                                ("lenet_300_100", "glorot_normal", (1, 28, 28)), ("conv2", "glorot_normal", CIFAR)):
        hp = ModelHparams(name, init=scheme, bias_init="zeros", width=0.25 if "vgg" in name else 1.0)
        now = build_model(hp, shape, 10, seed=3).state_dict()
        before = construct(hp, shape, 10)
        _before_bias_inits(before, scheme, torch.Generator().manual_seed(3))
        assert all(torch.equal(now[k], v) for k, v in before.state_dict().items())


def _identities(config, shape=CIFAR):
    with torch.device("meta"):
        signature = model_signature(construct(config.model, shape, 10))
    dense = dense_identity(config, DATA, signature, CPU1)
    return digest(dense), digest(lottery_identity(dense, config, revisions=REVISIONS))


def test_explicit_zeros_on_an_openlth_preset_names_the_folders_named_before_and_the_preset_new_ones():
    # Computed with the code before bias_init existed (HEAD 68156aa, these identity functions): the folders of
    # the zero-bias results, which `--bias-init zeros` keeps finding.
    before = {"cifar_resnet_20": ("d15a032e80e2aa64", "89c07e9fb0b58b37"),
              "cifar_vgg_16": ("0b6fea22946671f5", "f59b6084dd792551")}
    for name, folders in before.items():
        # (--prune-counting ticketlab: the level counts of those runs, before the presets counted as OpenLTH)
        args = ["lottery", "--model", name, "--dataset", "cifar10", "--bias-init", "zeros", "--prune-counting",
                "ticketlab"]
        zeros = config_from_args(parser().parse_args(args), "lottery")
        assert zeros.model.bias_init == "zeros" and _identities(zeros) == folders
        preset = build_config({"model": {"name": name}, "dataset": {"name": "cifar10"}})
        assert preset.model.bias_init == "fan_in_uniform"
        new = _identities(preset)
        assert new[0] != folders[0] and new[1] != folders[1]  # other biases: other results, other folders
    # LeNet (zeros in its preset) keeps its folders whether or not the flag is given
    lenet = ["lottery", "--model", "lenet_300_100", "--dataset", "mnist"]
    assert _identities(config_from_args(parser().parse_args(lenet), "lottery"), (1, 28, 28)) == \
        _identities(config_from_args(parser().parse_args([*lenet, "--bias-init", "zeros"]), "lottery"), (1, 28, 28))


def test_planted_networks_refuse_a_bias_init_and_bad_names_are_one_line():
    with pytest.raises(TicketlabError, match="--bias-init .* has no effect here: it applies only with a model "
                                             "whose weights are drawn"):
        build_config({"model": {"name": "planted_circle_5_50", "bias_init": "fan_in_uniform"}})
    with pytest.raises(TicketlabError, match="has no effect here"):  # any value a user gives: it is a construction
        build_config({"model": {"name": "planted_circle_5_50", "bias_init": "zeros"}})
    with pytest.raises(TicketlabError, match="planted_circle_5_50: model.bias_init does not apply"):
        build_model(ModelHparams("planted_circle_5_50", bias_init="fan_in_uniform"), (2,), 4, seed=0)
    with pytest.raises(TicketlabError, match="unknown bias init 'zero' .*choose one of: preset, zeros, "
                                             "fan_in_uniform"):
        build_config({"model": {"name": "cifar_resnet_20", "bias_init": "zero"}, "dataset": {"name": "cifar10"}})
    with pytest.raises(SystemExit):  # the flag's choices: argparse says it in one line
        parser().parse_args(["lottery", "--bias-init", "uniform"])
