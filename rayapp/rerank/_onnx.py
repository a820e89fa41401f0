"""The cross-encoder on ONNX Runtime: exported once per trained folder (cached under
:func:`~rayapp.models.model_cache_dir` by its weights' identities and fused as the embedder's
export is), tokenised with the folder's Rust tokenizer. A Reranker replica on it imports neither
torch nor transformers. Scores agree with :class:`~rayapp.rerank.CrossEncoder` to float rounding."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from rayapp._internal.artifacts import read_manifest, staging_dir, write_json_atomic
from rayapp.models._onnx import UnsupportedForOnnx, _export_bert, _weights_digest

log = logging.getLogger(__name__)

__all__ = ["OnnxCrossEncoder", "export_cross_onnx"]


def export_cross_onnx(folder: Path, out_root: Path) -> Path:
    """Export the sequence-classification model in ``folder`` (one logit) once; returns ``model.onnx``."""
    folder = Path(folder).resolve()
    final = Path(out_root) / f"onnx-cross-{folder.name}-{_weights_digest(folder)[:12]}"
    if read_manifest(final) is not None:
        return final / "model.onnx"
    import torch

    from rayapp.rerank import CrossEncoder

    cross = CrossEncoder.from_pretrained(folder)
    hf = cross.model
    if hasattr(hf, "set_attn_implementation"):
        hf.set_attn_implementation("eager")  # the eager graph is the one ORT fuses into Attention ops
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in cross.tokenizer.model_input_names]
    sample = cross.tokenize(["a question", "another, longer question"], ["a passage", "a second passage here"])

    class _Logit(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, *inputs):
            return self.m(**dict(zip(names, inputs))).logits[:, 0]

    log.info("exporting the cross-encoder %s to ONNX under %s (once)", folder, final)
    with staging_dir(final) as tmp:
        fusions = _export_bert(_Logit(hf), tuple(sample[n] for n in names), names, "logit", {0: "batch"}, hf.config, tmp)
        write_json_atomic(tmp / "manifest.json", {"kind": "onnx-cross", "source": str(folder), "inputs": names,
                                                  "fusions": fusions})
    return final / "model.onnx"


class OnnxCrossEncoder:
    """``score_pairs(queries, passages)`` as :meth:`rayapp.rerank.CrossEncoder.score_pairs` gives it:
    pairs cut to ``max_length`` tokens longest side first, length-sorted batches."""

    def __init__(self, path: str | Path, max_length: int = 256, threads: int = 1):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from rayapp.models import model_cache_dir

        folder = Path(path)
        if not (folder / "tokenizer.json").is_file():
            raise UnsupportedForOnnx(f"rerank backend 'onnx' needs the folder's tokenizer.json ({folder})")
        model = export_cross_onnx(folder, model_cache_dir())
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
        self.tokenizer.no_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def score(self, query: str, passages: Sequence[str], batch_size: int = 32) -> np.ndarray:
        return self.score_pairs([query] * len(passages), passages, batch_size)

    def score_pairs(self, queries: Sequence[str], passages: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if len(queries) != len(passages):
            raise ValueError(f"score_pairs: {len(queries)} queries but {len(passages)} passages")
        encs = self.tokenizer.encode_batch(list(zip(queries, passages)))
        out = np.zeros(len(encs), dtype=np.float32)
        order = sorted(range(len(encs)), key=lambda i: len(encs[i].ids))
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            width = max(len(encs[i].ids) for i in idx)
            feed = {n: np.zeros((len(idx), width), dtype=np.int64) for n in self.inputs}
            for row, i in enumerate(idx):
                e, n = encs[i], len(encs[i].ids)
                feed["input_ids"][row, :n] = e.ids
                feed["attention_mask"][row, :n] = e.attention_mask
                if "token_type_ids" in feed:
                    feed["token_type_ids"][row, :n] = e.type_ids
            out[idx] = self.session.run(None, feed)[0]
        return out
