"""Content hashes: stable ids for documents and passages, and versions for built artifacts."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(*parts: Any, length: int = 16) -> str:
    """sha256 over the parts' canonical JSON, hex, cut to ``length`` characters."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def file_digest(path, length: int = 16) -> str:
    """sha256 of a file's bytes, hex, cut to ``length`` characters."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]
