"""JSONL rows with quarantine: every unusable line is kept with its number and reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

__all__ = ["read_jsonl_rows"]


def read_jsonl_rows(path: Path, parse: Callable[[Any, int], dict[str, Any]],
                    errors: tuple[type[BaseException], ...] = (ValueError,)
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, bad): ``parse(json_value, line_number)`` per non-blank line; a line whose JSON or
    ``parse`` raises one of ``errors`` goes to ``bad`` as ``{line, error}``."""
    rows, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(parse(json.loads(line), n))
            except errors as e:
                bad.append({"line": n, "error": f"{type(e).__name__}: {e}"})
    return rows, bad
