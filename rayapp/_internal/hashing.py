"""Content hashes: stable ids for documents and passages, and versions for built artifacts."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional


def stable_hash(*parts: Any, length: int = 16) -> str:
    """sha256 over the parts' canonical JSON, hex, cut to ``length`` characters."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def file_digest(path, length: int = 16, memo_dir: Optional[Path] = None) -> str:
    """sha256 of a file's bytes, hex, cut to ``length`` characters.

    With ``memo_dir``, the digest is remembered there under the file's identity (resolved path,
    size, mtime in ns, inode), so a large file is read once per change rather than once per process
    (a model replica hashing its weights on every start). Like git's index and make, this trusts the
    file system's metadata: a file rewritten in place with the same size and mtime is not noticed."""
    memo = None
    if memo_dir is not None:
        st = os.stat(path)
        memo = Path(memo_dir) / stable_hash(str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
        try:
            return memo.read_text(encoding="ascii")[:length]
        except OSError:
            pass
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if memo is not None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_name(f"{memo.name}.{os.getpid()}.tmp")
            tmp.write_text(h.hexdigest(), encoding="ascii")
            tmp.replace(memo)
        except OSError:  # a read-only home still gets the digest, just not remembered
            pass
    return h.hexdigest()[:length]
