"""Versioned, content-addressed artifact folders written atomically.

A build writes into ``<final>.tmp-<pid>-<random>`` and renames it to ``<final>`` only once complete,
so a crash or a bad input never leaves a half-written version and never touches an older one.
``manifest.json`` is the last file written; a folder without it is not a finished artifact.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

MANIFEST = "manifest.json"


def read_manifest(folder: Path) -> Optional[dict[str, Any]]:
    """The folder's manifest, or None if the folder is not a finished artifact."""
    p = Path(folder) / MANIFEST
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; on success it is renamed to ``final``.

    If ``final`` already exists when the build finishes (another process built the same version),
    the new copy is discarded: both are the same content by construction.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        if read_manifest(tmp) is None:
            raise RuntimeError(f"artifact build into {tmp} finished without writing {MANIFEST}")
        try:
            os.rename(tmp, final)
        except OSError:
            if read_manifest(final) is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
