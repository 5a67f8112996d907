"""ResNet-D and VGG with batch norm: OpenLTH's parameter counts, 28x28x1 inputs, inits (batch norm included),
presets and config files, a 2-step run of every new model on CIFAR-format files, pruning and batch norm."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ticketlab import build_config, prune
from ticketlab.config import ModelHparams, load_toml
from ticketlab.configure import check_model
from ticketlab.experiments.stability import StabilitySpec, interpolate, recompute_batchnorm
from ticketlab.masks import prunable
from ticketlab.models import build_model, construct, initialize

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def count(name, shape=(3, 32, 32), **hp):
    with torch.device("meta"):
        model = construct(ModelHparams(name, **hp), shape, 10)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,params", [
    ("cifar_resnet_20", 272_474), ("cifar_resnet_56", 855_770), ("cifar_resnet_110", 1_730_714),
    ("cifar_resnet_14_128", 11_093_130), ("cifar_vgg_11", 9_231_114), ("cifar_vgg_16", 14_728_266),
    ("cifar_vgg_19", 20_040_522), ("resnet20", 272_474), ("vgg16", 14_728_266)])
def test_parameter_counts_equal_openlth(name, params):
    assert count(name) == params


def test_width_multiplies_channels_and_input_channels_follow_the_data():
    assert count("cifar_resnet_20", width=2.0) == count("cifar_resnet_20_32")
    assert count("cifar_resnet_20", width=0.01) == count("cifar_resnet_20_1")  # rounded, at least 1
    assert count("cifar_vgg_16", shape=(1, 28, 28)) == 14_728_266 - 2 * 64 * 9  # first conv: 1 input channel
    with torch.device("meta"):
        vgg = construct(ModelHparams("cifar_vgg_11", width=0.5), (3, 32, 32), 10)
    assert vgg.layers[0].conv.out_channels == 32 and vgg.fc.in_features == 256


@pytest.mark.parametrize("name", ["cifar_resnet_20", "cifar_resnet_56_4", "cifar_vgg_11", "cifar_vgg_19"])
def test_28x28_single_channel_inputs(name):
    model = build_model(ModelHparams(name, width=0.125 if "vgg" in name else 1.0), (1, 28, 28), 10, seed=0)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_bad_names_are_one_line_errors():
    from ticketlab.errors import TicketlabError
    with pytest.raises(TicketlabError, match="depth must be 6n \\+ 2"):
        construct(ModelHparams("cifar_resnet_21"), (3, 32, 32), 10)
    with pytest.raises(TicketlabError, match="unknown model 'cifar_vgg_12'"):
        construct(ModelHparams("cifar_vgg_12"), (3, 32, 32), 10)
    with pytest.raises(TicketlabError, match="too small"):
        construct(ModelHparams("cifar_vgg_11"), (3, 8, 8), 10)


def test_inits_kaiming_weights_and_uniform_batchnorm_scales():
    model = build_model(ModelHparams("cifar_resnet_20", init="kaiming_normal"), (3, 32, 32), 10, seed=1)
    again = build_model(ModelHparams("cifar_resnet_20", init="kaiming_normal"), (3, 32, 32), 10, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 19 + 2  # 19 convs + 2 shortcut BNs
    gammas = torch.cat([m.weight for m in norms])
    assert 0 <= gammas.min() and gammas.max() <= 1 and 0.4 < gammas.mean() < 0.6
    assert all(torch.all(m.bias == 0) for m in norms)
    w = model.blocks[4].conv1.weight  # 32 -> 32 3x3: kaiming std sqrt(2 / (32 * 9))
    assert abs(w.std().item() / (2 / (32 * 9)) ** 0.5 - 1) < 0.05
    # the generator draws in module order: conv, then its BN, then the next conv
    g = torch.Generator().manual_seed(1)
    first = torch.empty(model.conv.weight.shape)  # contiguous: the model is drawn before it turns channels_last
    nn.init.kaiming_normal_(first, nonlinearity="relu", generator=g)
    assert torch.equal(first, model.conv.weight)
    assert torch.equal(torch.empty(16).uniform_(0, 1, generator=g), model.bn.weight)
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)  # measured faster (build_model)
    narrow = build_model(ModelHparams("cifar_resnet_20", width=0.25), (3, 32, 32), 10, seed=1)
    assert narrow.conv.weight.is_contiguous()  # 4 channels: channels_last crashed oneDNN (models/memory.py)


def test_a_network_without_batchnorm_draws_what_it_drew_before():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 10))
    initialize(model, "glorot_normal", torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    for layer in (model[0], model[3]):  # the draws of the init before batch norm had one
        expected = nn.init.xavier_normal_(torch.empty_like(layer.weight), generator=g)
        assert torch.equal(expected, layer.weight) and torch.all(layer.bias == 0)


def test_presets_are_openlths_recipes():
    resnet = build_config({"model": {"name": "cifar_resnet_20"}, "dataset": {"name": "cifar10"}})
    t = resnet.training
    epoch = (50_000 - 5_000) // 128
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.batch_size) == ("sgd", 0.1, 0.9, 1e-4, 128)
    assert t.train_steps == 160 * epoch and t.milestones == (80 * epoch, 120 * epoch)
    assert resnet.dataset.augment == "flip_crop" and resnet.model.init == "kaiming_normal"
    assert (resnet.pruning.strategy, resnet.pruning.rate, resnet.pruning.ignore) == ("global", 0.2, ())
    vgg = build_config({"model": {"name": "cifar_vgg_16"}, "dataset": {"name": "cifar10"}})
    assert vgg.pruning.ignore == ("fc.weight",) and vgg.training == resnet.training
    # overrides still win over the preset's [model] and [dataset]
    mine = build_config({"model": {"name": "cifar_resnet_20", "init": "glorot_normal"},
                         "dataset": {"name": "cifar10", "augment": "none"}})
    assert mine.model.init == "glorot_normal" and mine.dataset.augment == "none"


def test_every_prunable_conv_and_linear_weight_shortcuts_included():
    with torch.device("meta"):
        model = construct(ModelHparams("cifar_resnet_20"), (3, 32, 32), 10)
    names = list(prunable(model))
    assert len(names) == 19 + 2 + 1 and names[-1] == "fc.weight"
    assert "blocks.3.shortcut.0.weight" in names and "blocks.6.shortcut.0.weight" in names


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_config_files_parse_and_name_real_layers(path):
    config = build_config(load_toml(path))
    check_model(config, levels=3)  # the ignore lists name weights of the model
    assert config.dataset.name == "cifar10" and config.dataset.augment == "flip_crop"
    assert config.training.optimizer == "sgd" and config.pruning.strategy == "global"


def test_config_files_hold_the_papers_numbers():
    files = {p.stem: build_config(load_toml(p)) for p in CONFIGS.glob("*.toml")}
    assert {"openlth_cifar_resnet_20", "openlth_cifar_vgg_16", "lth_vgg19_warmup", "lth_vgg19_lr0.01",
            "lth_resnet18_warmup", "lth_resnet18_lr0.01", "renda_resnet20", "renda_resnet56"} <= set(files)
    vgg19 = files["lth_vgg19_warmup"].training
    assert (vgg19.lr, vgg19.warmup_steps, vgg19.train_steps, vgg19.batch_size) == (0.1, 10_000, 112_480, 64)
    assert files["lth_vgg19_lr0.01"].training.lr == 0.01 and files["lth_vgg19_lr0.01"].training.warmup_steps == 0
    r18 = files["lth_resnet18_warmup"].training
    assert (r18.lr, r18.warmup_steps, r18.train_steps, r18.milestones) == (0.03, 20_000, 30_000, (20_000, 25_000))
    renda = files["renda_resnet20"].training
    epoch = 45_000 // 128
    assert renda.train_steps == 182 * epoch and renda.milestones == (91 * epoch, 136 * epoch)
    assert files["renda_resnet56"].model.name == "cifar_resnet_56"
    assert files["openlth_cifar_resnet_20"] == build_config({"model": {"name": "cifar_resnet_20"},
                                                             "dataset": {"name": "cifar10"}})  # = the preset


def _write_cifar(folder: Path, n: int = 8) -> None:
    rng = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        batch = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
                 b"labels": rng.integers(0, 10, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))


NEW_MODELS = [("cifar_resnet_20", 0.25), ("cifar_resnet_56", 0.125), ("cifar_resnet_110", 0.125),
              ("cifar_vgg_11", 0.0625), ("cifar_vgg_13", 0.0625), ("cifar_vgg_16", 0.0625), ("cifar_vgg_19", 0.0625)]


def test_two_steps_of_every_new_model_on_cifar_files(tmp_path):
    from ticketlab.experiments.study import StudyPlan, run_study

    _write_cifar(tmp_path)
    for name, width in NEW_MODELS:
        config = build_config({"kind": "train", "dataset": {"name": "cifar10", "val_size": 8},
                               "model": {"name": name, "width": width},
                               "training": {"train_steps": 2, "eval_every": 2, "batch_size": 8}})
        result = run_study(StudyPlan(config), root=tmp_path / "runs", data_dir=tmp_path, download=False)
        (level,) = result.replicates[0]["levels"]
        assert level["status"] == "ok" and level["final_step"] == 2, name
        assert 0 <= level["final_test_accuracy"] <= 1


def test_scoring_never_moves_batchnorm_statistics():
    from ticketlab.pruning import register_scorer
    model = build_model(ModelHparams("cifar_resnet_8_4"), (3, 16, 16), 10, seed=0)
    batch = (torch.randn(20, 3, 16, 16), torch.randint(0, 10, (20,)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for scorer in ("magnitude", "snip", "grasp", "synflow"):
        mask = prune(model, density=0.5, scorer=scorer, allocation="global", batch=batch)
        assert abs(mask.density() - 0.5) < 0.01
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    @register_scorer("_moves_bn_test")
    def moves_bn(model, batch, mask, generator):  # a forward pass in training mode updates running stats
        model.train()
        model(batch[0])
        return {k: p.detach().abs() for k, p in prunable(model).items()}

    with pytest.raises(RuntimeError, match="changed the model"):
        prune(model, density=0.5, scorer="_moves_bn_test", allocation="global", batch=batch)


def test_batchnorm_statistics_recomputed_on_a_resnet_and_paths_evaluated_in_eval_mode(synthetic):
    model = build_model(ModelHparams("cifar_resnet_8_4"), synthetic.input_shape, 10, seed=0)
    x = synthetic.train_x[:600]
    model.bn.running_mean.fill_(5.0)
    recompute_batchnorm(model, x, batch_size=200)
    with torch.no_grad():
        h = model.conv(x)
    assert torch.allclose(model.bn.running_mean, h.mean((0, 2, 3)), atol=1e-4)
    assert model.bn.momentum == 0.1 and model.training  # restored
    # the path: identical ends with wrong statistics give the same errors as recomputed ones, all in eval mode
    a = {k: v.clone() for k, v in build_model(ModelHparams("cifar_resnet_8_4"), synthetic.input_shape, 10,
                                                seed=1).state_dict().items()}
    path = interpolate(model, a, a, synthetic, StabilitySpec(step=0, points=3, train_eval_size=300))
    assert path["test_barrier"] == 0 and len(set(path["test_error"])) == 1
    stale = interpolate(model, a, a, synthetic, StabilitySpec(step=0, points=2, train_eval_size=300,
                                                               recompute_bn=False))
    assert stale["test_error"][0] != path["test_error"][0]  # untrained running stats (0, 1) differ from data's
