"""Fetching data files when the machine is online: checksum-verified, written atomically to the cache."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

CACHE = Path(os.environ.get("TICKETLAB_DATA", Path.home() / ".cache" / "ticketlab" / "data"))


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(urls: list[str], dest: Path, md5: str, timeout: float = 30.0) -> bool:
    """Download the first mirror that works into `dest`; True on success, False when offline.

    A file whose checksum does not match is discarded, never used.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
        except (urllib.error.URLError, OSError, TimeoutError):
            continue
        if md5sum(tmp) == md5:
            os.replace(tmp, dest)
            return True
        tmp.unlink(missing_ok=True)
    return False
