"""How the store's files are written and read: JSON, safetensors weights and checkpoints.

Every write goes through files.atomic_write (a temporary file, fsynced and renamed into place), so a killed
run leaves the old file or the new one. Every read of a damaged file is one line naming the file (a
TicketlabError), or, for a checkpoint, a line on stderr and a restart from the job's start.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..errors import TicketlabError
from ..files import atomic_write, write_safetensors


def _say(message: str) -> None:
    """One line on stderr: something in the store was wrong and what is done about it."""
    print(f"ticketlab: {message}", file=sys.stderr, flush=True)


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ---- JSON --------------------------------------------------------------------------------------------------


def _finite(obj: Any) -> Any:
    """NaN and infinities as None (JSON null): JSON has no such numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    """Valid JSON only (NaN and infinities written as null), written atomically."""
    text = json.dumps(_finite(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write(Path(path), lambda p: p.write_text(text))


class Record(dict):
    """A JSON object read from a stored file. A key it lacks is one line naming the file (a TicketlabError),
    not a KeyError deep in a reader: a summary or config of another shape (`{}`, an edited file) then says
    which file it is, whoever reads it."""

    def __init__(self, pairs: Any = (), path: Path | str = "") -> None:
        super().__init__(pairs)
        self.path = str(path)

    def __missing__(self, key: Any) -> Any:
        raise TicketlabError(f"{self.path} has no {key!r}: it is not a file this version of ticketlab wrote, or "
                             "it was changed; `ticketlab verify` on its run lists every damaged file")


def read_json(path: Path) -> Any:
    """The file's JSON; each object in it a Record (a missing key names the file)."""
    try:
        return json.loads(Path(path).read_text(), object_hook=lambda pairs: Record(pairs, path))
    except ValueError as e:  # not JSON, or not text
        raise TicketlabError(f"{path} is damaged (not valid JSON: {_reason(e)}); `ticketlab verify` on its run "
                             "lists every damaged file") from None


# ---- Weights -----------------------------------------------------------------------------------------------


def save_weights(path: Path, model_or_state: nn.Module | dict[str, torch.Tensor]) -> None:
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    write_safetensors(path, {k: v.detach().to("cpu") for k, v in state.items()})


def load_weights(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    try:
        tensors = load_file(str(path))
    except SafetensorError as e:
        raise TicketlabError(f"{path} is damaged ({_reason(e)}); `ticketlab verify` on its run lists every "
                             "damaged file") from None
    return {k: v.to(device) for k, v in tensors.items()}


# ---- Checkpoints -------------------------------------------------------------------------------------------

# A checkpoint is this line, the blake2b-256 of the rest, then torch.save's bytes: a torn or garbled file is
# found before torch reads it (torch.load itself reads garbled tensor data without a word).
_CHECKPOINT_MAGIC = b"ticketlab checkpoint, blake2b-256 of the rest follows\n"


class _Damaged(Exception):
    pass


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    digest = hashlib.blake2b(payload, digest_size=32).digest()

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            f.write(_CHECKPOINT_MAGIC)
            f.write(digest)
            f.write(payload)

    atomic_write(path, write)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    data = Path(path).read_bytes()
    if data.startswith(_CHECKPOINT_MAGIC):
        start = len(_CHECKPOINT_MAGIC) + 32
        payload = memoryview(data)[start:]
        if hashlib.blake2b(payload, digest_size=32).digest() != data[len(_CHECKPOINT_MAGIC):start]:
            raise _Damaged("torn or garbled: hash mismatch")
        source = io.BytesIO(payload)
    else:  # written before checkpoints carried their digest
        source = io.BytesIO(data)
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise _Damaged("it holds objects other than tensors and plain data, which torch.load(weights_only=True) "
                       "refuses") from None
    except Exception as e:  # noqa: BLE001  (torn zip archives, EOF, ...: whatever torch says, it is unreadable)
        raise _Damaged(f"unreadable: {_reason(e)}") from None
    if not isinstance(state, dict):
        raise _Damaged("not a checkpoint")
    return state


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint's state, or None: none there, or one that is torn, garbled or refused (said in one line
    and deleted: the job restarts from its start)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return _read_checkpoint(path)
    except _Damaged as e:
        _say(f"{path} is damaged ({e}); deleted it, the job restarts from its start")
        path.unlink(missing_ok=True)
        return None
