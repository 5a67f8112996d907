"""Augmentation on whole batches: flip and pad-and-crop correct on a hand-made tensor, the padding value of
the data set's normalisation, seeded by (data seed, step), applied by the loop to training batches only, and a
run killed and resumed ends bitwise equal to an uninterrupted one."""

import pytest
import torch
from torch.nn import functional as F

from ticketlab import Mask, build_model
from ticketlab.config import DatasetHparams
from ticketlab.data import with_augment
from ticketlab.data.augment import Augment, build, flip_crop
from ticketlab.errors import TicketlabError
from ticketlab.training.loop import Checkpointing, Hooks, train
from conftest import small_config


def test_flip_crop_matches_a_per_image_reference():
    x = torch.arange(6 * 2 * 5 * 7, dtype=torch.float32).view(6, 2, 5, 7)
    out = flip_crop(x, torch.Generator().manual_seed(3), pad=2)
    g = torch.Generator().manual_seed(3)  # the same draws, in the documented order
    flip = torch.rand(6, generator=g) < 0.5
    dy, dx = torch.randint(0, 5, (6,), generator=g), torch.randint(0, 5, (6,), generator=g)
    for i in range(6):
        crop = F.pad(x[i], (2, 2, 2, 2))[:, dy[i]:dy[i] + 5, dx[i]:dx[i] + 7]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop)
    assert out.shape == x.shape


def test_flip_crop_on_a_hand_made_image():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    seen = set()
    for seed in range(200):
        seen.add(tuple(flip_crop(x, torch.Generator().manual_seed(seed), pad=1).flatten().tolist()))
    assert (1.0, 2.0, 3.0, 4.0) in seen and (2.0, 1.0, 4.0, 3.0) in seen  # identity and the mirror image
    assert (0.0, 0.0, 0.0, 1.0) in seen and (0.0, 0.0, 2.0, 1.0) in seen  # shifted down-right; mirrored too
    assert len(seen) == 18  # 9 offsets x 2 flips, all distinct for this image


def test_padding_is_black_in_the_normalised_space():
    aug = build("flip_crop", (0.5, 0.25), (0.5, 0.25))
    assert aug.fill == (-1.0, -1.0)
    x = torch.full((64, 2, 8, 8), 3.0)
    out = aug(x, seed=0, step=0)
    assert set(out.unique().tolist()) == {-1.0, 3.0}
    assert (out == -1.0).any() and (out == 3.0).float().mean() > 0.5
    assert build("none") is None
    with pytest.raises(TicketlabError, match="dataset.augment must be one of"):
        build("mixup")


def test_augmentation_is_a_function_of_seed_and_step():
    x = torch.randn(32, 1, 16, 16)
    aug = Augment("flip_crop")
    assert torch.equal(aug(x, 1, 5), aug(x, 1, 5))
    assert not torch.equal(aug(x, 1, 5), aug(x, 1, 6)) and not torch.equal(aug(x, 1, 5), aug(x, 2, 5))


def _config():
    return small_config(kind="train", dataset={"augment": "flip_crop"}, model={"name": "cifar_resnet_8_2"},
                        training={"train_steps": 12, "eval_every": 4, "batch_size": 16, "lr": 0.05,
                                  "optimizer": "sgd", "momentum": 0.9})


def test_the_loop_augments_training_batches_and_resumes_bitwise(tmp_path, synthetic):
    config = _config()
    data = with_augment(synthetic, config.dataset)
    assert data.augment == Augment("flip_crop") and synthetic.augment is None

    def run(folder, stop_at=None, data=data):
        model = build_model(config.model, data.input_shape, 10, seed=0)
        seen = {}

        def record(x, y, step):  # what the loop hands the hook: step's batch after the data's augmentation
            seen.setdefault(step, x.clone())
            return x, y

        hooks = Hooks(batch_transform=record)
        if stop_at:
            def stop(_model):
                raise KeyboardInterrupt
            hooks.at_step[stop_at] = stop
        train(model, data, config.training, Mask.ones(model), data_seed=7,
              checkpoint=Checkpointing(folder / "checkpoint.pt", every=4), hooks=hooks)
        return model, seen

    whole, seen = run(tmp_path / "a")
    from ticketlab.data import BatchOrder
    idx = BatchOrder(len(data.train_x), 16, 7).indices(3)
    assert torch.equal(seen[3], Augment("flip_crop")(data.train_x[idx], 7, 3))  # step 3's batch, augmented
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", stop_at=9)
    resumed, _ = run(tmp_path / "b")
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k  # weights and BN statistics
    plain, _ = run(tmp_path / "c", data=synthetic)
    assert not torch.equal(plain.fc.weight, whole.fc.weight)  # the augmentation was applied


def test_runtime_attaches_the_augmentation_to_given_tensors(synthetic):
    from ticketlab.jobs import RunOptions, Runtime
    rt = Runtime(RunOptions())
    hp = DatasetHparams(name="synthetic", val_size=500, augment="flip_crop")
    rt.add_data(hp, synthetic)
    assert rt.data(hp).augment == Augment("flip_crop")
