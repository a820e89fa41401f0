"""Serving a trained recommender: top-k items for a history (or a known user), and online appends
to RaSeRec's memory bank (visible to the next request, no retraining)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np

__all__ = ["RecommendRequestError", "RecommenderService"]


class RecommendRequestError(ValueError):
    """A bad request (unknown items or user, empty or over-long history); ``field`` names the part."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class RecommenderService:
    """Loads ``model_dir`` (written by :func:`~rayapp.recommend.train.train_rec`): SASRec from
    ``stage1.pt``, and RaSeRec's module from ``stage2.pt`` when present, with a memory bank over
    every known user's prefixes."""

    def __init__(self, model_dir: str | Path, max_history: int = 200):
        import torch

        from rayapp.recommend.config import TrainRecConfig
        from rayapp.recommend.raserec import RetrievalAugmentedModule
        from rayapp.recommend.sasrec import SASRec
        from rayapp.recommend.train import _memory_bank

        d = Path(model_dir)
        manifest = d / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"recommender.model_dir: {d} has no manifest.json (train it with rayapp train-rec)")
        self.cfg = TrainRecConfig(**json.loads(manifest.read_text(encoding="utf-8"))["config"])
        self.item_ids: list[str] = json.loads((d / "items.json").read_text(encoding="utf-8"))
        self.index = {x: i for i, x in enumerate(self.item_ids) if i}
        hist = json.loads((d / "histories.json").read_text(encoding="utf-8"))
        self.users = {u: k for k, u in enumerate(hist)}
        self.histories = [[self.index[i] for i in items] for items in hist.values()]
        m = self.cfg.model
        torch.set_num_threads(self.cfg.torch_threads)
        self.model = SASRec(len(self.item_ids) - 1, m.hidden, m.layers, m.heads, m.inner, m.dropout, m.max_len)
        self.model.load_state_dict(torch.load(d / "stage1.pt", weights_only=True))
        self.model.eval()
        self.ra, self.bank = None, None
        if (d / "stage2.pt").is_file() and self.cfg.stage2 is not None:
            self.ra = RetrievalAugmentedModule(m.hidden, m.heads, m.inner, m.dropout)
            self.ra.load_state_dict(torch.load(d / "stage2.pt", weights_only=True))
            self.ra.eval()
            self.bank = _memory_bank(self.model, self.histories, self.cfg)
        self.max_history = max_history
        self._lock = threading.Lock()

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
        import torch

        from rayapp.recommend.data import pad_right
        from rayapp.recommend.train import _augment

        if items is None and user is None:
            raise RecommendRequestError("items", "items: give the recent item ids, or a known user")
        if items is None:
            if user not in self.users:
                raise RecommendRequestError("user", f"user: unknown user {user!r}")
            seq = self.histories[self.users[user]]
        else:
            seq = self._ids(items, "items")
        ids, lens = pad_right([seq], self.cfg.model.max_len)
        with self._lock, torch.no_grad():
            h = self.model(torch.from_numpy(ids), torch.from_numpy(lens))
            mode = "sasrec"
            if self.ra is not None:
                u = np.array([self.users.get(user, -1) if user is not None else -1])
                h = _augment(self.ra, self.bank, h, u, np.array([len(seq)]), self.cfg.stage2)
                mode = "raserec"
            scores = self.model.scores(h)[0].numpy().astype(np.float64)
        scores[0] = -np.inf
        if exclude_seen:
            scores[seq] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        return {"items": [{"item": self.item_ids[i], "score": float(scores[i])} for i in top], "mode": mode,
                "history_length": len(seq), "memories": len(self.bank) if self.bank is not None else 0}

    def append(self, user: str, items: list[str]) -> dict[str, Any]:
        """Add ``items`` to ``user``'s history (a new user is created) and, with RaSeRec, one memory
        per new (prefix, next item) to the bank: the next request retrieves them."""
        import torch

        from rayapp.recommend.data import pad_right

        new = self._ids(items, "items")
        with self._lock:
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
                    with torch.no_grad():
                        keys = self.model(torch.from_numpy(ids), torch.from_numpy(lens)).numpy()
                    targets = [seq[len(p)] for p in prefixes]
                    values = self.model.item_emb.weight.detach()[targets].numpy()
                    self.bank.append(keys, values, np.full(len(prefixes), u), np.array([len(p) for p in prefixes]))
                    added = len(prefixes)
        return {"user": user, "history_length": len(self.histories[u]), "memories_added": added,
                "memories": len(self.bank) if self.bank is not None else 0}
