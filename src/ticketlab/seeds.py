"""Seeds: every random stream of a replicate derived from its one seed by one function.

A replicate seed s drives several independent streams: the initial weights ("init"), the order of the
training batches and dropout ("data"), each control's draw ("control", variant, index), random
re-initialisation for training from scratch ("scratch", level), and the copies of a stability analysis
("stability", copy). Each stream's seed is a hash of (s, purpose, ...), so no two streams share a seed and
adding a new purpose changes none of the others. Results record the seeds they used.
"""

from __future__ import annotations

import hashlib

from .errors import TicketlabError

MAX_SEED = 2**63 - 1


def check_seed(seed: object, what: str = "seed") -> int:
    """A replicate seed must be a whole number in [0, 2^63): say so in one line otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise TicketlabError(f"{what} must be a whole number in [0, 2^63 - 1], got {seed!r}")
    return seed


def derive_seed(seed: int, purpose: str, *parts: object) -> int:
    """The seed of one stream of replicate `seed`: a 31-bit number (fits every RNG torch and NumPy have)."""
    text = "/".join(str(p) for p in (seed, purpose, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def streams(seed: int) -> dict[str, int]:
    """The two streams every training job of a replicate uses: initial weights and data order."""
    return {"init": derive_seed(seed, "init"), "data": derive_seed(seed, "data")}
