"""Label noise and subsampling: exact counts, never the same class, seeded, training split only; width."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ticketlab.config import DatasetHparams, ModelHparams
from ticketlab.data import load_dataset, noise
from ticketlab.errors import TicketlabError
from ticketlab.masks import prunable
from ticketlab.models import build_model

from conftest import small_config


def toy_labels(n: int = 1000, classes: int = 10) -> torch.Tensor:
    return torch.arange(n) % classes


@pytest.mark.parametrize("p", [0.0, 0.1, 0.2, 0.333, 0.5, 1.0])
def test_symmetric_changes_exactly_round_pn_labels_never_to_the_same_class(p):
    y = toy_labels(1001)
    noisy, changed = noise.corrupt(y, p, 10, seed=7)
    expected = int(p * 1001 + 0.5)
    assert int((noisy != y).sum()) == expected == len(changed)  # every chosen label really changed
    assert torch.equal((noisy != y).nonzero().flatten(), changed)
    assert bool(((noisy >= 0) & (noisy < 10)).all())


def test_symmetric_new_labels_are_spread_over_the_other_classes():
    y = torch.zeros(20_000, dtype=torch.int64)  # all class 0: each new label is one of 1..9
    noisy, changed = noise.corrupt(y, 0.5, 10, seed=1)
    counts = torch.bincount(noisy[changed], minlength=10)
    assert counts[0] == 0
    assert counts[1:].min() > 0.8 * 10_000 / 9 and counts[1:].max() < 1.2 * 10_000 / 9


def test_same_seed_same_labels_other_seed_other_labels():
    y = toy_labels()
    a, _ = noise.corrupt(y, 0.2, 10, seed=3)
    b, _ = noise.corrupt(y, 0.2, 10, seed=3)
    c, _ = noise.corrupt(y, 0.2, 10, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_pairflip_moves_each_class_to_the_next():
    y = toy_labels(500)
    noisy, changed = noise.corrupt(y, 0.4, 10, seed=0, mapping={c: (c + 1) % 10 for c in range(10)})
    assert len(changed) == 200
    assert torch.equal(noisy[changed], (y[changed] + 1) % 10)


def test_asymmetric_flips_only_mapped_classes_and_p_is_a_fraction_of_those():
    hp = DatasetHparams(name="fashion_mnist", label_noise=0.5, noise_type="asymmetric")
    mapping = noise.flip_map(hp, 10)
    assert mapping == {0: 6, 6: 0, 2: 4, 4: 2, 5: 7, 7: 5}
    y = toy_labels(1000)  # 100 of each class: 600 eligible (0, 2, 4, 5, 6, 7)
    noisy, changed = noise.corrupt(y, 0.5, 10, seed=0, mapping=mapping)
    assert len(changed) == 300
    assert set(y[changed].tolist()) <= {0, 2, 4, 5, 6, 7}
    assert all(mapping[int(a)] == int(b) for a, b in zip(y[changed], noisy[changed]))
    mnist = noise.flip_map(dataclasses.replace(hp, name="mnist"), 10)
    assert mnist == {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}


def test_noise_touches_the_training_split_only_and_keeps_clean_labels(synthetic):
    hp = dataclasses.replace(small_config().dataset, label_noise=0.2)
    noisy = load_dataset(hp)
    assert torch.equal(noisy.val_y, synthetic.val_y) and torch.equal(noisy.test_y, synthetic.test_y)
    assert torch.equal(noisy.train_x, synthetic.train_x) and torch.equal(noisy.train_y_clean, synthetic.train_y)
    assert int((noisy.train_y != synthetic.train_y).sum()) == round(0.2 * len(synthetic.train_y))
    assert noise.record(noisy) == {"train_examples": 2500, "labels_changed": 500}
    assert noisy.fingerprint != synthetic.fingerprint  # other data, other results' folders
    again = load_dataset(hp)
    assert torch.equal(again.train_y, noisy.train_y) and again.fingerprint == noisy.fingerprint
    other = load_dataset(dataclasses.replace(hp, noise_seed=1))
    assert not torch.equal(other.train_y, noisy.train_y) and other.fingerprint != noisy.fingerprint
    assert synthetic.train_y_clean is None and torch.equal(noisy.to("cpu").train_y_clean, synthetic.train_y)


def test_subsample_is_exact_seeded_and_after_the_validation_split(synthetic):
    hp = dataclasses.replace(small_config().dataset, subsample=700)
    a, b = load_dataset(hp), load_dataset(hp)
    assert len(a.train_y) == 700 and torch.equal(a.train_x, b.train_x)
    assert torch.equal(a.val_x, synthetic.val_x) and torch.equal(a.test_x, synthetic.test_x)
    # every kept example is a training example (rows of the full training split), none repeated
    full = {tuple(r.tolist()) for r in synthetic.train_x.flatten(1)[:, :8]}
    kept = [tuple(r.tolist()) for r in a.train_x.flatten(1)[:, :8]]
    assert set(kept) <= full and len(set(kept)) == 700
    other = load_dataset(dataclasses.replace(hp, split_seed=1))
    assert not torch.equal(other.train_x[:50], a.train_x[:50])
    noisy = load_dataset(dataclasses.replace(hp, label_noise=0.1))
    assert int((noisy.train_y != noisy.train_y_clean).sum()) == 70 and torch.equal(noisy.train_x, a.train_x)
    with pytest.raises(TicketlabError, match="subsample"):
        load_dataset(dataclasses.replace(hp, subsample=5000))


@pytest.mark.parametrize("bad, match", [({"label_noise": 1.5}, "label_noise"), ({"label_noise": -0.1}, "label_noise"),
                                        ({"noise_type": "random"}, "noise_type"), ({"subsample": -1}, "subsample"),
                                        ({"noise_seed": -1}, "noise_seed")])
def test_bad_noise_settings_are_one_line(bad, match):
    with pytest.raises(TicketlabError, match=match):
        small_config(dataset=bad)


def test_asymmetric_without_a_map_is_refused_before_loading():
    from ticketlab.configure import check_data_size

    with pytest.raises(TicketlabError, match="asymmetric"):
        check_data_size(small_config(dataset={"label_noise": 0.2, "noise_type": "asymmetric"}))


def test_epochs_count_the_subsample():
    config = small_config(dataset={"subsample": 1000}, training={"train_steps": "2ep", "batch_size": 50})
    assert config.training.train_steps == 40


def test_width_multiplies_hidden_widths_and_parameter_counts_as_computed_by_hand():
    def count(name: str, width: float) -> tuple[int, int]:
        m = build_model(ModelHparams(name=name, width=width), (1, 28, 28), 10, seed=0)
        return sum(p.numel() for p in m.parameters()), sum(p.numel() for p in prunable(m).values())

    # mlp_100 at width w: hidden h = round(100 w); params 784 h + h + 10 h + 10, weights 784 h + 10 h
    for w, h in ((1.0, 100), (0.5, 50), (0.25, 25), (2.0, 200), (0.125, 13), (0.001, 1)):
        assert count("mlp_100", w) == (784 * h + h + 10 * h + 10, 794 * h)
    assert count("lenet_300_100", 0.5) == (784 * 150 + 150 + 150 * 50 + 50 + 50 * 10 + 10, 784 * 150 + 150 * 50 + 500)
    conv = build_model(ModelHparams(name="conv2", width=0.25), (1, 28, 28), 10, seed=0)
    assert [c.out_channels for c in conv.convs] == [16, 16]
    assert [l.out_features for l in conv.hidden] == [64, 64]
    with pytest.raises(TicketlabError, match="width"):
        small_config(model={"width": 0})


def test_tensors_given_in_place_of_a_data_set_get_its_subsample_and_noise_too(synthetic, tmp_path):
    from ticketlab.experiments.study import StudyPlan, run_study

    config = small_config(kind="train", dataset={"subsample": 1000, "label_noise": 0.2},
                          training={"train_steps": 20, "eval_every": 10}, lottery={"levels": 0})
    given = run_study(StudyPlan(config), data=synthetic, root=tmp_path / "given")
    loaded = run_study(StudyPlan(config), root=tmp_path / "loaded")
    for result in (given, loaded):
        (level,) = result.replicates[0]["levels"]
        assert level["train_labels_changed"] == 200  # round(0.2 * 1000) of the 1,000 kept, as when loaded by name
    assert given.replicates[0]["levels"][0]["final_test_accuracy"] == loaded.replicates[0]["levels"][0][
        "final_test_accuracy"]
