"""Configs: presets, TOML, step units, validation, and hashes pinned so stored runs stay findable."""

import pytest

from ticketlab import TicketlabError, build_config
from ticketlab.config import parse_steps
from ticketlab.data import dataset_info
from ticketlab.pruning import ALLOCATIONS, register_allocation


def test_presets_follow_the_paper():
    lenet = build_config({})
    assert (lenet.training.optimizer, lenet.training.lr, lenet.training.batch_size, lenet.training.train_steps) == \
        ("adam", 1.2e-3, 60, 50_000)
    assert (lenet.pruning.rate, lenet.pruning.output_rate, lenet.training.eval_every) == (0.2, 0.1, 100)
    conv6 = build_config({"model": {"name": "conv6"}})
    assert (conv6.training.lr, conv6.training.train_steps, conv6.pruning.conv_rate) == (3e-4, 30_000, 0.15)


@pytest.mark.parametrize("text,steps", [(500, 500), ("500", 500), ("500it", 500), ("2ep", 200), ("1ep10it", 110)])
def test_step_units(text, steps):
    assert parse_steps(text, steps_per_epoch=100, name="x") == steps


@pytest.mark.parametrize("overrides,message", [
    ({"training": {"lr": -1}}, "lr must be > 0"),
    ({"pruning": {"rate": 1.0}}, r"rate must be in \[0, 1\)"),
    ({"pruning": {"output_rate": 1.5}}, "output_rate"),
    ({"training": {"bogus": 1}}, "unknown key"),
    ({"training": {"train_steps": "ten"}}, "cannot read"),
    ({"training": {"batch_size": "x"}}, "expected int"),
    ({"lottery": {"rewind_step": 60_000}}, "rewind_step"),
    ({"whatever": {}}, "unknown config key"),
])
def test_bad_values_raise_one_clear_error(overrides, message):
    with pytest.raises(TicketlabError, match=message):
        build_config(overrides)


def test_the_readme_toml_example_is_a_valid_config():
    import re
    import tomllib
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"```toml\n(.*?)```", readme, re.S).group(1)
    config = build_config(tomllib.loads(block), steps_per_epoch=916)
    assert config.training.milestones == (30_000,) and config.pruning.layer_rates == (("hidden.1.weight", 0.3),)


def test_epochs_resolve_from_the_data_set_size_as_the_cli_does():
    # steps per epoch = (training examples - validation examples) // batch size, as the batches are drawn.
    assert dataset_info("synthetic").train_size == 3000
    config = build_config({"dataset": {"name": "synthetic", "val_size": 500},
                           "training": {"train_steps": "2ep", "batch_size": 32}})
    assert config.training.train_steps == 2 * (3000 - 500) // 32 == 156
    # Batch size and val_size as resolved after the preset: conv2's batch 60, the default 5,000 held out.
    conv2 = build_config({"model": {"name": "conv2"}, "dataset": {"name": "cifar10"},
                          "training": {"train_steps": "3ep", "milestones": ["1ep", "2ep"], "eval_every": "1ep",
                                       "warmup_steps": "0ep10it"},
                          "lottery": {"rewind_step": "1ep10it"}})
    spe = (50_000 - 5000) // 60
    assert (conv2.training.train_steps, conv2.training.milestones, conv2.training.eval_every) == \
        (3 * spe, (spe, 2 * spe), spe)
    assert (conv2.training.warmup_steps, conv2.lottery.rewind_step) == (10, spe + 10)


def test_explicit_steps_per_epoch_wins():
    overrides = {"dataset": {"name": "synthetic", "val_size": 500}, "training": {"train_steps": "2ep"}}
    assert build_config(overrides, steps_per_epoch=10).training.train_steps == 20
    with pytest.raises(TicketlabError, match="steps_per_epoch must be a whole number >= 1"):
        build_config(overrides, steps_per_epoch=0)


def test_epochs_on_a_data_set_of_unknown_size_raise_but_steps_do_not():
    overrides = {"dataset": {"name": "my_own_data"}, "training": {"train_steps": "2ep"}}
    with pytest.raises(TicketlabError, match=r"training\.train_steps: '2ep' counts epochs, but the size of dataset "
                                             r"'my_own_data' is unknown .*pass steps_per_epoch"):
        build_config(overrides)
    with pytest.raises(TicketlabError, match="milestones: '1ep' counts epochs"):
        build_config({"dataset": {"name": "my_own_data"}, "training": {"milestones": ["1ep"]}})
    assert build_config(overrides, steps_per_epoch=7).training.train_steps == 14
    assert build_config({"dataset": {"name": "my_own_data"},
                         "training": {"train_steps": "500it", "eval_every": 50}}).training.train_steps == 500


def test_a_model_the_registry_does_not_know_has_no_preset():
    config = build_config({"model": {"name": "someone_elses_net"}})
    assert config.model.name == "someone_elses_net"
    assert (config.training.lr, config.pruning.output_rate) == (1.2e-3, None)  # dataclass defaults


@pytest.mark.parametrize("overrides,message", [
    ({"dataset": {"name": "synthetic", "val_size": 3000}, "training": {"train_steps": "1ep"}},
     r"val_size must be in \[0, 3000\)"),
    ({"dataset": {"name": "synthetic", "val_size": 500}, "training": {"train_steps": "1ep", "batch_size": 0}},
     "batch_size must be > 0"),
    ({"model": "conv2"}, r"section \[model\] must be a table"),
])
def test_bad_values_behind_epochs_raise_one_clear_error(overrides, message):
    with pytest.raises(TicketlabError, match=message):
        build_config(overrides)


@pytest.mark.parametrize("seed", [-1, 2**63, 99999999999999999999999, True, False])
def test_a_seed_out_of_range_or_not_a_number_is_one_clear_error(seed):
    with pytest.raises(TicketlabError, match=rf"^seed must be a whole number in \[0, 2\^63 - 1\], got {seed!r}$"):
        build_config({"seed": seed})


def test_the_seed_range_is_inclusive():
    assert build_config({"seed": 0}).seed == 0
    assert build_config({"seed": 2**63 - 1}).seed == 2**63 - 1


def test_the_strategy_names_a_registered_allocation():
    assert build_config({"pruning": {"strategy": "uniform"}}).pruning.strategy == "uniform"
    with pytest.raises(TicketlabError, match=r"^pruning\.strategy must be one of layerwise, global, uniform\b.*"
                                             r"got 'sparsest'$"):
        build_config({"pruning": {"strategy": "sparsest"}})


def test_a_user_registered_allocation_is_a_valid_strategy():
    name = "test_config_every_layer_whole"

    @register_allocation(name)
    def whole(layers, density, hp):  # noqa: ANN001, ANN202
        return {(k,): info.size for k, info in layers.items()}

    try:
        assert build_config({"pruning": {"strategy": name}}).pruning.strategy == name
        with pytest.raises(TicketlabError, match=f"must be one of .*{name}"):
            build_config({"pruning": {"strategy": "nope"}})
    finally:
        ALLOCATIONS.pop(name)
    with pytest.raises(TicketlabError, match="pruning.strategy must be one of"):
        build_config({"pruning": {"strategy": name}})


def test_settings_carry_help_but_never_enter_the_values():
    import dataclasses

    from ticketlab.config import STEP_FIELDS, RunConfig, TrainingHparams
    from ticketlab.settings import setting_of

    # the durations are the fields declared steps=True: the same six as before settings existed
    assert STEP_FIELDS == {"train_steps", "milestones", "warmup_steps", "eval_every", "test_every", "rewind_step"}
    lr = next(f for f in dataclasses.fields(TrainingHparams) if f.name == "lr")
    assert (lr.default, setting_of(lr).help, setting_of(lr).preset) == (1.2e-3, "learning rate", True)
    values = dataclasses.asdict(RunConfig())  # what identity hashes: values only, no metadata
    assert values["training"]["lr"] == 1.2e-3 and values["pruning"]["rate"] == 0.2 and values["kind"] == "lottery"
