"""Configs: presets, TOML, step units, validation, and hashes pinned so stored runs stay findable."""

import pytest

from ticketlab import TicketlabError, build_config
from ticketlab.config import parse_steps


def test_presets_follow_the_paper():
    lenet = build_config({})
    assert (lenet.training.optimizer, lenet.training.lr, lenet.training.batch_size, lenet.training.train_steps) == \
        ("adam", 1.2e-3, 60, 50_000)
    assert (lenet.pruning.rate, lenet.pruning.output_rate, lenet.training.eval_every) == (0.2, 0.1, 100)
    conv6 = build_config({"model": {"name": "conv6"}})
    assert (conv6.training.lr, conv6.training.train_steps, conv6.pruning.conv_rate) == (3e-4, 30_000, 0.15)


def test_hashes_are_pinned():
    # Changing these breaks every stored run: add new fields with a "no change" default instead.
    assert build_config({}).hash() == "a5f256897f2b42f2"
    assert build_config({"model": {"name": "conv4"}, "lottery": {"levels": 5}}).hash() == "33d00af3e8d83e54"


def test_seed_and_order_do_not_change_the_hash_but_values_do():
    a = build_config({"seed": 1, "training": {"lr": 0.01, "batch_size": 32}})
    b = build_config({"seed": 2, "training": {"batch_size": 32, "lr": 0.01}})
    assert a.hash() == b.hash()
    assert a.hash() != build_config({"training": {"lr": 0.02, "batch_size": 32}}).hash()


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
