"""Interaction data for sequential recommendation: one item sequence per user, in time order.

Readers: one-user-per-line sequence files (``user item item ...``, S3-Rec / RaSeRec format) and
RecBole atomic ``.inter`` files (``user_id:token item_id:token ... timestamp:float``). Items are
re-indexed 1..n (0 is padding). Split: time-ordered leave-one-out (the last item is the test
target, the one before it the validation target, the rest is training).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

__all__ = ["InteractionDataError", "SeqData", "read_sequence_file", "read_atomic_inter", "k_core", "build_seqdata",
           "pad_right"]


class InteractionDataError(ValueError):
    """An interaction file is missing or has no usable row."""


@dataclass
class SeqData:
    """``seqs[u]``: user ``users[u]``'s items as indices 1..n_items; ``item_ids[i]`` is the original id
    of index i (``item_ids[0]`` is padding)."""

    users: list[str]
    seqs: list[list[int]]
    item_ids: list[str]
    bad: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    def index_of(self) -> dict[str, int]:
        return {x: i for i, x in enumerate(self.item_ids) if i}

    def split(self, part: str) -> tuple[list[list[int]], np.ndarray]:
        """(histories, targets) of the leave-one-out split ``part``: ``valid`` predicts each user's
        second-to-last item from what precedes it, ``test`` the last from all before it. Users
        with fewer than 3 items have no such split and are left out."""
        cut = {"valid": 2, "test": 1}[part]
        keep = [s for s in self.seqs if len(s) >= 3]
        return [s[: len(s) - cut] for s in keep], np.array([s[len(s) - cut] for s in keep], dtype=np.int64)

    def train_seqs(self) -> list[list[int]]:
        """Each user's training part (all but the last two items)."""
        return [s[:-2] for s in self.seqs if len(s) >= 3]


def k_core(user_items: dict[str, list[str]], k: int = 5) -> dict[str, list[str]]:
    """Repeatedly drop users and items with fewer than ``k`` interactions until none is left."""
    cur = user_items
    while True:
        counts = Counter(i for items in cur.values() for i in items)
        nxt = {u: [i for i in items if counts[i] >= k] for u, items in cur.items()}
        nxt = {u: items for u, items in nxt.items() if len(items) >= k}
        if nxt == cur:
            return cur
        cur = nxt


def build_seqdata(user_items: dict[str, list[str]], bad: Optional[list] = None) -> SeqData:
    """Index items 1..n in order of first appearance (users in file order)."""
    index: dict[str, int] = {}
    item_ids = ["<pad>"]
    users, seqs = [], []
    for u, items in user_items.items():
        row = []
        for it in items:
            if it not in index:
                index[it] = len(item_ids)
                item_ids.append(it)
            row.append(index[it])
        users.append(u)
        seqs.append(row)
    if not seqs:
        raise InteractionDataError("no user with interactions left")
    return SeqData(users, seqs, item_ids, bad or [])


def read_sequence_file(path: Path, k: Optional[int] = None) -> SeqData:
    """``user item item ...`` per line (items in time order); ``k``: k-core filter first."""
    path = Path(path)
    if not path.is_file():
        raise InteractionDataError(f"interaction file not found: {path}")
    user_items, bad = {}, []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                bad.append({"line": n, "error": "a user with no item"})
                continue
            if parts[0] in user_items:
                bad.append({"line": n, "error": f"user {parts[0]!r} repeated"})
                continue
            user_items[parts[0]] = parts[1:]
    if not user_items:
        raise InteractionDataError(f"{path}: no usable line ({len(bad)} bad)")
    return build_seqdata(k_core(user_items, k) if k else user_items, bad)


def read_atomic_inter(path: Path, k: Optional[int] = 5) -> SeqData:
    """A RecBole atomic ``.inter`` file (tab-separated, typed header); items ordered by the
    ``timestamp`` column when there is one (ties keep file order)."""
    path = Path(path)
    if not path.is_file():
        raise InteractionDataError(f"interaction file not found: {path}")
    with open(path, encoding="utf-8") as f:
        header = [h.split(":")[0] for h in f.readline().rstrip("\n").split("\t")]
        if "user_id" not in header or "item_id" not in header:
            raise InteractionDataError(f"{path}: header needs user_id and item_id columns, got {header}")
        iu, ii = header.index("user_id"), header.index("item_id")
        it = header.index("timestamp") if "timestamp" in header else None
        rows, bad = {}, []
        for n, line in enumerate(f, 2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(header):
                bad.append({"line": n, "error": f"{len(parts)} fields, header has {len(header)}"})
                continue
            try:
                ts = float(parts[it]) if it is not None else float(n)
            except ValueError:
                bad.append({"line": n, "error": f"timestamp {parts[it]!r} is not a number"})
                continue
            rows.setdefault(parts[iu], []).append((ts, n, parts[ii]))
    user_items = {u: [i for _, _, i in sorted(v)] for u, v in rows.items()}
    if not user_items:
        raise InteractionDataError(f"{path}: no usable row ({len(bad)} bad)")
    return build_seqdata(k_core(user_items, k) if k else user_items, bad)


def pad_right(seqs: list[list[int]], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids [n, max_len] right-padded with 0, lengths): each sequence's last ``max_len`` items."""
    out = np.zeros((len(seqs), max_len), dtype=np.int64)
    lens = np.zeros(len(seqs), dtype=np.int64)
    for r, s in enumerate(seqs):
        s = s[-max_len:]
        out[r, : len(s)] = s
        lens[r] = len(s)
    return out, lens
