"""The LR schedule, early stopping, and downloads (served from this machine's loopback)."""

import hashlib
import http.server
import threading
from functools import partial

import pytest

from ticketlab import TrainingHparams
from ticketlab.data.download import fetch
from ticketlab.training.loop import _result
from ticketlab.training.optim import lr_at


def test_lr_schedule_warmup_and_milestones():
    hp = TrainingHparams(lr=0.1, warmup_steps=4, milestones=(10, 20), gamma=0.5)
    assert [lr_at(hp, s) for s in range(5)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])
    assert lr_at(hp, 9) == pytest.approx(0.1) and lr_at(hp, 10) == pytest.approx(0.05)
    assert lr_at(hp, 25) == pytest.approx(0.025)
    assert lr_at(TrainingHparams(lr=0.3), 12345) == 0.3


def test_early_stop_is_the_first_minimum_of_validation_loss():
    rows = [{"step": s, "val_loss": v, "test_accuracy": a, "val_accuracy": 0.0}
            for s, v, a in [(0, 2.0, 0.1), (100, 0.5, 0.8), (200, 0.5, 0.85), (300, 0.7, 0.9)]]
    result = _result(rows)
    assert result.early_stop["step"] == 100 and result.final["step"] == 300
    assert result.summary()["early_stop_test_accuracy"] == 0.8 and result.summary()["final_test_accuracy"] == 0.9
    no_val = _result([{**r, "val_loss": float("nan")} for r in rows])
    assert no_val.early_stop is None and no_val.summary()["early_stop_step"] is None


@pytest.fixture
def server(tmp_path):
    (tmp_path / "serve").mkdir()
    (tmp_path / "serve" / "file.gz").write_bytes(b"payload")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "serve"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_download_verifies_the_checksum(tmp_path, server):
    good = hashlib.md5(b"payload").hexdigest()
    dest = tmp_path / "cache" / "file.gz"
    assert not fetch([server + "file.gz"], dest, md5="0" * 32, timeout=5)
    assert not dest.exists() and not list(dest.parent.glob("*.part"))  # a bad file is never kept
    assert fetch(["http://127.0.0.1:9/missing", server + "file.gz"], dest, md5=good, timeout=5)  # next mirror
    assert dest.read_bytes() == b"payload"


def test_sparse_test_curve_keeps_the_exact_early_stop_test_accuracy(tmp_path, synthetic):
    import json

    from ticketlab import run_lottery
    from conftest import small_config

    base = {"eval_every": 25, "train_steps": 400, "lr": 0.01}  # validation loss bottoms out at step 150
    every = run_lottery(small_config(kind="train", training=base), data=synthetic, root=tmp_path / "a")
    sparse = run_lottery(small_config(kind="train", training={**base, "test_every": 100}), data=synthetic,
                         root=tmp_path / "b")
    e, s = every.levels[0], sparse.levels[0]
    assert s["early_stop_step"] == e["early_stop_step"] and s["early_stop_step"] % 100 != 0  # an untested step
    assert s["early_stop_test_accuracy"] == e["early_stop_test_accuracy"]
    assert s["final_test_accuracy"] == e["final_test_accuracy"]
    rows = json.loads((sparse.run_dir / "level_0" / "metrics.json").read_text())
    tested = {r["step"] for r in rows if r["test_accuracy"] is not None}
    assert tested == {0, 100, 200, 300, 400, s["early_stop_step"]}


def test_batch_transform_and_end_hooks_keep_resume_exact(tmp_path, synthetic):
    import torch

    from ticketlab import Mask, build_model
    from ticketlab.training.loop import Checkpointing, Hooks, train
    from conftest import small_config

    config = small_config(training={"train_steps": 200, "eval_every": 50})

    def flip(x, y, step):  # a pure function of the step: a seeded augmentation would be one too
        return (-x if step % 3 == 0 else x), y

    def run(folder, stop_at=None):
        model = build_model(config.model, synthetic.input_shape, 10, seed=0)
        ended = []
        hooks = Hooks(batch_transform=flip, at_end=lambda m, r: ended.append(r.final["step"]))
        if stop_at:
            def stop(_model):
                raise KeyboardInterrupt
            hooks.at_step[stop_at] = stop
        train(model, synthetic, config.training, Mask.ones(model), data_seed=1,
              checkpoint=Checkpointing(folder / "checkpoint.pt", every=50), hooks=hooks)
        return model, ended

    whole, ended = run(tmp_path / "a")
    assert ended == [200]  # at_end: once, with the result
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", stop_at=130)
    resumed, _ = run(tmp_path / "b")
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    plain = build_model(config.model, synthetic.input_shape, 10, seed=0)
    train(plain, synthetic, config.training, Mask.ones(plain), data_seed=1)
    assert not torch.equal(plain.out.weight, whole.out.weight)  # the transform was applied
