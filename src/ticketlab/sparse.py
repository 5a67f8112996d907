"""Sparse inference of tickets: pruned Linear layers as CSR, and MLPs run end to end on sparse layers.

Kernels (one thread, LeNet-300-100 at 3.6% density, batch 256; see bench/sparse_inference.py):
- A sparse layer computes y^T = W @ x^T on activations kept transposed (features x batch). For a batch above
  SMALL_BATCH it runs as `embedding_bag(x^T, col_indices, crow_indices, per_sample_weights=values)`:
  row j of y^T is the weighted sum of the rows of x^T that W's row j selects, which is exactly CSR @ dense,
  and FBGEMM's vectorised kernel does it ~2x faster than torch.sparse.mm (MKL) on this CPU (first layer:
  122 vs 237 us). At a small batch MKL's CSR product is faster (embedding_bag's rows are too short).
- The transposition of the input is the other large cost (~1/3 of the sparse model at batch 256): numpy's
  strided copy is ~1.6x faster than torch's (90 vs 145 us), and SparseMLP does it once for the network.
- SparseMLP removes what a ticket cannot use (`compact`): inputs with no weight, hidden units with no outgoing
  weight, and hidden units with no incoming weight (a constant relu(bias), folded into the next bias).
Every transformation is exact: outputs equal the masked dense model's to float rounding.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .models.init import LAYERS

# Batches up to this size use MKL's CSR product, larger ones embedding_bag (the two cross near 16 on
# LeNet-300-100's first layer; both are exact, so the choice only moves time).
SMALL_BATCH = 16


def _csr(weight: torch.Tensor | None = None, parts: tuple[torch.Tensor, ...] = (), shape: tuple[int, ...] = ()):
    """A CSR tensor from a dense weight or from (crow, col, values) parts, which it shares memory with.
    The parts may come from a file: their invariants are checked (once per layer) rather than trusted."""
    with warnings.catch_warnings():  # torch warns that CSR support is "beta" on first use
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        if weight is not None:
            return weight.to_sparse_csr()
        return torch.sparse_csr_tensor(*parts, shape, check_invariants=True)


def _numpy_ok(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and not t.requires_grad and t.dtype in (torch.float32, torch.float64)


def _rows(h_t: torch.Tensor) -> torch.Tensor:
    """Transposed activations (features x batch) with contiguous rows, as embedding_bag gathers them.
    A transposed view is copied (numpy's strided copy is faster than torch's); a (features, 1) view is
    re-strided, since a column with the stride of a row makes embedding_bag ~4x slower."""
    if h_t.shape[1] == 1:
        return h_t.reshape(-1)[:, None]
    if h_t.stride(1) == 1 and h_t.stride(0) == h_t.shape[1]:
        return h_t
    if _numpy_ok(h_t):
        return torch.from_numpy(np.ascontiguousarray(h_t.numpy()))
    return h_t.contiguous()


def _input_t(x: torch.Tensor, inputs: torch.Tensor | None) -> torch.Tensor:
    """(batch, features) -> columns `inputs` (all: None) of x, transposed. Gathering columns makes the result
    row-contiguous in the same copy; without it this is a view, which a sparse layer copies (`_rows`) and
    a dense one reads as it is."""
    if inputs is None:
        return x.T
    if x.shape[0] > 1 and _numpy_ok(x):
        return torch.from_numpy(np.ascontiguousarray(x.numpy().T[inputs.numpy()]))
    return x.index_select(1, inputs).T.contiguous()


class _Prepared(nn.Module):
    """A module whose forward reads tensors derived once from its buffers and parameters (`_prepare`), kept
    in a plain attribute: nn.Module's lookup of a buffer costs ~1 us, and a sparse forward is ~250 us. Dropped
    whenever those tensors may be replaced (.to(), .float(), load_state_dict)."""

    _prepared: tuple | None = None

    def _prepare(self) -> tuple:
        raise NotImplementedError

    def prepared(self) -> tuple:
        if self._prepared is None:
            with torch.no_grad():
                self._prepared = self._prepare()
        return self._prepared

    def _apply(self, fn, recurse=True):
        self._prepared = None
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs):
        self._prepared = None
        super()._load_from_state_dict(*args, **kwargs)


class SparseLinear(_Prepared):
    """y = x @ W.T + b with W in CSR form. The CSR parts are buffers, so state_dict and .to() handle them.

    `forward` takes and returns the usual (..., features) layout; its result is a transposed view of the
    (features x batch) result, which a next SparseLinear consumes without a copy. `forward_t` is the same layer
    on transposed activations: (in_features, batch) -> (out_features, batch).
    """

    def __init__(self, crow_indices: torch.Tensor, col_indices: torch.Tensor, values: torch.Tensor,
                 bias: torch.Tensor | None, in_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, len(crow_indices) - 1
        for key, value in (("crow_indices", crow_indices), ("col_indices", col_indices), ("values", values),
                           ("bias", bias)):
            self.register_buffer(key, value)

    @classmethod
    def from_dense(cls, weight: torch.Tensor, bias: torch.Tensor | None) -> SparseLinear:
        w = _csr(weight.detach())
        # int32 indices: half the index bytes, MKL's native index type, and a little faster in embedding_bag
        crow, col = w.crow_indices().to(torch.int32), w.col_indices().to(torch.int32)
        return cls(crow, col, w.values(), None if bias is None else bias.detach().clone(), weight.shape[1])

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> SparseLinear:
        return cls.from_dense(linear.weight, linear.bias)

    def _prepare(self) -> tuple:
        # The CSR tensor shares the buffers; building it checks them (they may come from a file) before
        # embedding_bag reads them too.
        parts = (self.crow_indices, self.col_indices, self.values)
        csr = _csr(parts=parts, shape=(self.out_features, self.in_features))
        bias = None if self.bias is None else self.bias[:, None]
        return csr, self.col_indices, self.crow_indices, self.values, bias

    def forward_t(self, h_t: torch.Tensor) -> torch.Tensor:
        csr, col, crow, values, bias = self._prepared or self.prepared()
        if h_t.shape[1] <= SMALL_BATCH:
            return torch.sparse.mm(csr, h_t) if bias is None else torch.sparse.addmm(bias, csr, h_t)
        # The ATen op, without F.embedding_bag's argument checks (~5 us): (table, indices, offsets,
        # scale_grad_by_freq, mode 0 = sum, sparse gradient, per_sample_weights, include_last_offset)
        y = torch.embedding_bag(_rows(h_t), col, crow, False, 0, False, values, True)[0]
        return y if bias is None else y.add_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = self.forward_t(flat.T).T
        return y.reshape(*x.shape[:-1], self.out_features)


class DenseLinearT(_Prepared, nn.Linear):
    """An nn.Linear with `forward_t`, for the dense layers of a SparseMLP: (in, batch) -> (out, batch)."""

    def _prepare(self) -> tuple:
        return self.weight, None if self.bias is None else self.bias[:, None]

    def forward_t(self, h_t: torch.Tensor) -> torch.Tensor:
        weight, bias = self._prepared or self.prepared()
        return torch.mm(weight, h_t) if bias is None else torch.addmm(bias, weight, h_t)


class SparseMLP(nn.Module):
    """Linear, ReLU, ..., Linear with activations kept transposed (features x batch) from the input to the
    logits: one transposition in (gathering only the inputs the network uses) and one out, instead of one per
    layer. `layers` are SparseLinear or DenseLinearT; `inputs` the input features kept (None: all).
    forward takes (batch, ...) inputs, flattens them as the registry's MLP does, and returns (batch, classes).
    Dropout is left out: this is an inference module."""

    def __init__(self, layers: list[nn.Module], in_features: int, inputs: torch.Tensor | None = None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.in_features = in_features
        self.register_buffer("inputs", inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _input_t(x.reshape(x.shape[0], self.in_features), self.inputs)
        *hidden, out = self.layers
        for layer in hidden:
            h = torch.relu_(layer.forward_t(h))
        return out.forward_t(h).T.contiguous()


# ---- Compaction ----------------------------------------------------------------------------------------


def compact(weights: list[torch.Tensor], biases: list[torch.Tensor | None]) -> dict[str, Any]:
    """Remove what a pruned MLP (Linear, ReLU, ..., Linear) cannot use; the outputs stay the same.

    - an input feature no weight reads is dropped (`inputs`: the ones kept);
    - a hidden unit no weight reads is dropped with its incoming weights and bias;
    - a hidden unit with no incoming weight outputs the constant relu(bias): its contribution to the next
      layer is added to that layer's bias, and the unit dropped.
    Removing a unit can leave another without inputs or readers, so this repeats until nothing changes.
    Returns the new `weights` and `biases` (a missing bias becomes zeros), `inputs` (a LongTensor, or None
    when all are kept), and `report`: per hidden layer the original indices of the units removed (`no_output`)
    and folded (`no_input`), the inputs removed, and the widths before and after.
    """
    ws = [w.detach().clone() for w in weights]
    bs = [torch.zeros(w.shape[0], dtype=w.dtype) if b is None else b.detach().clone() for w, b in zip(ws, biases)]
    # keep[k]: original indices of the features entering layer k (keep[0] are the inputs)
    keep = [torch.arange(w.shape[1]) for w in ws]
    widths = [ws[0].shape[1], *(w.shape[0] for w in ws)]
    removed: list[dict[str, list[int]]] = [{"no_output": [], "no_input": []} for _ in ws[:-1]]
    changed = True
    while changed:
        changed = False
        for k in range(len(ws) - 1):  # the units between layer k and layer k + 1
            reads, has_input = (ws[k + 1] != 0).any(0), (ws[k] != 0).any(1)
            fold = reads & ~has_input
            if bool(fold.any()):  # constant units: relu(b) times their outgoing weights joins the next bias
                bs[k + 1] = bs[k + 1] + ws[k + 1][:, fold] @ torch.relu(bs[k][fold])
            drop = ~reads | ~has_input
            if bool(drop.any()):
                removed[k]["no_output"] += keep[k + 1][~reads].tolist()
                removed[k]["no_input"] += keep[k + 1][fold].tolist()
                ws[k], bs[k], ws[k + 1] = ws[k][~drop], bs[k][~drop], ws[k + 1][:, ~drop]
                keep[k + 1] = keep[k + 1][~drop]
                changed = True
        used = (ws[0] != 0).any(0)
        if not bool(used.all()):
            ws[0], keep[0] = ws[0][:, used], keep[0][used]
            changed = True
    inputs_removed = sorted(set(range(widths[0])) - set(keep[0].tolist()))
    report = {"widths_before": widths, "widths_after": [ws[0].shape[1], *(w.shape[0] for w in ws)],
              "inputs_removed": inputs_removed,
              "units_removed": [{k: sorted(v) for k, v in r.items()} for r in removed]}
    inputs = None if not inputs_removed else keep[0]
    return {"weights": ws, "biases": bs, "inputs": inputs, "report": report}


# ---- Choosing sparse layers by measurement ---------------------------------------------------------------


def clock() -> Callable[[], float]:
    """The clock to time torch calls with: with one torch thread, the CPU time of this thread, which leaves out
    the time other processes hold the core (wall time measured 1.5-2x longer and far noisier on a busy
    2-core machine); with more, wall time, since the work is spread over threads."""
    return time.thread_time if torch.get_num_threads() == 1 else time.perf_counter


def _time_alternating(calls: dict[str, Callable[[], Any]], repeats: int, number: int) -> dict[str, float]:
    """Microseconds per call of each function (see `clock`): the median over `repeats` of the mean of
    `number` calls. The functions alternate within each repeat so that another process's load affects all
    alike instead of deciding the comparison; the first round warms up and is dropped."""
    samples: dict[str, list[float]] = {key: [] for key in calls}
    now = clock()
    with torch.inference_mode():
        for _ in range(repeats + 1):
            for key, call in calls.items():
                start = now()
                for _ in range(number):
                    call()
                samples[key].append(1e6 * (now() - start) / number)
    return {key: statistics.median(values[1:]) for key, values in samples.items()}


def _time_pair(dense: Callable, sparse: Callable, inputs: dict[int, torch.Tensor], repeats: int,
               number: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {"dense_us": {}, "sparse_us": {}}
    for b, x in inputs.items():
        t = _time_alternating({"dense_us": lambda: dense(x), "sparse_us": lambda: sparse(x)}, repeats, number)
        for key, value in t.items():
            out[key][str(b)] = value
    return out


def choose_layers(model: nn.Module, batch_sizes: tuple[int, ...] = (1, 256), target_batch: int = 256,
                  repeats: int = 7, number: int = 5, force: bool = False) -> dict[str, dict[str, Any]]:
    """Time each pruned nn.Linear dense and as SparseLinear on random inputs; per layer name: density, the
    times in microseconds by batch size, and `sparse` = CSR was faster at `target_batch` (always, with `force`).
    A SparseLinear returns a transposed view: that helps a next sparse layer (its x.T is contiguous) and hurts
    a dense one (4x measured on LeNet's output layer), so each layer is timed on the layout the previous
    choice gives it, in registration order (the forward order of the registry's models)."""
    sizes = sorted({*batch_sizes, target_batch})
    result, transposed = {}, False
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and not bool((module.weight != 0).all()):
            n = module.in_features
            inputs = {b: torch.randn(n, b).T if transposed else torch.randn(b, n) for b in sizes}
            timings = _time_pair(module, SparseLinear.from_linear(module), inputs, repeats, number)
            wins = timings["sparse_us"][str(target_batch)] < timings["dense_us"][str(target_batch)]
            result[name] = {"density": float((module.weight != 0).float().mean()), "transposed_input": transposed,
                            **timings, "sparse": force or wins}
            transposed = result[name]["sparse"]
        elif isinstance(module, LAYERS):
            transposed = False  # a dense layer's output is row-major again
    return result


def sparsify(model: nn.Module, layers: list[str]) -> nn.Module:
    """Replace the named nn.Linear modules of `model` by SparseLinear, in place."""
    for name in layers:
        swap(model, name, SparseLinear.from_linear(model.get_submodule(name)))
    return model


def swap(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def sparse_mlp(linears: list[tuple[str, nn.Linear]], batch_sizes: tuple[int, ...] = (1, 256),
               target_batch: int = 256, repeats: int = 7, number: int = 5,
               force: bool = False) -> tuple[SparseMLP, dict[str, Any]]:
    """A SparseMLP equal to the MLP whose Linear layers are `linears` (name, module), in forward order, with
    ReLU between them. The MLP is compacted first; then each layer is timed dense and sparse on the transposed
    layout it will see, and is sparse where that was faster at `target_batch` (every pruned layer, with `force`).
    Returns the module and its description: `layers` (name, in/out features, sparse), `compaction` (the report
    of `compact`) and `timings` (per layer: density and both times by batch size)."""
    c = compact([m.weight for _, m in linears], [m.bias for _, m in linears])
    sizes = sorted({*batch_sizes, target_batch})
    in_features, layers, spec, timings = linears[0][1].in_features, [], [], {}
    for k, ((name, _), w, b) in enumerate(zip(linears, c["weights"], c["biases"])):
        dense = DenseLinearT(w.shape[1], w.shape[0], dtype=w.dtype).requires_grad_(False)
        with torch.no_grad():
            dense.weight.copy_(w)
            dense.bias.copy_(b)
        sparse = SparseLinear.from_dense(w, b)
        density = float((w != 0).float().mean())
        if k == 0:  # the network's input as SparseMLP.forward hands it over: a transposed view, or gathered
            inputs = {s: _input_t(torch.randn(s, in_features), c["inputs"]) for s in sizes}
        else:  # after a layer and relu_: a fresh (features x batch) tensor
            inputs = {s: torch.rand(w.shape[1], s) for s in sizes}
        t = _time_pair(dense.forward_t, sparse.forward_t, inputs, repeats, number)
        is_sparse = (force and density < 1) or t["sparse_us"][str(target_batch)] < t["dense_us"][str(target_batch)]
        timings[name] = {"density": density, **t, "sparse": is_sparse}
        layers.append(sparse if is_sparse else dense)
        spec.append({"name": name, "in_features": w.shape[1], "out_features": w.shape[0], "sparse": is_sparse})
    model = SparseMLP(layers, in_features, c["inputs"]).eval()
    return model, {"layers": spec, "in_features": in_features, "compaction": c["report"], "timings": timings}


def load_sparse_mlp(tensors: dict[str, torch.Tensor], spec: dict[str, Any]) -> SparseMLP:
    """The SparseMLP described by `spec` (see sparse_mlp) with the tensors of its state_dict."""
    layers: list[nn.Module] = []
    for i, layer in enumerate(spec["layers"]):
        p = f"layers.{i}."
        if layer["sparse"]:
            parts = {k: tensors.get(p + k) for k in ("crow_indices", "col_indices", "values", "bias")}
            layers.append(SparseLinear(**parts, in_features=layer["in_features"]))
        else:
            dense = DenseLinearT(layer["in_features"], layer["out_features"], bias=p + "bias" in tensors,
                                 dtype=tensors[p + "weight"].dtype)
            layers.append(dense.requires_grad_(False))
    model = SparseMLP(layers, spec["in_features"], tensors.get("inputs"))
    model.load_state_dict(tensors)  # strict: every tensor of the file is used, every parameter is set
    return model.eval()


__all__ = ["SMALL_BATCH", "DenseLinearT", "SparseLinear", "SparseMLP", "choose_layers", "clock", "compact",
           "load_sparse_mlp", "sparse_mlp", "sparsify", "swap"]
