"""Ticket export: every format round-trips the stored level exactly (or, for CSR, to float tolerance)."""

import pytest
import torch
from torch.nn.utils import prune

from ticketlab import Mask, TicketlabError, run_lottery
from ticketlab.export import (SparseLinear, choose_layers, export_ticket, load_sparse, load_ticket,
                              load_torch_prune)
from ticketlab.models import build_model
from ticketlab.store import load_weights
from conftest import small_config

LEVEL = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic):
    config = small_config(model={"name": "mlp_64_32"}, lottery={"levels": 3})
    result = run_lottery(config, data=synthetic, root=tmp_path_factory.mktemp("runs"))
    job = result.run_dir / f"level_{LEVEL}"
    stored = {"mask": Mask.load(job / "mask.safetensors"), "init": load_weights(job / "init.safetensors"),
              "final": load_weights(job / "final.safetensors")}
    return config, result.run_dir, stored, synthetic


def fresh_model(config, data):
    return build_model(config.model, data.input_shape, data.num_classes, seed=123).eval()


def final_model(config, run, data):
    model = fresh_model(config, data)
    model.load_state_dict(run["final"])
    return model


def test_safetensors_ticket_round_trips(run, tmp_path):
    config, run_dir, stored, _ = run
    path = export_ticket(run_dir, LEVEL, "safetensors", tmp_path)
    assert path == tmp_path / f"ticket_level_{LEVEL}.safetensors"
    ticket = load_ticket(path)
    assert ticket["masks"].keys() == stored["mask"].tensors.keys()
    assert all(torch.equal(ticket["masks"][k], stored["mask"][k]) for k in stored["mask"].tensors)
    for part in ("init", "final"):
        assert ticket[part].keys() == stored[part].keys()
        assert all(torch.equal(ticket[part][k], v) for k, v in stored[part].items())
    meta = ticket["metadata"]
    assert meta["seed"] == 0 and meta["level"] == LEVEL and meta["experiment_hash"] == config.hash()
    assert meta["density"] == pytest.approx(stored["mask"].density()) and meta["density"] < 0.6
    assert meta["layer_density"] == pytest.approx(stored["mask"].layer_density())
    assert meta["config"]["model"]["name"] == "mlp_64_32" and "torch" in meta["provenance"]


def test_dense_export_loads_into_a_fresh_model(run, tmp_path):
    config, run_dir, stored, data = run
    path = export_ticket(run_dir, LEVEL, "dense", tmp_path / "dense.safetensors")
    model = fresh_model(config, data)
    model.load_state_dict(load_weights(path))
    x = data.test_x[:64]
    assert torch.equal(model(x), final_model(config, stored, data)(x))
    assert torch.equal(model.out.weight == 0, ~stored["mask"]["out.weight"])


def test_torch_prune_export(run, tmp_path):
    config, run_dir, stored, data = run
    path = export_ticket(run_dir, LEVEL, "torch-prune", tmp_path)
    assert path.suffix == ".pt"
    model = load_torch_prune(fresh_model(config, data), path)
    for name in stored["mask"].tensors:
        module = model.get_submodule(name.removesuffix(".weight"))
        assert torch.equal(module.weight_mask, stored["mask"][name].float())
    x = data.test_x[:64]
    assert torch.equal(model(x), final_model(config, stored, data)(x))
    for name in stored["mask"].tensors:
        prune.remove(model.get_submodule(name.removesuffix(".weight")), "weight")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stored["final"].items())


@pytest.mark.parametrize("batch", [1, 256])
def test_sparse_model_matches_the_dense_model(run, tmp_path, batch):
    config, run_dir, stored, data = run
    path = export_ticket(run_dir, LEVEL, "sparse", tmp_path, force_sparse=True)
    model = load_sparse(path)
    assert not model.training
    assert all(isinstance(m, SparseLinear) for m in (model.hidden[0], model.hidden[1], model.out))
    x = data.test_x[:batch]
    with torch.inference_mode():
        torch.testing.assert_close(model(x), final_model(config, stored, data)(x), atol=1e-5, rtol=0)


def test_choose_layers_times_each_pruned_linear(run):
    config, _, stored, data = run
    timings = choose_layers(final_model(config, stored, data), batch_sizes=(1, 8), target_batch=8,
                            repeats=2, number=1)
    assert set(timings) == {"hidden.0", "hidden.1", "out"}
    for t in timings.values():
        assert set(t["dense_us"]) == set(t["sparse_us"]) == {"1", "8"}
        assert t["sparse"] == (t["sparse_us"]["8"] < t["dense_us"]["8"]) and 0 < t["density"] < 1


def test_bad_format_and_missing_level(run, tmp_path):
    _, run_dir, _, _ = run
    with pytest.raises(TicketlabError, match="unknown export format 'onnx'"):
        export_ticket(run_dir, LEVEL, "onnx", tmp_path)
    with pytest.raises(TicketlabError, match=r"level 9 .*\(finished levels: 0, 1, 2, 3\)"):
        export_ticket(run_dir, 9, "dense", tmp_path)
    with pytest.raises(TicketlabError, match="not found"):
        load_ticket(tmp_path / "nothing.safetensors")
