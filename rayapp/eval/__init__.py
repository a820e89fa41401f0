"""Eval stage: metrics and the benchmark report writer (JSON + Markdown in a results folder)."""

from __future__ import annotations

import datetime as _dt
import platform
from pathlib import Path
from typing import Any, Sequence

from rayapp._internal.artifacts import write_json_atomic

__all__ = ["write_markdown_table", "write_report", "machine_info"]


def machine_info() -> dict[str, Any]:
    import os

    import torch

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
    }


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def write_markdown_table(path: Path, title: str, header: Sequence[str], rows: Sequence[Sequence[Any]],
                         notes: str = "") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    if notes:
        lines += [notes, ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_report(results_dir: Path, name: str, data: dict[str, Any], header: Sequence[str],
                 rows: Sequence[Sequence[Any]], notes: str = "") -> Path:
    """``<results_dir>/<name>.json`` (data + machine info) and ``<name>.md`` (the table)."""
    results_dir = Path(results_dir)
    payload = {"benchmark": name, "machine": machine_info(), **data}
    write_json_atomic(results_dir / f"{name}.json", payload)
    write_markdown_table(results_dir / f"{name}.md", name, header, rows, notes)
    return results_dir / f"{name}.json"
