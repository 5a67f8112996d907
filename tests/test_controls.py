"""Each control's defining property, and seeded reproducibility."""

import pytest
import torch

from ticketlab import Mask, TicketlabError
from ticketlab.experiments.controls import Control
from ticketlab.experiments.study import StudyPlan, parse_controls, run_study
from ticketlab.store import load_weights
from conftest import small_config

CONFIG = small_config(model={"name": "mlp_64_32"}, lottery={"levels": 2})


class Run:
    """A finished lottery run whose controls are trained on demand (the store reuses its levels)."""

    def __init__(self, config, data, root):
        self.config, self.data, self.root = config, data, root
        self.run_dir = run_study(StudyPlan(config), data=data, root=root).replicates[config.seed]["run_dir"]
        self.theta0 = load_weights(self.run_dir / "level_0" / "init.safetensors")


@pytest.fixture(scope="module")
def rep(tmp_path_factory, synthetic):
    return Run(CONFIG, synthetic, tmp_path_factory.mktemp("runs"))


def load(rep, level, control=None):
    job = rep.run_dir / f"level_{level}" / (f"control_{control.variant}_{control.index}" if control else "")
    if control:
        run_study(StudyPlan(rep.config, controls=(control,), control_levels=(level,)), data=rep.data, root=rep.root)
    return Mask.load(job / "mask.safetensors"), load_weights(job / "init.safetensors")


def test_reinit_keeps_the_mask_and_draws_fresh_weights(rep):
    mask, init = load(rep, 2)
    cmask, cinit = load(rep, 2, Control("reinit"))
    w = "hidden.0.weight"
    assert torch.equal(cmask[w], mask[w])
    assert not torch.equal(cinit[w], init[w])
    assert torch.all(cinit[w][~mask[w]] == 0)
    fresh_std = cinit[w][mask[w]].std() / rep.theta0[w].std()
    assert 0.9 < fresh_std < 1.1  # the same initial distribution


def test_sign_reinit_keeps_signs_with_fresh_magnitudes(rep):
    mask, init = load(rep, 2)
    cmask, cinit = load(rep, 2, Control("sign_reinit"))
    for w in mask.keys():
        assert torch.equal(cmask[w], mask[w])
        assert torch.equal(torch.sign(cinit[w]), torch.sign(init[w]))
        assert not torch.equal(cinit[w].abs(), init[w].abs())


def test_random_prune_and_shuffle_keep_per_layer_counts(rep):
    mask, _ = load(rep, 2)
    for name in ("random_prune", "shuffle"):
        cmask, cinit = load(rep, 2, Control(name))
        assert cmask.counts() == mask.counts()
        assert not torch.equal(cmask["hidden.0.weight"], mask["hidden.0.weight"])
        # they start from theta_k (here theta_0), with their own mask
        theta0 = rep.theta0["hidden.0.weight"]
        assert torch.equal(cinit["hidden.0.weight"], theta0 * cmask["hidden.0.weight"])


def test_random_prune_of_a_global_run_keeps_the_total(tmp_path, synthetic):
    config = small_config(model={"name": "mlp_64_32"}, pruning={"strategy": "global", "rate": 0.5},
                          lottery={"levels": 1})
    r = Run(config, synthetic, tmp_path)
    mask, _ = load(r, 1)
    cmask, _ = load(r, 1, Control("random_prune"))
    assert sum(cmask.counts().values()) == sum(mask.counts().values())
    assert cmask.counts() != mask.counts()  # spread uniformly, not per layer


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_noise_has_the_requested_scale(rep, scale):
    mask, init = load(rep, 1)
    _, cinit = load(rep, 1, Control("noise", scale=scale))
    w = "hidden.0.weight"
    noise = (cinit[w] - init[w])[mask[w]]
    assert noise.std() / (scale * rep.theta0[w].std()) == pytest.approx(1.0, abs=0.03)
    assert abs(noise.mean()) < 0.05 * scale * rep.theta0[w].std()
    assert torch.all(cinit[w][~mask[w]] == 0)


def test_oneshot_prunes_the_dense_weights_straight_to_the_level_density(rep):
    mask, _ = load(rep, 2)
    cmask, _ = load(rep, 2, Control("oneshot"))
    assert cmask.counts() == mask.counts()
    dense_final = load_weights(rep.run_dir / "level_0" / "final.safetensors")["hidden.0.weight"]
    kept = dense_final.abs()[cmask["hidden.0.weight"]]
    dropped = dense_final.abs()[~cmask["hidden.0.weight"]]
    assert kept.min() >= dropped.max()
    assert not Control("oneshot").applies_to(0)
    level0 = run_study(StudyPlan(rep.config, controls=(Control("oneshot"),), control_levels=(0,)), data=rep.data,
                       root=rep.root).replicates[0]
    assert level0["controls"] == []  # a one-shot mask at level 0 is the ticket itself: not planned


def test_oneshot_is_one_job_whatever_the_draws():
    controls = parse_controls("oneshot,reinit", reps=3)
    assert [c.name for c in controls].count("oneshot") == 1 and [c.name for c in controls].count("reinit") == 3


def test_controls_are_seeded_and_each_draw_differs(tmp_path, synthetic):
    plan = StudyPlan(small_config(lottery={"levels": 1}), controls=parse_controls("reinit", reps=2))
    a = run_study(plan, data=synthetic, root=tmp_path / "a")
    b = run_study(plan, data=synthetic, root=tmp_path / "b")
    inits = {}
    for root, res in (("a", a), ("b", b)):
        for i in (0, 1):
            path = res.experiment_dir / "seed_0" / "level_1" / f"control_reinit_{i}" / "init.safetensors"
            inits[root, i] = load_weights(path)["hidden.0.weight"]
    assert torch.equal(inits["a", 0], inits["b", 0]) and torch.equal(inits["a", 1], inits["b", 1])
    assert not torch.equal(inits["a", 0], inits["a", 1])
    assert [c["final_test_accuracy"] for c in a.replicates[0]["controls"]] == \
        [c["final_test_accuracy"] for c in b.replicates[0]["controls"]]


def test_unknown_control_is_an_error():
    with pytest.raises(TicketlabError, match="unknown control"):
        Control("dropout")
    with pytest.raises(TicketlabError, match="scale"):
        Control("noise")
