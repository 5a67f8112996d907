"""Every kind of run trains on the one loop (training/loop.py run_loop) and so honours the same things:
the data set's augmentation of each training batch, the evaluation schedule, divergence (a NaN stops it
with Diverged), and a run killed mid-way resumes from its checkpoint bit-identical to an uninterrupted one.

Kinds: dense, a static mask (IMP levels, controls, pruning at init, tickets all train under StaticMask),
edge-popup and supermask (scores on frozen weights) and a population of two (the stacked trainee)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from conftest import small_config
from ticketlab import build_model
from ticketlab.data import with_augment
from ticketlab.config import DatasetHparams
from ticketlab.masks import Mask
from ticketlab.store import load_checkpoint
from ticketlab.training.loop import Checkpointing, Diverged, Hooks, train
from ticketlab.training.population import Member, train_population
from ticketlab.training.supermask import StrongSpec, learn_mask, prepare_frozen

KINDS = ("dense", "static", "edge-popup", "supermask", "population")
STEPS, EVAL_EVERY, KILL_AT = 40, 10, 30  # checkpoints every 10 steps; killed just after step 30's


class Killed(Exception):
    pass


def _model(config, data, seed=0):
    return build_model(config.model, data.input_shape, data.num_classes, seed)


def _run(kind: str, data, config, checkpoint=None, progress=None, models=None):
    """Train one run of `kind`; returns (its evaluation rows, the tensors that are its result)."""
    hp = config.training
    hooks = Hooks(progress=progress)
    models = models if models is not None else [_model(config, data, s) for s in (0, 1)]
    ck = Checkpointing(checkpoint, EVAL_EVERY) if checkpoint else None
    if kind in ("dense", "static"):
        mask = Mask.ones(models[0]) if kind == "dense" else _half(models[0])
        result = train(models[0], data, hp, None if kind == "dense" else mask, data_seed=3, checkpoint=ck,
                       hooks=hooks)
        return result.evals, models[0].state_dict()
    if kind in ("edge-popup", "supermask"):
        spec = StrongSpec(method=kind, k=0.5)
        learned = learn_mask(prepare_frozen(models[0], spec), data, hp, spec, seed=3, checkpoint=checkpoint,
                             checkpoint_every=EVAL_EVERY, progress=progress)
        return learned.result.evals, {**learned.mask.tensors, **learned.buffers}
    paths = [None, None] if checkpoint is None else [checkpoint.with_name(f"m{i}.pt") for i in (0, 1)]
    members = []
    for i, (model, path) in enumerate(zip(models, paths)):
        state = load_checkpoint(path) if path is not None else None
        members.append(Member(model, _half(model), 3 + i, Checkpointing(path, EVAL_EVERY) if path else None,
                              Hooks(progress=progress), state))
    results = train_population(members, data, hp)
    for r in results:
        if isinstance(r, Diverged):
            raise r
    return results[0].evals + results[1].evals, {f"{i}.{k}": v for i, m in enumerate(members)
                                                   for k, v in m.model.state_dict().items()}


def _half(model):
    g = torch.Generator().manual_seed(5)
    mask = Mask({k: torch.rand(v.shape, generator=g) < 0.5 for k, v in Mask.ones(model).tensors.items()})
    with torch.no_grad():
        for k, p in model.named_parameters():
            if k in mask.keys():
                p.mul_(mask[k])
    return mask


@pytest.fixture(scope="module")
def setup(synthetic):
    config = small_config(training={"train_steps": STEPS, "eval_every": EVAL_EVERY, "lr": 1e-3})
    data = with_augment(synthetic, DatasetHparams(name="synthetic", augment="flip_crop"))
    return config, data


class _Recording:
    """The data set's augmentation, recording which (seed, step) each training batch was augmented with."""

    def __init__(self, augment):
        self.augment, self.calls = augment, []

    def __call__(self, x, seed, step):
        self.calls.append((seed, step))
        return self.augment(x, seed, step)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_augments_each_batch_and_keeps_the_schedule(kind, setup):
    config, data = setup
    recording = _Recording(data.augment)
    evals, _ = _run(kind, dataclasses.replace(data, augment=recording), config)
    members = 2 if kind == "population" else 1
    assert sorted(recording.calls) == sorted((3 + i, s) for i in range(members) for s in range(STEPS))
    assert [e["step"] for e in evals] == list(range(0, STEPS + 1, EVAL_EVERY)) * members
    plain_evals, _ = _run(kind, dataclasses.replace(data, augment=None), config)
    assert evals[0] == plain_evals[0]  # the same start; then augmentation changed the training
    assert [e["val_loss"] for e in evals[1:]] != [e["val_loss"] for e in plain_evals[1:]]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_stops_on_divergence(kind, setup):
    config, data = setup
    bad = dataclasses.replace(data, train_x=torch.full_like(data.train_x, float("nan")))
    with pytest.raises(Diverged) as info:
        _run(kind, bad, config)
    assert (info.value.step, info.value.reason) == (0, "loss is not finite")
    assert [e["step"] for e in info.value.evals] == [0]  # the evaluation before it, nothing after


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_resumes_bit_identically_after_a_kill(kind, setup, tmp_path):
    config, data = setup
    expected_evals, expected = _run(kind, data, config)

    def kill(step, total):
        if step == KILL_AT:
            raise Killed

    path = tmp_path / "checkpoint.pt"
    with pytest.raises(Killed):
        _run(kind, data, config, checkpoint=path, progress=kill)
    saved = [path] if kind != "population" else [tmp_path / "m0.pt", tmp_path / "m1.pt"]
    # the kill came after step 30's update, before its evaluation: the last checkpoint is step 20's
    assert [load_checkpoint(p)["step"] for p in saved] == [KILL_AT - EVAL_EVERY] * len(saved)
    evals, got = _run(kind, data, config, checkpoint=path)  # fresh models, as a restarted process has
    assert evals == expected_evals
    assert set(got) == set(expected) and all(torch.equal(got[k], expected[k]) for k in got)
