"""Embedding passages with a Ray Data actor pool.

Each actor loads the sentence-transformers model once and encodes batches; vectors are
L2-normalised float32. The pool's actors take ``num_cpus_per_actor`` CPUs each; leave at least one
CPU for Ray Data's read tasks (a pool that takes every CPU deadlocks without an error).
"""

from __future__ import annotations

import math

import numpy as np
import ray

from rayapp.config import EmbedConfig

__all__ = ["PassageEncoder", "embed_texts"]


class PassageEncoder:
    """Ray Data ``map_batches`` callable: ``{"row", "text"}`` -> ``{"row", "embedding"}``."""

    def __init__(self, cfg: EmbedConfig):
        self.batch_size = cfg.batch_size
        if cfg.backend == "onnx":  # imports neither torch nor transformers unless it must export
            from rayapp.models._onnx import OnnxEncoder

            self.onnx = OnnxEncoder(cfg.model, cfg.max_seq_length, cfg.torch_threads)
        else:
            import torch

            from rayapp.models import load_sentence_transformer

            torch.set_num_threads(cfg.torch_threads)
            self.onnx, self.model = None, load_sentence_transformer(cfg.model, cfg.max_seq_length)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = list(batch["text"])
        if self.onnx is not None:
            vecs = self.onnx.encode(texts, self.batch_size)
        else:
            vecs = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        return {"row": batch["row"], "embedding": vecs.astype(np.float32)}


def embed_texts(texts: list[str], cfg: EmbedConfig) -> np.ndarray:
    """Embed ``texts`` on the Ray cluster; row i of the result is ``texts[i]``'s vector."""
    if not texts:
        raise ValueError("embed_texts: no texts to embed")
    # About four batches per block: one block per row would cost a task per row.
    n_blocks = max(1, math.ceil(len(texts) / (4 * cfg.batch_size)))
    # Length-sorted rows, so that each batch pads to similar lengths (rows keep their index).
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    ds = ray.data.from_items([{"row": i, "text": texts[i]} for i in order], override_num_blocks=n_blocks)
    out = ds.map_batches(
        PassageEncoder,
        fn_constructor_kwargs={"cfg": cfg},
        batch_size=cfg.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=cfg.actors),
        num_cpus=cfg.num_cpus_per_actor,
        runtime_env={"env_vars": dict(cfg.worker_env)} if cfg.worker_env else None,
    )
    dim = None
    result: np.ndarray | None = None
    for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
        if result is None:
            dim = batch["embedding"].shape[1]
            result = np.zeros((len(texts), dim), dtype=np.float32)
        result[batch["row"]] = batch["embedding"]
    assert result is not None
    return result
