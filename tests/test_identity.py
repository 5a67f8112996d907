"""Identity: folders are named by exactly what determines their results; the canonical forms are pinned."""

import dataclasses

import torch

from ticketlab import build_config
from ticketlab.pruning import REVISIONS
from ticketlab.identity import dense_identity, digest, lottery_identity, model_signature, numerics
from ticketlab.models import build_model
from ticketlab.seeds import derive_seed, streams

DATA = "0123456789abcdef"  # a data fingerprint
MODEL = {"class": "ticketlab.models.mlp.MLP", "tensors": "fedcba9876543210"}
CPU1 = {"device": "cpu", "threads": 1}


def dense(config, data=DATA, model=MODEL, numeric=CPU1):
    return digest(dense_identity(config, data, model, numeric))


def lottery(config):
    return digest(lottery_identity(dense_identity(config, DATA, MODEL, CPU1), config, revisions=REVISIONS))


def test_identities_are_pinned():
    # Changing these orphans every stored run: add new fields with a "no change" default instead, and say so
    # in docs/ARCHITECTURE.md's changelog when a change is deliberate.
    assert dense(build_config({})) == "402573a1a0db4caa"
    assert lottery(build_config({})) == "8a66a0dd4f0585b2"
    assert lottery(build_config({"model": {"name": "conv4"}, "lottery": {"rewind_step": 500}})) == "5831127ad3116d96"


def test_levels_and_seed_are_not_part_of_an_experiment_but_pruning_and_rewinding_are():
    base = build_config({"lottery": {"levels": 2}})
    assert lottery(base) == lottery(build_config({"lottery": {"levels": 20}, "seed": 5}))
    glob = build_config({"lottery": {"levels": 2}, "pruning": {"strategy": "global"}})
    assert dense(base) == dense(glob) and lottery(base) != lottery(glob)  # one dense run, two experiments
    assert lottery(base) != lottery(build_config({"lottery": {"rewind_step": 100}}))
    assert dense(base) != dense(build_config({"training": {"lr": 1e-3}}))


def test_key_order_does_not_change_an_identity_but_values_do():
    a = build_config({"seed": 1, "training": {"lr": 0.01, "batch_size": 32}})
    b = build_config({"seed": 2, "training": {"batch_size": 32, "lr": 0.01}})
    assert lottery(a) == lottery(b)
    assert lottery(a) != lottery(build_config({"training": {"lr": 0.02, "batch_size": 32}}))


def test_data_model_and_numerics_each_change_the_dense_identity():
    config = build_config({})
    assert dense(config) != dense(config, data="another fingerprint")
    assert dense(config) != dense(config, model={**MODEL, "class": "my.Net"})
    assert dense(config) != dense(config, numeric={"device": "cpu", "threads": 2})
    assert dense(config) != dense(config, numeric={"device": "cuda:NVIDIA H200"})
    assert numerics(torch.device("cpu"), 3) == {"device": "cpu", "threads": 3}


def test_a_module_is_identified_by_its_class_and_tensor_shapes():
    hp = build_config({"model": {"name": "mlp_32_16"}}).model
    a = build_model(hp, (1, 16, 16), 10, seed=0)
    b = build_model(hp, (1, 16, 16), 10, seed=1)  # other weights, same module
    wider = build_model(dataclasses.replace(hp, name="mlp_33_16"), (1, 16, 16), 10, seed=0)
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 32), torch.nn.Linear(32, 16),
                                torch.nn.Linear(16, 10))
    assert model_signature(a) == model_signature(b)
    assert model_signature(a) != model_signature(wider)
    assert model_signature(a)["class"] != model_signature(other)["class"]


def test_seed_streams_are_independent_and_stable():
    assert streams(0) == {"init": derive_seed(0, "init"), "data": derive_seed(0, "data")}
    assert streams(0)["init"] != streams(0)["data"] != streams(1)["data"]
    assert derive_seed(0, "control", "reinit", 0) != derive_seed(0, "control", "reinit", 1)
    assert derive_seed(0, "init") == 1654860074  # pinned: a changed derivation changes every result
