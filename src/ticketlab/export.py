"""Export one level of a run (a ticket) in a form other programs can use without ticketlab's run store.

Formats:
  safetensors  one portable file: masks, rewind (init) and trained (final) weights, and JSON metadata
  dense        the trained, masked weights as a plain state_dict (`model.load_state_dict`)
  torch-prune  a .pt state_dict in torch.nn.utils.prune form (`<m>.weight_orig`, `<m>.weight_mask`)
  sparse       for inference: an MLP as a compacted SparseMLP (CSR layers where measured faster, activations
               kept transposed), another model with SparseLinear for the Linear layers where CSR was measured
               faster; `load_sparse` rebuilds either (see sparse.py)
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from torch.nn.utils import prune

from .config import ModelHparams
from .data import dataset_info
from .errors import TicketlabError
from .masks import Mask
from .models import build_model
from .models.mlp import MLP
from .sparse import SparseLinear, SparseMLP, choose_layers, load_sparse_mlp, sparse_mlp, sparsify, swap
from .store import (CONFIG, FINAL, INIT, MASK, atomic_write, finished_levels, job_problems, level_dir, load_weights,
                    read_config, read_summary, seed_of, store_part, write_safetensors)

FORMATS = {"safetensors": ".safetensors", "dense": ".dense.safetensors", "torch-prune": ".pt",
           "sparse": ".sparse.safetensors"}
# (input shape, classes) per data set: the data registry loads arrays without naming their shape, and
# load_sparse needs both to rebuild the registry model.


def export_ticket(run_dir: Path | str, level: int, fmt: str, out: Path | str, *, batch_size: int = 256,
                  force_sparse: bool = False) -> Path:
    """Write level `level` of the replicate folder `run_dir` (`.../seed_<s>`) as `fmt`; returns the file.

    `out` is a file, or a folder to hold `ticket_level_<L>.<ext>`; it must lie outside the run store, which
    exports never write to. For "sparse", `batch_size` is the batch the layer choice optimises for, and
    `force_sparse` makes every pruned Linear layer sparse.
    """
    if fmt not in FORMATS:
        raise TicketlabError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TicketlabError(f"export batch size must be a whole number >= 1, got {batch_size!r}")
    path = _out_path(Path(out), level, FORMATS[fmt])
    part = store_part(path)
    if part is not None:
        raise TicketlabError(f"will not write {path}: it is inside the run store ({part}), which exports never "
                             "change; choose an --out outside it")
    ticket = _read_level(Path(run_dir), level)
    if fmt == "safetensors":
        tensors = {f"mask.{k}": v.to(torch.uint8) for k, v in ticket["mask"].items()}
        tensors.update({f"{part}.{k}": v for part in ("init", "final") for k, v in ticket[part].items()})
        _save_safetensors(path, tensors, ticket["metadata"])
    elif fmt == "dense":
        _save_safetensors(path, _masked_final(ticket), ticket["metadata"])
    elif fmt == "torch-prune":
        buffer = io.BytesIO()  # serialised first, written by Python: a full disk is an OSError naming the file
        torch.save(_torch_prune_state(ticket), buffer)
        atomic_write(path, lambda p: p.write_bytes(buffer.getvalue()))
    else:
        _export_sparse(ticket, path, batch_size, force_sparse)
    return path


# ---- Reading a level ---------------------------------------------------------------------------------------


def _read_level(run_dir: Path, level: int) -> dict[str, Any]:
    """Mask (bool), init, final, and the metadata every format carries, of one finished level."""
    job = level_dir(run_dir, level)
    problems = job_problems(job)  # read only: the store is never changed by an export
    if problems:
        raise TicketlabError(f"level {level} of {run_dir} is damaged ({'; '.join(problems)}): rerun the command "
                             "that made it to recompute it")
    if problems is None:
        done = finished_levels(run_dir)
        raise TicketlabError(f"level {level} of {run_dir} is missing or unfinished "
                             f"(finished levels: {', '.join(map(str, done)) or 'none'})")
    experiment_file = run_dir.parent / CONFIG
    if not experiment_file.is_file():
        raise TicketlabError(f"{run_dir} is not a seed folder of a run store: {experiment_file} is missing")
    experiment, mask = read_config(run_dir.parent), Mask.load(job / MASK)
    summary = read_summary(job)
    if summary.get("status", "ok") != "ok":
        raise TicketlabError(f"level {level} of {run_dir} {summary['status']}"
                             + (f" at step {summary.get('diverged_at_step')}" if summary["status"] == "diverged" else "")
                             + ": it has no trained weights to export")
    metadata = {"experiment_hash": experiment["hash"], "config": experiment["config"],
                "provenance": experiment.get("provenance"), "seed": seed_of(run_dir),
                "level": level, "start_step": summary["start_step"], "density": mask.density(),
                "layer_density": mask.layer_density()}
    return {"mask": mask.tensors, "init": load_weights(job / INIT),
            "final": load_weights(job / FINAL), "metadata": metadata}


def _out_path(out: Path, level: int, ext: str) -> Path:
    # A folder, or a new path without a suffix (a folder to make): a file name we choose goes inside it.
    if out.is_dir() or (not out.suffix and not out.exists()):
        return out / f"ticket_level_{level}{ext}"
    return out


def _masked_final(ticket: dict[str, Any]) -> dict[str, torch.Tensor]:
    # Training keeps pruned weights at exactly 0 already; multiplying again costs nothing and guarantees it.
    final, mask = ticket["final"], ticket["mask"]
    return {k: v * mask[k] if k in mask else v for k, v in final.items()}


def _save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    # safetensors metadata is str -> str: each value is stored as JSON so numbers and dicts come back typed.
    text = {k: json.dumps(v, sort_keys=True) for k, v in metadata.items()}
    write_safetensors(path, tensors, metadata=text)  # a full disk: an OSError naming the file, said in one line


def _read_safetensors(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not Path(path).is_file():
        raise TicketlabError(f"ticket file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            metadata = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    except (SafetensorError, json.JSONDecodeError, OSError) as e:
        raise TicketlabError(f"{path} is not a ticketlab ticket: {str(e).strip().splitlines()[0]}") from None
    return tensors, metadata


def load_ticket(path: Path | str) -> dict[str, Any]:
    """A "safetensors" ticket back as {"masks": bool tensors, "init", "final", "metadata"}."""
    tensors, metadata = _read_safetensors(path)
    parts = {p: {k.removeprefix(p + "."): v for k, v in tensors.items() if k.startswith(p + ".")}
             for p in ("mask", "init", "final")}
    if sum(map(len, parts.values())) != len(tensors):
        raise TicketlabError(f"{path} is not a ticketlab ticket (tensors other than mask./init./final.)")
    for k, v in parts["mask"].items():  # a mask holds 0 and 1 only: 2 or 0.5 is not a mask, whatever it meant
        if v.numel() and not bool(((v == 0) | (v == 1)).all()):
            raise TicketlabError(f"{path}: mask.{k} holds values other than 0 and 1: not a mask")
    masks = {k: v.to(torch.bool) for k, v in parts["mask"].items()}
    return {"masks": masks, "init": parts["init"], "final": parts["final"], "metadata": metadata}


# ---- torch.nn.utils.prune form -----------------------------------------------------------------------------


def _torch_prune_state(ticket: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Each pruned weight `<m>.weight` becomes `<m>.weight_orig` + `<m>.weight_mask`: the names (and, for the
    mask, the float dtype) that prune.custom_from_mask registers, so load_state_dict finds them."""
    state = {}
    for key, value in _masked_final(ticket).items():
        mask = ticket["mask"].get(key)
        if mask is None or bool(mask.all()):  # biases and unpruned layers stay as they are
            state[key] = value
        else:
            state[key + "_orig"], state[key + "_mask"] = value, mask.to(value.dtype)
    return state


def load_torch_prune(model: nn.Module, path: Path | str) -> nn.Module:
    """Prune `model`'s layers with the file's masks (prune.custom_from_mask) and load its weights."""
    if not Path(path).is_file():
        raise TicketlabError(f"ticket file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    pruned = [(model.get_submodule(k.removesuffix("weight_mask").removesuffix(".")), m) for k, m in state.items()
              if k.endswith("weight_mask")]
    for module, mask in pruned:
        prune.custom_from_mask(module, "weight", mask)
    model.load_state_dict(state)
    for module, _ in pruned:  # the pruned `weight` is recomputed only on forward: refresh it for the loaded values
        module.weight = module.weight_orig * module.weight_mask
    return model


# ---- Sparse inference (the modules and kernels are in sparse.py) --------------------------------------------


def _export_sparse(ticket: dict[str, Any], path: Path, batch_size: int, force: bool) -> None:
    meta = dict(ticket["metadata"])
    meta["model"], dataset = meta["config"]["model"], meta["config"]["dataset"]["name"]
    info = dataset_info(dataset)
    meta["input_shape"], meta["num_classes"] = info.input_shape, info.num_classes
    try:  # a run of a user module (run_lottery's model_fn) cannot be rebuilt from its config
        model = _build(meta)
        model.load_state_dict(_masked_final(ticket))
    except (TicketlabError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0]
        raise TicketlabError(f"sparse export needs a registry model ({meta['model']['name']!r}: {reason})") from None
    meta["target_batch"] = batch_size
    if isinstance(model, MLP):  # the whole network as one SparseMLP, compacted
        linears = [(f"hidden.{i}", m) for i, m in enumerate(model.hidden)] + [("out", model.out)]
        module, meta["mlp"] = sparse_mlp(linears, target_batch=batch_size, force=force)
        meta["timings"] = meta["mlp"].pop("timings")
        meta["compaction"] = meta["mlp"].pop("compaction")
    else:  # e.g. a conv net: its pruned Linear layers become SparseLinear where measured faster
        meta["timings"] = choose_layers(model.eval(), target_batch=batch_size, force=force)
        module = sparsify(model, [name for name, t in meta["timings"].items() if t["sparse"]])
    meta["sparse_layers"] = [name for name, t in meta["timings"].items() if t["sparse"]]
    _save_safetensors(path, module.state_dict(), meta)


def _build(meta: dict[str, Any]) -> nn.Module:
    # seed=0: the initial weights are overwritten by the file's
    return build_model(ModelHparams(**meta["model"]), tuple(meta["input_shape"]), meta["num_classes"], seed=0)


def load_sparse(path: Path | str) -> nn.Module:
    """The model of a "sparse" file, in eval mode: a SparseMLP for an MLP, else the registry model with
    SparseLinear for its sparse layers. Either takes the data's (batch, ...) inputs and returns logits."""
    tensors, meta = _read_safetensors(path)
    if "sparse_layers" not in meta:
        raise TicketlabError(f"{path} is not a sparse ticket (export it with format 'sparse')")
    if "mlp" in meta:
        return load_sparse_mlp(tensors, meta["mlp"])
    model = _build(meta)
    for name in meta["sparse_layers"]:
        parts = {k: tensors.get(f"{name}.{k}") for k in ("crow_indices", "col_indices", "values", "bias")}
        swap(model, name, SparseLinear(**parts, in_features=model.get_submodule(name).in_features))
    model.load_state_dict(tensors)  # strict: every tensor of the file is used, every parameter is set
    return model.eval()


__all__ = ["FORMATS", "SparseLinear", "SparseMLP", "choose_layers", "export_ticket", "load_sparse", "load_ticket",
           "load_torch_prune", "sparsify"]
