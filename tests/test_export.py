"""Ticket export: every format round-trips the stored level exactly (or, for CSR, to float tolerance)."""

import json

import pytest
import torch
from safetensors import safe_open
from torch.nn.utils import prune

from ticketlab import Mask, TicketlabError, run_lottery
from ticketlab.export import (SparseLinear, SparseMLP, choose_layers, export_ticket, load_sparse, load_ticket,
                              load_torch_prune, sparsify)
from ticketlab.models import MLP, ConvNet, build_model
from ticketlab.sparse import SMALL_BATCH, DenseLinearT, compact, sparse_mlp
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
    assert meta["seed"] == 0 and meta["level"] == LEVEL and meta["experiment_hash"] == run_dir.parent.name.removeprefix("lottery_")
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


def sparse_metadata(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) for k, v in f.metadata().items()}


# Batches on both sides of SMALL_BATCH: MKL's CSR product below, embedding_bag above.
@pytest.mark.parametrize("batch", [1, SMALL_BATCH, SMALL_BATCH + 1, 256])
def test_sparse_model_matches_the_dense_model(run, tmp_path, batch):
    config, run_dir, stored, data = run
    path = export_ticket(run_dir, LEVEL, "sparse", tmp_path, force_sparse=True)
    model = load_sparse(path)
    assert isinstance(model, SparseMLP) and not model.training
    assert [type(m) for m in model.layers] == [SparseLinear] * 3  # forced: every layer sparse
    meta = sparse_metadata(path)
    assert meta["sparse_layers"] == ["hidden.0", "hidden.1", "out"] and meta["target_batch"] == 256
    assert meta["compaction"]["widths_before"] == [256, 64, 32, 10]
    x = data.test_x[:batch]
    expected = final_model(config, stored, data)(x)
    with torch.inference_mode():
        out = model(x)
    assert out.shape == (batch, 10) and out.is_contiguous()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # outside inference mode too (the tensors SparseLinear prepares on its first call were made inside it)
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)


def test_sparse_export_measures_its_layer_choice(run, tmp_path):
    config, run_dir, stored, data = run
    path = export_ticket(run_dir, LEVEL, "sparse", tmp_path, batch_size=64)
    meta, model = sparse_metadata(path), load_sparse(path)
    assert meta["target_batch"] == 64 and set(meta["timings"]) == {"hidden.0", "hidden.1", "out"}
    for name, layer in zip(("hidden.0", "hidden.1", "out"), model.layers):
        t = meta["timings"][name]
        assert t["sparse"] == (t["sparse_us"]["64"] < t["dense_us"]["64"])
        assert type(layer) is (SparseLinear if t["sparse"] else DenseLinearT)  # the faster of the two it timed
    x = data.test_x[:64]
    with torch.no_grad():
        torch.testing.assert_close(model(x), final_model(config, stored, data)(x), atol=1e-5, rtol=0)
        # .to() replaces the buffers: the prepared CSR tensors must follow
        torch.testing.assert_close(model.double()(x.double()), final_model(config, stored, data).double()(x.double()))


def hand_pruned_mlp() -> tuple[MLP, dict]:
    """An MLP 10-6-5-3 with everything compaction removes, made by hand:
    - inputs 0 and 7 have no weight; input 9 only feeds h0 unit 2, which feeds nothing (dropped, then input 9);
    - h0 unit 3 has no incoming weight and bias 0.5: a constant 0.5 into h1 (folded into h1's bias);
    - h1 unit 1 reads only h0 unit 3: after the fold it has no input left (folded in the second round,
      bias -0.25 -> relu 0: adds nothing to the output bias);
    - h1 unit 4 reads nothing and is read by nothing (dropped)."""
    torch.manual_seed(0)
    model = MLP((10,), [6, 5], 3).eval()
    w0, w1, w2 = (torch.randn_like(m.weight) for m in (*model.hidden, model.out))
    w0[:, [0, 7, 9]] = 0
    w0[2, 9] = 1.5
    w0[3] = 0
    w1[:, 2] = 0
    w1[1] = 0
    w1[1, 3] = 2.0
    w1[4] = 0
    w2[:, 4] = 0
    w2[:, 1] = torch.tensor([1.0, -2.0, 0.5])
    w0[0, 1], w1[0, 0], w2[0, 0] = 0, 0, 0  # pruned weights that remove nothing: every layer stays sparse
    with torch.no_grad():
        for m, w in zip((*model.hidden, model.out), (w0, w1, w2)):
            m.weight.copy_(w)
        model.hidden[0].bias[3] = 0.5
        model.hidden[1].bias[1] = -0.25
        model.hidden[1].bias[4] = 3.0
    expected = {"widths_before": [10, 6, 5, 3], "widths_after": [7, 4, 3, 3], "inputs_removed": [0, 7, 9],
                "units_removed": [{"no_input": [3], "no_output": [2]}, {"no_input": [1], "no_output": [4]}]}
    return model, expected


def test_compact_removes_dead_inputs_and_units_exactly():
    model, expected = hand_pruned_mlp()
    linears = [*model.hidden, model.out]
    c = compact([m.weight for m in linears], [m.bias for m in linears])
    assert c["report"] == expected
    assert c["inputs"].tolist() == [1, 2, 3, 4, 5, 6, 8]
    assert [tuple(w.shape) for w in c["weights"]] == [(4, 7), (3, 4), (3, 3)]
    x = torch.randn(32, 10)
    h = x[:, c["inputs"]]
    for k, (w, b) in enumerate(zip(c["weights"], c["biases"])):
        h = h @ w.T + b
        h = torch.relu(h) if k < 2 else h
    with torch.no_grad():
        torch.testing.assert_close(h, model(x), atol=1e-6, rtol=0)
    # nothing to remove: compact is the identity
    full = [torch.randn(4, 5), torch.randn(2, 4)]
    same = compact(full, [None, None])
    assert same["inputs"] is None and all(torch.equal(a, b) for a, b in zip(same["weights"], full))
    assert same["report"]["widths_after"] == [5, 4, 2]


@pytest.mark.parametrize("force", [True, False])
def test_sparse_mlp_of_a_compacted_network_matches(tmp_path, force):
    model, expected = hand_pruned_mlp()
    sparse, spec = sparse_mlp([("hidden.0", model.hidden[0]), ("hidden.1", model.hidden[1]), ("out", model.out)],
                              batch_sizes=(1,), target_batch=64, repeats=1, number=1, force=force)
    assert spec["compaction"] == expected and spec["in_features"] == 10
    assert [(s["in_features"], s["out_features"]) for s in spec["layers"]] == [(7, 4), (4, 3), (3, 3)]
    assert all(0 < t["density"] < 1 for t in spec["timings"].values())
    if force:
        assert all(s["sparse"] for s in spec["layers"])
    for batch in (1, SMALL_BATCH + 1, 256):
        x = torch.randn(batch, 10)
        with torch.no_grad():
            torch.testing.assert_close(sparse(x), model(x), atol=1e-5, rtol=0)
    assert torch.equal(sparse.inputs, torch.tensor([1, 2, 3, 4, 5, 6, 8]))


def test_sparse_linear_layers_of_a_conv_net():
    """Models other than MLPs keep their forward: their pruned Linear layers become SparseLinear, which
    hand each other transposed activations through the ReLU between them."""
    torch.manual_seed(0)
    model = ConvNet((3, 8, 8), [4, 4], 5, fc=(32, 16)).eval()
    with torch.no_grad():
        for m in (*model.hidden, model.out):
            m.weight.mul_(torch.rand_like(m.weight) < 0.2)
    expected = {b: (x := torch.randn(b, 3, 8, 8), model(x)) for b in (1, 40)}
    sparse = sparsify(model, ["hidden.0", "hidden.1", "out"])
    assert [type(m) for m in (*sparse.hidden, sparse.out)] == [SparseLinear] * 3
    for x, y in expected.values():
        with torch.inference_mode():
            torch.testing.assert_close(sparse(x), y, atol=1e-5, rtol=0)


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
    with pytest.raises(TicketlabError, match="not a sparse ticket"):
        load_sparse(export_ticket(run_dir, LEVEL, "dense", tmp_path))
