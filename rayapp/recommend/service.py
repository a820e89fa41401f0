"""Serving a trained recommender: top-k items for a history (or a known user), and online appends
to RaSeRec's memory bank (visible to the next request, no retraining)."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np

__all__ = ["RecommendRequestError", "RecommenderService"]

log = logging.getLogger(__name__)


class RecommendRequestError(ValueError):
    """A bad request (unknown items or user, empty or over-long history); ``field`` names the part."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class RecommenderService:
    """Loads ``model_dir`` (written by :func:`~rayapp.recommend.train.train_rec`): SASRec from
    ``stage1.pt``, and RaSeRec's module from ``stage2.pt`` when present, with a memory bank over
    every known user's prefixes. The bank comes ready-built from the folder's serving files
    (:func:`~rayapp.recommend._serving.prepare_serving`, run at training time or by the first
    service). ``backend="onnx"`` runs both models from their ONNX exports there, without torch.

    With ``append_log`` (a JSON-lines file, one ``{"user", "items"}`` per append), every append is
    written there first and applied from there: the service replays the log when it starts and
    reads lines other services added before each request. Services that share the file (Serve
    replicas) thus apply the same appends in the same order, and a restarted one loses none. Lines
    that cannot be applied (not JSON, unknown items) are skipped and counted in ``log_skipped``."""

    def __init__(self, model_dir: str | Path, max_history: int = 200, append_log: Optional[str | Path] = None,
                 backend: str = "torch"):
        from rayapp.recommend._serving import OnnxEngine, TorchEngine, prepare_serving, read_trained
        from rayapp.recommend.memory import MemoryBank

        if backend not in ("torch", "onnx"):
            raise ValueError(f"recommender.backend: 'torch' or 'onnx', not {backend!r}")
        d = Path(model_dir)
        self.cfg, self.item_ids, hist = read_trained(d)
        self.index = {x: i for i, x in enumerate(self.item_ids) if i}
        self.users = {u: k for k, u in enumerate(hist)}
        self.histories = [[self.index[i] for i in items] for items in hist.values()]
        served = prepare_serving(d)  # built once per trained folder, then only loaded
        self.backend = backend
        self.engine = (OnnxEngine(served, self.cfg.torch_threads) if backend == "onnx"
                       else TorchEngine(d.resolve(), self.cfg, len(self.item_ids) - 1))
        self.bank = MemoryBank.load(served) if (served / "bank.faiss").is_file() else None
        self.max_history = max_history
        self._lock = threading.Lock()
        self.append_log = Path(append_log) if append_log is not None else None
        self._log_pos, self.log_skipped = 0, 0
        if self.append_log is not None:
            self.append_log.parent.mkdir(parents=True, exist_ok=True)
            self.append_log.touch()
            with self._lock:
                self._read_log()

    def _ids(self, items: list[str], field: str) -> list[int]:
        if not items:
            raise RecommendRequestError(field, f"{field}: must not be empty")
        if len(items) > self.max_history:
            raise RecommendRequestError(field, f"{field}: at most {self.max_history} items (got {len(items)})")
        unknown = [x for x in items if x not in self.index]
        if unknown:
            raise RecommendRequestError(field, f"{field}: unknown item ids {unknown[:5]}"
                                        + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
        return [self.index[x] for x in items]

    def recommend(self, items: Optional[list[str]] = None, user: Optional[str] = None, k: int = 10,
                  exclude_seen: bool = True) -> dict[str, Any]:
        """Top ``k`` items (ids, scores) after ``items`` (or ``user``'s known history)."""
        from rayapp.recommend.data import pad_right
        from rayapp.recommend.memory import fuse

        if items is None and user is None:
            raise RecommendRequestError("items", "items: give the recent item ids, or a known user")
        with self._lock:
            self._read_log()  # other replicas' appends first
        if items is None:
            if user not in self.users:
                raise RecommendRequestError("user", f"user: unknown user {user!r}")
            seq = self.histories[self.users[user]]
        else:
            seq = self._ids(items, "items")
        ids, lens = pad_right([seq], self.cfg.model.max_len)
        with self._lock:
            h = self.engine.encode(ids, lens)
            mode = "sasrec"
            if self.bank is not None:
                s2 = self.cfg.stage2
                u = np.array([self.users.get(user, -1) if user is not None else -1])
                mem_seq, mem_tgt = self.bank.search(h, u, np.array([len(seq)]), s2.k, s2.candidates)
                h = fuse(h, *self.engine.augment(h, mem_seq, mem_tgt), s2.alpha, s2.beta)
                mode = "raserec"
            scores = (h @ self.engine.item_emb.T)[0].astype(np.float64)
        scores[0] = -np.inf
        if exclude_seen:
            scores[seq] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        return {"items": [{"item": self.item_ids[i], "score": float(scores[i])} for i in top], "mode": mode,
                "history_length": len(seq), "memories": len(self.bank) if self.bank is not None else 0}

    def append(self, user: str, items: list[str]) -> dict[str, Any]:
        """Add ``items`` to ``user``'s history (a new user is created) and, with RaSeRec, one memory
        per new (prefix, next item) to the bank: the next request retrieves them. With an append
        log, the line is written (and flushed to disk) before it is applied."""
        import fcntl
        import os

        new = self._ids(items, "items")
        with self._lock:
            if self.append_log is None:
                return self._apply(user, new)
            line = (json.dumps({"user": user, "items": items}) + "\n").encode("utf-8")
            with open(self.append_log, "a+b") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    mine = f.seek(0, os.SEEK_END)
                    if mine and os.pread(f.fileno(), 1, mine - 1) != b"\n":
                        f.write(b"\n")  # end a line torn by a writer that died mid-write
                        mine += 1
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
            return self._read_log()[mine]

    def _read_log(self) -> dict[int, dict[str, Any]]:
        """Apply the log's complete lines past the last one read; each result by its line's offset.
        The caller holds ``self._lock``."""
        if self.append_log is None or self.append_log.stat().st_size <= self._log_pos:
            return {}
        with open(self.append_log, "rb") as f:
            f.seek(self._log_pos)
            chunk = f.read()
        chunk = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next read
        out, pos = {}, self._log_pos
        for raw in chunk.splitlines(keepends=True):
            try:
                rec = json.loads(raw)
                out[pos] = self._apply(str(rec["user"]), self._ids(list(rec["items"]), "items"))
            except (ValueError, KeyError, TypeError, RecommendRequestError) as e:
                self.log_skipped += 1
                log.warning("append log %s: line at byte %d skipped: %s", self.append_log, pos, e)
            pos += len(raw)
        self._log_pos = pos
        return out

    def _apply(self, user: str, new: list[int]) -> dict[str, Any]:
        from rayapp.recommend.data import pad_right

        if user not in self.users:
            self.users[user] = len(self.histories)
            self.histories.append([])
        u = self.users[user]
        before = list(self.histories[u])
        self.histories[u].extend(new)
        added = 0
        if self.bank is not None:
            seq = self.histories[u]
            prefixes = [seq[:t] for t in range(max(1, len(before)), len(seq))]
            if prefixes:
                ids, lens = pad_right(prefixes, self.cfg.model.max_len)
                keys = self.engine.encode(ids, lens)
                values = self.engine.item_emb[[seq[len(p)] for p in prefixes]]
                self.bank.append(keys, values, np.full(len(prefixes), u), np.array([len(p) for p in prefixes]))
                added = len(prefixes)
        return {"user": user, "history_length": len(self.histories[u]), "memories_added": added,
                "memories": len(self.bank) if self.bank is not None else 0}
