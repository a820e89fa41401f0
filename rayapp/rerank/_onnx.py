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
from rayapp.models._onnx import UnsupportedForOnnx, _export_bert, _weights_digest, fast_encodings, padded_batches

log = logging.getLogger(__name__)

__all__ = ["OnnxCrossEncoder", "export_cross_onnx"]


def export_cross_onnx(folder: Path, out_root: Path) -> Path:
    """Export the sequence-classification model in ``folder`` (one logit) once; returns ``model.onnx``."""
    folder = Path(folder).resolve()
    final = Path(out_root) / f"onnx-cross-{folder.name}-{_weights_digest(folder)[:12]}"
    if read_manifest(final) is not None:
        return final / "model.onnx"
    from rayapp.rerank import CrossEncoder

    cross = CrossEncoder.from_pretrained(folder)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in cross.tokenizer.model_input_names]
    sample = cross.tokenize(["a question", "another, longer question"], ["a passage", "a second passage here"])

    log.info("exporting the cross-encoder %s to ONNX under %s (once)", folder, final)
    with staging_dir(final) as tmp:
        fusions = _export_bert(cross.model, lambda out: out.logits[:, 0], tuple(sample[n] for n in names), names,
                               "logit", {0: "batch"}, tmp)
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
        enc = fast_encodings(self.tokenizer.encode_batch(list(zip(queries, passages))))
        out = np.zeros(len(passages), dtype=np.float32)
        for idx, feed in padded_batches(enc, self.inputs, batch_size):
            out[idx] = self.session.run(None, feed)[0]
        return out
