"""The model registry: lookups, families by pattern, a user's own model by name with its preset, errors,
seeded weights, and the parameter counts of the paper's networks."""

import math

import pytest
import torch
from torch import nn

from ticketlab import ModelHparams, TicketlabError, build_config
from ticketlab.models import (MLP, MODEL_NAMES, ConvNet, build_model, initialize, model_entry, preset_for,
                              register_model)
from ticketlab.models import registry


@pytest.fixture
def clean_registry():
    """Registrations made by a test are undone afterwards."""
    saved = dict(registry._EXACT), dict(registry._PATTERNS), list(MODEL_NAMES)
    yield
    registry._EXACT.clear(), registry._EXACT.update(saved[0])
    registry._PATTERNS.clear(), registry._PATTERNS.update(saved[1])
    MODEL_NAMES[:] = saved[2]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_built_in_models_are_registered_with_the_paper_presets():
    assert MODEL_NAMES[:5] == ["lenet_300_100", "mlp_<w1>_<w2>_..", "conv2", "conv4", "conv6"]
    assert model_entry("conv4").name == "conv4"
    lenet = {"training": {"optimizer": "adam", "lr": 1.2e-3, "batch_size": 60, "train_steps": 50_000},
             "pruning": {"strategy": "layerwise", "rate": 0.2, "output_rate": 0.1}}
    assert preset_for("lenet_300_100") == lenet
    for name, lr, steps, conv_rate in [("conv2", 2e-4, 20_000, 0.1), ("conv4", 3e-4, 25_000, 0.1),
                                       ("conv6", 3e-4, 30_000, 0.15)]:
        assert preset_for(name) == {
            "training": {"optimizer": "adam", "lr": lr, "batch_size": 60, "train_steps": steps},
            "pruning": {"strategy": "layerwise", "rate": 0.2, "conv_rate": conv_rate, "output_rate": 0.1}}
    assert preset_for("nobody_registered_this") == {}
    preset_for("conv2")["training"]["lr"] = 1.0  # a copy: the registry is untouched
    assert preset_for("conv2")["training"]["lr"] == 2e-4


def test_a_family_is_matched_by_its_pattern():
    assert model_entry("mlp_32_16").name == "mlp_<w1>_<w2>_.."
    assert preset_for("mlp_32_16") == preset_for("lenet_300_100")
    model = build_model(ModelHparams("mlp_32_16"), (1, 4, 4), 3, seed=0)
    assert [tuple(m.weight.shape) for m in model.modules() if isinstance(m, nn.Linear)] == [(32, 16), (16, 32),
                                                                                           (3, 16)]
    for name in ("mlp_", "mlp_32_x", "mlp", "xmlp_32"):
        with pytest.raises(TicketlabError, match="unknown model"):
            model_entry(name)


def test_a_users_model_works_by_name_with_its_preset(clean_registry):
    def tiny(hp, input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 8), nn.ReLU(),
                             nn.Dropout(hp.dropout), nn.Linear(8, num_classes))

    register_model("tiny", tiny, preset={"training": {"lr": 3e-3, "train_steps": "2ep", "batch_size": 50},
                                         "pruning": {"rate": 0.5}}, help="one hidden layer of 8")
    assert "tiny" in MODEL_NAMES and model_entry("tiny").help == "one hidden layer of 8"
    config = build_config({"model": {"name": "tiny"}, "dataset": {"name": "synthetic", "val_size": 500},
                           "pruning": {"rate": 0.3}})
    # The preset sits between the defaults and the overrides; its "2ep" uses its own batch size.
    assert (config.training.lr, config.training.train_steps, config.pruning.rate) == (3e-3, 2 * 2500 // 50, 0.3)
    model = build_model(config.model, (1, 8, 8), 4, seed=config.seed)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 4)
    assert torch.all(model[1].bias == 0)  # initialised by the registry, from hp.init


def test_exact_names_win_over_patterns_and_a_later_pattern_over_an_earlier(clean_registry):
    register_model("mlp_7", lambda hp, s, c: MLP(s, [5], c), preset={"training": {"lr": 0.5}})
    assert model_entry("mlp_7").name == "mlp_7" and preset_for("mlp_7") == {"training": {"lr": 0.5}}
    assert [m.out_features for m in build_model(ModelHparams("mlp_7"), (3,), 2, 0).modules()
            if isinstance(m, nn.Linear)] == [5, 2]
    register_model("mlp_<odd>", lambda hp, s, c: MLP(s, [1], c), pattern=r"mlp_\d*[13579]")
    assert model_entry("mlp_9").name == "mlp_<odd>" and model_entry("mlp_8").name == "mlp_<w1>_<w2>_.."
    assert model_entry("mlp_7").name == "mlp_7"


def test_unknown_names_and_bad_registrations_raise_one_clear_error(clean_registry):
    with pytest.raises(TicketlabError, match=r"unknown model 'resnet9000'; choose one of: lenet_300_100, "
                                             r"mlp_<w1>_<w2>_.., conv2, conv4, conv6"):
        build_model(ModelHparams("resnet9000"), (1, 28, 28), 10, seed=0)
    with pytest.raises(TicketlabError, match="unknown key.*preset \\[training\\]: lrr"):
        register_model("x", lambda hp, s, c: nn.Linear(1, 1), preset={"training": {"lrr": 1}})
    with pytest.raises(TicketlabError, match="preset section 'model'"):
        register_model("x", lambda hp, s, c: nn.Linear(1, 1), preset={"model": {"name": "conv2"}})
    with pytest.raises(TicketlabError, match="bad pattern"):
        register_model("x", lambda hp, s, c: nn.Linear(1, 1), pattern="(")
    assert "x" not in MODEL_NAMES


def test_builder_errors_are_one_line_ticketlab_errors(clean_registry):
    with pytest.raises(TicketlabError, match="^conv6: input 4x4 is too small for 6 conv layers$"):
        build_model(ModelHparams("conv6"), (3, 4, 4), 10, seed=0)
    with pytest.raises(TicketlabError, match=r"^conv2 needs image inputs \[C, H, W\], got shape \(784,\)$"):
        build_model(ModelHparams("conv2"), (784,), 10, seed=0)

    def broken(hp, input_shape, num_classes):
        raise RuntimeError("shapes do not fit\nsecond line")

    register_model("broken", broken)
    with pytest.raises(TicketlabError) as info:
        build_model(ModelHparams("broken"), (1, 2, 2), 3, seed=0)
    assert str(info.value) == ("broken: cannot be built for input shape (1, 2, 2) and 3 classes: "
                               "RuntimeError: shapes do not fit second line")
    register_model("not_a_module", lambda hp, s, c: "oops")
    with pytest.raises(TicketlabError, match="not_a_module: its builder returned str, not an nn.Module"):
        build_model(ModelHparams("not_a_module"), (1,), 2, seed=0)


def test_same_seed_same_weights_as_before_the_registry():
    hp = ModelHparams("lenet_300_100")
    a, b = build_model(hp, (1, 28, 28), 10, seed=3), build_model(hp, (1, 28, 28), 10, seed=3)
    # Exactly what build_model did before the registry: the network, then hp.init from a seeded generator.
    c = MLP((1, 28, 28), [300, 100], 10)
    initialize(c, "glorot_normal", torch.Generator().manual_seed(3))  # "preset" on LeNet: the paper's Glorot
    for pa, pb, pc in zip(a.state_dict().values(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb) and torch.equal(pa, pc)
    other = build_model(hp, (1, 28, 28), 10, seed=4)
    assert not torch.equal(a.state_dict()["hidden.0.weight"], other.state_dict()["hidden.0.weight"])
    conv = build_model(ModelHparams("conv2", init="kaiming_normal"), (3, 32, 32), 10, seed=1)
    d = ConvNet((3, 32, 32), [64, 64], 10)
    initialize(d, "kaiming_normal", torch.Generator().manual_seed(1))
    assert all(torch.equal(p, q) for p, q in zip(conv.state_dict().values(), d.state_dict().values()))


def test_model_hparams_alone_draw_the_models_preset_init_as_the_cli_does():
    """A Python user's ModelHparams("cifar_resnet_8_2") draws the preset's Kaiming weights, as `--model` does;
    an explicit init wins, and "preset" without a preset init is the paper's Glorot."""
    alone = build_model(ModelHparams("cifar_resnet_8_2"), (3, 16, 16), 10, seed=2)
    cli = build_model(build_config({"model": {"name": "cifar_resnet_8_2"}}).model, (3, 16, 16), 10, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(alone.state_dict().values(), cli.state_dict().values()))
    glorot = build_model(ModelHparams("cifar_resnet_8_2", init="glorot_normal"), (3, 16, 16), 10, seed=2)
    assert not torch.equal(glorot.conv.weight, alone.conv.weight)
    # --init glorot_normal where the preset names none draws what "preset" draws, and names the same folder: the
    # one named before "preset" existed (the identity holds resolved values, the old defaults left out)
    from ticketlab.identity import model_fields
    assert model_fields(build_config({"model": {"init": "glorot_normal"}}).model) == model_fields(ModelHparams()) \
        == {}
    assert model_fields(ModelHparams("cifar_resnet_8_2")) == model_fields(build_config(
        {"model": {"name": "cifar_resnet_8_2"}}).model) == {"name": "cifar_resnet_8_2", "init": "kaiming_normal",
                                                             "bias_init": "fan_in_uniform"}


def test_parameter_counts_of_the_paper_networks():
    # Weights and biases. LeNet-300-100 on 28x28: (784*300 + 300) + (300*100 + 100) + (100*10 + 10)
    # = 235,500 + 30,100 + 1,010 = 266,610 (the paper's 266K weights plus 410 biases).
    assert n_params(build_model(ModelHparams("lenet_300_100"), (1, 28, 28), 10, seed=0)) == 266_610
    # Conv-2/4/6 on 3x32x32 (3x3 same-padded convs, a 2x2 max-pool after each pair, FC 256, 256, 10):
    # conv 3->64: 3*64*9 + 64 = 1,792;  64->64: 64*64*9 + 64 = 36,928;  64->128: 64*128*9 + 128 = 73,856;
    # 128->128: 128*128*9 + 128 = 147,584;  128->256: 128*256*9 + 256 = 295,168;  256->256: 256*256*9 + 256 = 590,080.
    # FC tail from a flatten of f: (f*256 + 256) + (256*256 + 256) + (256*10 + 10) = 256f + 256 + 65,792 + 2,570.
    # Conv-2: convs 38,720; f = 64*16*16 = 16,384 -> 4,194,560 + 68,362; total 4,301,642.
    # Conv-4: convs 260,160; f = 128*8*8 = 8,192 -> 2,097,408 + 68,362; total 2,425,930.
    # Conv-6: convs 1,145,408; f = 256*4*4 = 4,096 -> 1,048,832 + 68,362; total 2,262,602.
    expected = {"conv2": 4_301_642, "conv4": 2_425_930, "conv6": 2_262_602}
    for name, count in expected.items():
        assert n_params(build_model(ModelHparams(name), (3, 32, 32), 10, seed=0)) == count
