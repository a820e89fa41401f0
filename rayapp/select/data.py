"""Multi-label data: dense ARFF and headerless CSV readers, a semi-supervised split.

Label columns in ARFF are found by type: every nominal attribute whose values are exactly ``{0, 1}``
is a label, numeric attributes are features. That reads dense Mulan files with numeric features
(emotions: labels last) and MEKA-style ones (yeast: labels first) alike; a file that declares
binary *features* as ``{0,1}`` nominals would have them read as labels (convert it to CSV and use
:func:`read_multilabel_csv`, which takes the label count and position). A headerless CSV has no types, so the caller says how
many label columns there are and where (``label_position``: ``"last"`` or ``"first"``).

Bad input raises :class:`MultiLabelDataError` naming the file, line and column: a non-numeric or
missing value (NaN), a label value other than 0/1, a row of the wrong width.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np

__all__ = ["MultiLabelData", "MultiLabelDataError", "read_arff", "read_multilabel_csv", "semi_supervised_split",
           "check_multilabel"]


class MultiLabelDataError(ValueError):
    """Malformed multi-label input (the message names the file, line or column)."""


@dataclass
class MultiLabelData:
    X: np.ndarray  # (n, d) float64
    Y: np.ndarray  # (n, c) int8 in {0, 1}
    feature_names: list[str]
    label_names: list[str]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.X.shape[0], self.X.shape[1], self.Y.shape[1]


_ATTR = re.compile(r"@attribute\s+('(?:[^']*)'|\"(?:[^\"]*)\"|\S+)\s+(.+)$", re.IGNORECASE)


def _strip_quotes(s: str) -> str:
    return s[1:-1] if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"" else s


def read_arff(path: Path) -> MultiLabelData:
    """A dense ARFF file; labels are the nominal ``{0,1}`` attributes (see the module doc)."""
    path = Path(path)
    names, kinds = [], []  # kind: "num" | "label" | other nominal (an error)
    data_line = None
    lines = path.read_text(encoding="utf-8", errors="strict").splitlines()
    for i, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        low = line.lower()
        if low.startswith("@relation"):
            continue
        if low.startswith("@attribute"):
            m = _ATTR.match(line)
            if not m:
                raise MultiLabelDataError(f"{path}:{i}: cannot parse attribute line {line!r}")
            name, typ = _strip_quotes(m.group(1)), m.group(2).strip()
            if typ.lower() in ("numeric", "real", "integer"):
                kinds.append("num")
            elif typ.startswith("{"):
                values = {v.strip().strip("'\"") for v in typ.strip("{}").split(",")}
                if values != {"0", "1"}:
                    raise MultiLabelDataError(f"{path}:{i}: attribute {name!r} is nominal {typ} (only numeric "
                                              "features and {0,1} labels are supported)")
                kinds.append("label")
            else:
                raise MultiLabelDataError(f"{path}:{i}: attribute {name!r} has unsupported type {typ!r}")
            names.append(name)
        elif low.startswith("@data"):
            data_line = i
            break
    if data_line is None:
        raise MultiLabelDataError(f"{path}: no @data section")
    if "label" not in kinds:
        raise MultiLabelDataError(f"{path}: no {{0,1}} label attribute found")
    rows = []
    for i, raw in enumerate(lines[data_line:], data_line + 1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        if line.startswith("{"):
            raise MultiLabelDataError(f"{path}:{i}: sparse ARFF rows are not supported")
        rows.append((i, line.split(",")))
    table = _to_matrix(rows, len(names), path)
    lab = np.array([k == "label" for k in kinds])
    return _checked(table, lab, names, [i for i, _ in rows], path)


def read_multilabel_csv(path: Path, n_labels: int, label_position: Literal["first", "last"] = "last",
                        delimiter: str = ",") -> MultiLabelData:
    """A headerless CSV of features and ``n_labels`` 0/1 label columns (``label_position`` says where)."""
    path = Path(path)
    if n_labels < 1:
        raise MultiLabelDataError(f"n_labels must be >= 1, got {n_labels}")
    rows = [(i, line.strip().split(delimiter))
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    if not rows:
        raise MultiLabelDataError(f"{path}: no rows")
    width = len(rows[0][1])
    if width <= n_labels:
        raise MultiLabelDataError(f"{path}: {width} columns cannot hold {n_labels} labels and any feature")
    table = _to_matrix(rows, width, path)
    names = [f"f{j}" for j in range(width - n_labels)]
    names = [f"label{j}" for j in range(n_labels)] + names if label_position == "first" else \
        names + [f"label{j}" for j in range(n_labels)]
    lab = np.zeros(width, bool)
    if label_position == "first":
        lab[:n_labels] = True
    elif label_position == "last":
        lab[-n_labels:] = True
    else:
        raise MultiLabelDataError(f"label_position must be 'first' or 'last', got {label_position!r}")
    return _checked(table, lab, names, [i for i, _ in rows], path)


def _to_matrix(rows: list[tuple[int, list[str]]], width: int, path: Path) -> np.ndarray:
    out = np.empty((len(rows), width))
    for r, (i, cells) in enumerate(rows):
        if len(cells) != width:
            raise MultiLabelDataError(f"{path}:{i}: {len(cells)} values, expected {width}")
        for j, c in enumerate(cells):
            try:
                out[r, j] = float(c.strip().strip("'\""))
            except ValueError:
                raise MultiLabelDataError(f"{path}:{i}: column {j + 1} is {c.strip()!r}, not a number") from None
    return out


def _checked(table: np.ndarray, is_label: np.ndarray, names: list[str], lines: list[int], path) -> MultiLabelData:
    """Split columns into X and Y; a NaN/infinite value or a label other than 0/1 names its line."""
    bad = ~np.isfinite(table) | (is_label[None, :] & ~np.isin(table, (0.0, 1.0)))
    if bad.any():
        r, j = np.argwhere(bad)[0]
        what = "label" if is_label[j] else "feature"
        rule = "labels must be 0 or 1" if is_label[j] else "features must be finite numbers"
        raise MultiLabelDataError(f"{path}:{lines[r]}: {what} {names[j]!r} is {table[r, j]:g} ({rule}; "
                                  f"{int(bad.sum())} bad values in all)")
    X, Y = table[:, ~is_label], table[:, is_label]
    check_multilabel(X, Y, source=str(path))
    return MultiLabelData(X, Y.astype(np.int8), [n for n, b in zip(names, is_label) if not b],
                          [n for n, b in zip(names, is_label) if b])


def check_multilabel(X: np.ndarray, Y: Optional[np.ndarray] = None, source: str = "input") -> None:
    """Shapes agree, and no NaN or infinite value (the first one found is named)."""
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise MultiLabelDataError(f"{source}: X must be a non-empty 2-D array, got shape {X.shape}")
    bad = np.argwhere(~np.isfinite(X))
    if len(bad):
        r, j = bad[0]
        raise MultiLabelDataError(f"{source}: X[{r}, {j}] is {X[r, j]} ({len(bad)} non-finite values in all)")
    if Y is not None:
        if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
            raise MultiLabelDataError(f"{source}: Y has shape {Y.shape}, expected ({X.shape[0]}, c)")
        if not np.isin(Y, (0, 1)).all():
            raise MultiLabelDataError(f"{source}: Y must hold only 0 and 1")


def semi_supervised_split(n: int, labelled_ratio: float, test_ratio: float = 0.3, seed: int = 0,
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``(labelled, unlabelled, test)``: ``test_ratio`` of the rows held out, and
    ``labelled_ratio`` of the remaining (training) rows keep their labels."""
    if not 0 < labelled_ratio <= 1:
        raise ValueError(f"labelled_ratio must be in (0, 1], got {labelled_ratio}")
    if not 0 < test_ratio < 1:
        raise ValueError(f"test_ratio must be in (0, 1), got {test_ratio}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_ratio))
    test, train = perm[:n_test], perm[n_test:]
    n_lab = max(1, int(round(len(train) * labelled_ratio)))
    return np.sort(train[:n_lab]), np.sort(train[n_lab:]), np.sort(test)
