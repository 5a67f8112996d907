"""Loaders on small files the tests write in the real formats; splits and batch order."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from ticketlab import DatasetHparams, TicketlabError, load_dataset
from ticketlab.data import BatchOrder


def write_idx(path, array, compress):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    for stem, shape in [("train-images-idx3-ubyte", (120, 28, 28)), ("train-labels-idx1-ubyte", (120,)),
                        ("t10k-images-idx3-ubyte", (30, 28, 28)), ("t10k-labels-idx1-ubyte", (30,))]:
        high = 10 if "labels" in stem else 256
        write_idx(tmp_path / (stem + (".gz" if "train" in stem else "")), rng.integers(0, high, shape),
                  compress="train" in stem)
    return tmp_path


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_loader_reads_plain_and_gzip_files_and_splits_validation(idx_dir, name):
    data = load_dataset(DatasetHparams(name=name, val_size=20), data_dir=idx_dir, download=False)
    assert data.train_x.shape == (100, 1, 28, 28) and data.val_x.shape == (20, 1, 28, 28)
    assert data.test_x.shape == (30, 1, 28, 28) and data.num_classes == 10
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    again = load_dataset(DatasetHparams(name=name, val_size=20), data_dir=idx_dir, download=False)
    assert torch.equal(data.val_x, again.val_x)  # the split is seeded
    other = load_dataset(DatasetHparams(name=name, val_size=20, split_seed=1), data_dir=idx_dir, download=False)
    assert not torch.equal(data.val_x, other.val_x)
    # train and validation are disjoint and together are the whole training file
    rows = {tuple(r.flatten().tolist()[:40]) for r in torch.cat([data.train_x, data.val_x])}
    assert len(rows) == 120


def test_corrupt_idx_file_is_a_clear_error(idx_dir):
    (idx_dir / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x64abc")
    with pytest.raises(TicketlabError, match="header says"):
        load_dataset(DatasetHparams(name="mnist", val_size=20), data_dir=idx_dir, download=False)


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(TicketlabError, match="--data-dir"):
        load_dataset(DatasetHparams(name="mnist"), data_dir=tmp_path, download=False)


def cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    return {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"labels": rng.integers(0, 10, n).tolist()}


def test_cifar_loader_reads_the_python_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(cifar_batch(10, i)))
    (folder / "test_batch").write_bytes(pickle.dumps(cifar_batch(8, 9)))
    data = load_dataset(DatasetHparams(name="cifar10", val_size=5), data_dir=tmp_path, download=False)
    assert data.train_x.shape == (45, 3, 32, 32) and data.test_x.shape == (8, 3, 32, 32)


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/ticketlab-pwned",))


def test_cifar_loader_refuses_to_run_code_from_a_pickle(tmp_path):
    for i in range(1, 6):
        (tmp_path / f"data_batch_{i}").write_bytes(pickle.dumps(cifar_batch(4, i)))
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": [0]}))
    with pytest.raises(TicketlabError, match="refusing"):
        load_dataset(DatasetHparams(name="cifar10", val_size=5), data_dir=tmp_path, download=False)
    assert not os.path.exists("/tmp/ticketlab-pwned")


def test_batch_order_is_a_function_of_seed_and_step():
    a, b = BatchOrder(100, 8, seed=3), BatchOrder(100, 8, seed=3)
    seq = [a.indices(s).tolist() for s in range(30)]
    assert [b.indices(s).tolist() for s in reversed(range(30))][::-1] == seq  # any access order
    epoch0 = sum(seq[:12], [])
    assert len(set(epoch0)) == 96  # a permutation per epoch; the last partial batch dropped
    assert BatchOrder(100, 8, seed=4).indices(0).tolist() != seq[0]


def test_unknown_dataset():
    with pytest.raises(TicketlabError, match="unknown dataset"):
        load_dataset(DatasetHparams(name="imagenet22k"))
