"""Benchmarks of the data stage (run by ``jobs/bench_embed.py`` and ``jobs/bench_stream.py``).

Each compares against its baseline in the same run and returns the figures as a dict.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import ray

from rayapp.config import EmbedConfig, StrictModel

__all__ = ["BenchEmbedConfig", "BenchStreamConfig", "bench_embedding", "bench_stream", "synthetic_docs"]


class BenchEmbedConfig(StrictModel):
    """Ray Data embedding vs ``SentenceTransformer.encode`` on the same model, texts and machine."""

    n_texts: int = 3000
    modules: list[str] = ["*"]
    baseline_batch_size: int = 64
    baseline_threads: int = 2
    embed: EmbedConfig = EmbedConfig(actors=2, num_cpus_per_actor=0.5, torch_threads=1, batch_size=64)
    num_cpus: int = 2
    results_dir: Path = Path("results/bench_embed")


def bench_embedding(cfg: BenchEmbedConfig, texts: list[str]) -> dict[str, Any]:
    """Seconds and texts/s of both paths, their ratio and the minimum cosine between their vectors."""
    import torch

    from rayapp.data.embed import embed_texts
    from rayapp.models import load_sentence_transformer

    torch.set_num_threads(cfg.baseline_threads)
    model = load_sentence_transformer(cfg.embed.model, cfg.embed.max_seq_length)
    model.encode(texts[:32])  # warm-up, as the actors warm up on their first batch
    t0 = time.perf_counter()
    base = model.encode(texts, batch_size=cfg.baseline_batch_size, normalize_embeddings=True, convert_to_numpy=True)
    base_s = time.perf_counter() - t0
    del model
    extra = {}
    if cfg.embed.backend != "torch":  # also the same pool on the torch backend, for reference
        t0 = time.perf_counter()
        torch_vecs = embed_texts(texts, cfg.embed.model_copy(update={"backend": "torch"}))
        torch_s = time.perf_counter() - t0
        extra = {"ray_data_torch_s": round(torch_s, 3), "ray_data_torch_speedup": round(base_s / torch_s, 3),
                 "ray_data_torch_min_cosine": float((base * torch_vecs).sum(axis=1).min())}
    t0 = time.perf_counter()
    ours = embed_texts(texts, cfg.embed)
    ours_s = time.perf_counter() - t0
    cos = (base * ours).sum(axis=1)
    return {
        "backend": cfg.embed.backend, **extra,
        "n_texts": len(texts),
        "sentence_transformers_s": round(base_s, 3),
        "ray_data_s": round(ours_s, 3),
        "sentence_transformers_texts_per_s": round(len(texts) / base_s, 2),
        "ray_data_texts_per_s": round(len(texts) / ours_s, 2),
        "speedup": round(base_s / ours_s, 3),
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
    }


class BenchStreamConfig(StrictModel):
    """Chunk + dedup of synthetic documents streamed through Ray Data with a capped object store."""

    n_docs: int = 1_000_000
    words_per_doc: int = 100
    dup_share: float = 0.05
    near_dup_share: float = 0.05
    object_store_bytes: int = 1 << 30
    num_cpus: int = 2
    block_docs: int = 5000
    max_tokens: int = 128
    num_perm: int = 32
    threshold: float = 0.8
    results_dir: Path = Path("results/bench_stream")


_VOCAB = [f"w{i}" for i in range(20000)]


def synthetic_docs(batch: dict[str, np.ndarray], words: int, dup: float, near: float) -> dict[str, Any]:
    """Documents ``i`` from seeded word draws. Doc ``i`` is an exact copy of doc ``i-1`` when
    ``hash(i) < dup``, a near copy (last word changed) when it falls in the next ``near`` share."""
    ids = batch["id"]
    texts, kinds = [], []
    for i in ids:
        u = (int(i) * 2654435761 % 2**32) / 2**32
        src = int(i) - 1 if u < dup + near and i > 0 else int(i)
        rng = np.random.default_rng(src)
        w = [_VOCAB[j] for j in rng.integers(0, len(_VOCAB), words)]
        if src != i and u >= dup:
            w[-1] = "changed"
        texts.append(" ".join(w) + ".")
        kinds.append("orig" if src == i else ("dup" if u < dup else "near"))
    return {"doc_id": np.array([f"d{int(i)}" for i in ids]), "text": np.array(texts), "kind": np.array(kinds)}


def _chunk_batch(batch: dict[str, np.ndarray], max_tokens: int) -> dict[str, Any]:
    """Passages of a batch of documents; ``order`` = doc index * 1024 + passage index."""
    from rayapp.data._text import chunk_spans, passage_text

    out = {"doc_id": [], "order": [], "text": [], "kind": []}
    for d, t, k in zip(batch["doc_id"], batch["text"], batch["kind"]):
        for j, (s, e, _) in enumerate(chunk_spans(t, max_tokens)):
            out["doc_id"].append(d)
            out["order"].append(int(d[1:]) * 1024 + j)
            out["text"].append(passage_text(t, s, e))
            out["kind"].append(k)
    return {k: np.array(v) for k, v in out.items()}


def _kind_counts(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    kinds, n = np.unique(batch["kind"], return_counts=True)
    return {"kind": kinds, "n": n}


def _drop_rows(batch: dict[str, np.ndarray], dropped: np.ndarray) -> dict[str, np.ndarray]:
    keep = ~np.isin(batch["order"], dropped)
    return {k: v[keep] for k, v in batch.items()}


def _sum_counts(ds) -> dict[str, int]:
    out = {"dup": 0, "near": 0, "orig": 0}
    for b in ds.map_batches(_kind_counts, batch_format="numpy").iter_batches(batch_size=None, batch_format="numpy"):
        for k, n in zip(b["kind"], b["n"]):
            out[str(k)] += int(n)
    return out


class _PeakPSS:
    """Samples the memory (PSS) of this process and the sum over every Ray worker process on the node."""

    def __init__(self, interval: float = 1.0):
        self.interval, self.driver, self.workers, self.one_worker = interval, 0, 0, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _pss(pid: int) -> int:
        """Proportional set size: shared pages (the object store's mapped memory) are split among
        the processes that map them, so summing over workers does not count them many times."""
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            self.driver = max(self.driver, self._pss(me))
            total = 0
            for pid in os.listdir("/proc"):
                if pid.isdigit() and int(pid) != me:
                    try:
                        cmd = open(f"/proc/{pid}/cmdline", "rb").read()
                    except OSError:
                        continue
                    if b"ray::" in cmd or b"default_worker.py" in cmd:
                        one = self._pss(int(pid))
                        total += one
                        self.one_worker = max(self.one_worker, one)
            self.workers = max(self.workers, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def bench_stream(cfg: BenchStreamConfig, out_dir: Optional[Path] = None) -> dict[str, Any]:
    """Stream ``n_docs`` synthetic documents through the corpus stages: generate + chunk + MinHash
    (Ray Data tasks, materialised into the capped object store, which spills to disk) -> the
    library's duplicate finder (a Ray task shuffle of LSH keys; the driver gets only the dropped
    rows' ids) -> kept passages written to parquet. Baseline in the same run: the same per-row work
    and rule (:class:`SerialDeduper`) in one plain Python process on a 1% sample, scaled."""
    import tempfile

    from rayapp.config import DedupConfig
    from rayapp.data._dedup import SerialDeduper, add_signatures, find_duplicates

    dcfg = DedupConfig(num_perm=cfg.num_perm, threshold=cfg.threshold)
    gen = {"words": cfg.words_per_doc, "dup": cfg.dup_share, "near": cfg.near_dup_share}

    n_base = max(1000, cfg.n_docs // 100)
    t0 = time.perf_counter()
    batch = add_signatures(_chunk_batch(synthetic_docs({"id": np.arange(n_base)}, **gen), cfg.max_tokens), dcfg)
    serial = SerialDeduper(dcfg)
    for i in range(len(batch["doc_id"])):
        serial.check(batch["doc_id"][i], batch["text_hash"][i], batch["bands"][i])
    base_rate = n_base / (time.perf_counter() - t0)
    del serial, batch

    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="rayapp-bench-stream-"))
    t0 = time.perf_counter()
    with _PeakPSS() as rss:
        ds = ray.data.range(cfg.n_docs, override_num_blocks=max(1, cfg.n_docs // cfg.block_docs))
        ds = ds.map_batches(synthetic_docs, fn_kwargs=gen, batch_size=cfg.block_docs)
        ds = ds.map_batches(_chunk_batch, fn_kwargs={"max_tokens": cfg.max_tokens}, batch_size=cfg.block_docs)
        passages = ds.map_batches(add_signatures, fn_kwargs={"cfg": dcfg}, batch_size=cfg.block_docs,
                                  batch_format="numpy").materialize()
        t_sign = time.perf_counter() - t0
        dups = find_duplicates(passages, dcfg)
        t_dedup = time.perf_counter() - t0 - t_sign
        dropped = np.sort(np.fromiter(dups, dtype=np.int64, count=len(dups)))
        del dups
        kept_ds = passages.map_batches(_drop_rows, fn_kwargs={"dropped": dropped}, batch_format="numpy")
        kept_ds.drop_columns(["bands"]).write_parquet(str(out_dir / "passages"))
        planted = _sum_counts(passages)
        kept = _sum_counts(ray.data.read_parquet(str(out_dir / "passages"), columns=["kind"]))
    secs = time.perf_counter() - t0
    found = {k: planted[k] - kept[k] for k in planted}
    rate = cfg.n_docs / secs
    return {
        "n_docs": cfg.n_docs, "n_passages": sum(planted.values()), "kept": sum(kept.values()),
        "seconds": round(secs, 1), "sign_seconds": round(t_sign, 1), "dedup_seconds": round(t_dedup, 1),
        "docs_per_s": round(rate, 1), "baseline_docs_per_s": round(base_rate, 1),
        "speedup_vs_single_process": round(rate / base_rate, 3),
        "peak_pss_driver_mb": round(rss.driver / 2**20, 1), "peak_pss_workers_mb": round(rss.workers / 2**20, 1),
        "peak_pss_one_worker_mb": round(rss.one_worker / 2**20, 1),
        "planted": planted, "removed": found,
        "dup_recall": round(found["dup"] / max(1, planted["dup"]), 4),
        "near_dup_recall": round(found["near"] / max(1, planted["near"]), 4),
        "false_removals": found["orig"], "output": str(out_dir / "passages"),
        "object_store_bytes": cfg.object_store_bytes,
    }
