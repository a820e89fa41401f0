"""An ONNX Runtime path for sentence-transformers embedders (mean pooling models such as MiniLM).

The transformer of a sentence-transformers folder is exported once to ONNX (cached under
:func:`model_cache_dir` by the folder's weights hash and the sequence length), then optimised with
ONNX Runtime's transformer fusions (attention, layer norm, GELU). Pooling and normalisation run in
numpy with the same rule as the folder's ``Pooling``/``Normalize`` modules, so the vectors agree
with ``SentenceTransformer.encode`` to float32 rounding (the tests check cosine >= 0.9999).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from rayapp._internal.artifacts import read_manifest, staging_dir, write_json_atomic
from rayapp._internal.hashing import stable_hash

log = logging.getLogger(__name__)

__all__ = ["OnnxEncoder", "TextEncoder", "load_text_encoder", "export_onnx", "export_genai", "UnsupportedForOnnx"]


class UnsupportedForOnnx(ValueError):
    """The sentence-transformers model is not a Transformer + mean Pooling (+ Normalize) stack."""


def _check_stack(folder: Path) -> bool:
    """True if the folder's model normalises its output; raises :class:`UnsupportedForOnnx` unless
    it is an encoder (not a decoder LM) under Transformer + mean Pooling (+ Normalize). Reads
    ``modules.json`` and ``config.json``, loads nothing."""
    import json
    from types import SimpleNamespace

    from rayapp.models._loading import _read_pooling, is_decoder_config

    try:
        mods = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        hf = json.loads((folder / mods[0].get("path", "") / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, IndexError) as e:
        raise UnsupportedForOnnx(f"embed.backend: 'onnx' needs a sentence-transformers folder with modules.json "
                                 f"and the transformer's config.json ({folder}: {e})") from e
    if is_decoder_config(SimpleNamespace(model_type=hf.get("model_type"), architectures=hf.get("architectures"))):
        raise UnsupportedForOnnx(f"embed.backend: 'onnx' supports encoder models; {folder} is a decoder "
                                 f"({hf.get('model_type')}): use backend: torch")
    kinds = [m["type"].rsplit(".", 1)[-1] for m in mods]
    mode = _read_pooling(folder, mods[1]["path"]) if len(mods) > 1 else None
    ok = (len(mods) in (2, 3) and kinds[:2] == ["Transformer", "Pooling"] and mode == "mean"
          and (len(mods) == 2 or kinds[2] == "Normalize"))
    if not ok:
        raise UnsupportedForOnnx(
            "embed.backend: 'onnx' supports Transformer + mean Pooling (+ Normalize) models; this one is "
            f"{kinds} with pooling {mode!r} (use backend: torch)")
    return len(mods) == 3


def _weights_digest(folder: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin", ".json") and p.is_file())
    return stable_hash([(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files])


def export_onnx(folder: Path, max_seq_length: int, out_root: Path) -> Path:
    """Export the transformer of the sentence-transformers ``folder`` once; returns the optimised
    ``model.onnx`` (a cache hit loads nothing)."""
    final = Path(out_root) / f"onnx-{folder.name}-{_weights_digest(folder)[:12]}-L{max_seq_length}"
    if read_manifest(final) is not None:
        return final / "model.onnx"
    from rayapp.models._loading import load_sentence_transformer

    st = load_sentence_transformer(str(folder), max_seq_length)
    hf = st[0].auto_model.eval()
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in st.tokenizer.model_input_names]
    sample = st.tokenizer(["an example sentence", "a second, longer example sentence"], padding=True,
                          return_tensors="pt")
    args = tuple(sample[n] for n in names)

    log.info("exporting %s to ONNX under %s (once)", folder, final)
    with staging_dir(final) as tmp:
        fusions = _export_bert(hf, lambda out: out.last_hidden_state, args, names, "hidden",
                               {0: "batch", 1: "seq"}, tmp)
        write_json_atomic(tmp / "manifest.json", {"kind": "onnx", "source": str(folder), "inputs": names,
                                                  "max_seq_length": max_seq_length, "fusions": fusions})
    return final / "model.onnx"


def _export_bert(hf, pick, args: tuple, names: list[str], output: str, output_axes: dict[int, str],
                 tmp: Path) -> dict[str, int]:
    """Export the BERT-family Hugging Face model ``hf`` (its eager attention, the graph ONNX Runtime
    fuses into Attention ops), called with ``names`` as keywords and its output taken by ``pick``,
    to ``tmp/model.onnx`` with batch and sequence axes dynamic; then apply ONNX Runtime's
    transformer fusions. Returns the fused-operator counts."""
    import torch
    from onnxruntime.transformers.optimizer import optimize_model

    if hasattr(hf, "set_attn_implementation"):
        hf.set_attn_implementation("eager")

    class _Picked(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, *inputs):
            return pick(self.m(**dict(zip(names, inputs))))

    raw = tmp / "raw.onnx"
    torch.onnx.export(_Picked(hf), args, str(raw), input_names=names, output_names=[output],
                      dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names}, output: output_axes},
                      opset_version=17, dynamo=False)
    opt = optimize_model(str(raw), model_type="bert", num_heads=hf.config.num_attention_heads,
                         hidden_size=hf.config.hidden_size, opt_level=1)
    opt.save_model_to_file(str(tmp / "model.onnx"))
    raw.unlink()
    return opt.get_fused_operator_statistics()


def export_genai(folder: Path, precision: str, out_root: Path) -> Path:
    """Export the causal LM ``folder`` (a Hugging Face folder) once with onnxruntime-genai's model
    builder (``python -m onnxruntime_genai.models.builder``, run in a child process: it imports
    torch and transformers, the caller need not); returns the folder that ``og.Model`` loads. A cache
    hit loads nothing. ``precision``: ``fp32`` (the weights as they are) or ``int4`` (block-32
    MatMulNBits weights, int8 activations: about 3x faster decoding on CPU, answers differ)."""
    if precision not in ("fp32", "int4"):
        raise ValueError(f"generator.onnx_precision: 'fp32' or 'int4', not {precision!r}")
    final = Path(out_root) / f"genai-{folder.name}-{_weights_digest(folder)[:12]}-{precision}"
    if read_manifest(final) is not None:
        return final
    log.info("exporting %s to ONNX Runtime GenAI (%s) under %s (once)", folder.name, precision, final)
    with staging_dir(final) as tmp:
        cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(folder), "-o", str(tmp),
               "-p", precision, "-e", "cpu", "-c", str(tmp / "_builder_cache")]
        if precision == "int4":
            cmd += ["--extra_options", "int4_block_size=32", "int4_accuracy_level=4"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0 or not (tmp / "genai_config.json").is_file():
            tail = (run.stderr or run.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"generator.backend 'onnx': the model builder failed on {folder} "
                               f"(exit {run.returncode}): " + " | ".join(tail))
        shutil.rmtree(tmp / "_builder_cache", ignore_errors=True)
        write_json_atomic(tmp / "manifest.json", {"kind": "onnx-genai", "source": str(folder), "precision": precision})
    return final


class OnnxEncoder:
    """``encode(texts, batch_size)`` -> float32 vectors, as ``SentenceTransformer.encode`` gives them."""

    def __init__(self, name: str, max_seq_length: int, threads: int):
        import onnxruntime as ort

        from rayapp.models._loading import model_cache_dir, resolve_embedder

        folder = Path(resolve_embedder(name))
        if not folder.is_dir():
            raise UnsupportedForOnnx(f"embed.backend: 'onnx' needs a local model folder, not {name!r}")
        self.normalize = _check_stack(folder)
        self.max_len = max_seq_length
        path = export_onnx(folder, max_seq_length, model_cache_dir())
        self._fast = None
        if (folder / "tokenizer.json").is_file():  # the Rust tokenizer alone: no transformers import (~4 s)
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_file(str(folder / "tokenizer.json"))
            self._fast.enable_truncation(max_length=max_seq_length)
            self._fast.no_padding()
        else:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens per text as the model sees it (special tokens included, truncated)."""
        if self._fast is not None:
            return [len(e.ids) for e in self._fast.encode_batch(list(texts))]
        return [len(x) for x in self.tokenizer(list(texts), truncation=True, max_length=self.max_len)["input_ids"]]

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Batches of similar token length (sorted), each padded only to its own longest text."""
        if self._fast is not None:
            enc = fast_encodings(self._fast.encode_batch(list(texts)))
        else:
            enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_len)
        if not len(texts):
            raise ValueError("OnnxEncoder.encode: no texts")
        out = None
        for idx, feed in padded_batches(enc, self.inputs, batch_size):
            hidden = self.session.run(None, feed)[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            vec = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            if self.normalize:
                vec /= np.clip(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12, None)
            if out is None:
                out = np.zeros((len(texts), vec.shape[1]), dtype=np.float32)
            out[idx] = vec
        return out


def fast_encodings(encs) -> dict[str, list[list[int]]]:
    """The Rust tokenizer's encodings as the transformers tokenizer returns them (lists per input)."""
    return {"input_ids": [e.ids for e in encs], "attention_mask": [e.attention_mask for e in encs],
            "token_type_ids": [e.type_ids for e in encs]}


def padded_batches(enc: dict[str, list[list[int]]], names: list[str], batch_size: int):
    """``(rows, feed)`` batches of ``batch_size`` sequences, longest first, each right-padded with 0
    only to its own longest sequence; ``feed`` has one int64 array per input in ``names``."""
    lengths = np.array([len(ids) for ids in enc["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    for s in range(0, len(order), batch_size):
        idx = order[s: s + batch_size]
        feed = {name: np.zeros((len(idx), int(lengths[idx].max())), dtype=np.int64) for name in names}
        for name in names:
            for row, i in enumerate(idx):
                feed[name][row, : len(enc[name][i])] = enc[name][i]
        yield idx, feed


class TextEncoder:
    """A bi-encoder as a serving replica uses it: ``encode(texts)`` gives L2-normalised float32
    vectors, ``count_tokens(texts)`` the tokens per text, ``dim`` the width, ``backend`` which
    runtime runs it (``onnx`` or ``torch``). Made by :func:`load_text_encoder`."""

    def __init__(self, backend: str, encode, count_tokens, dim: int):
        self.backend, self._encode, self.count_tokens, self.dim = backend, encode, count_tokens, dim

    def encode(self, texts, batch_size: int = 64) -> np.ndarray:
        v = np.asarray(self._encode([texts] if isinstance(texts, str) else list(texts), batch_size), dtype=np.float32)
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return v[0] if isinstance(texts, str) else v


def load_text_encoder(name: str, max_seq_length: int, backend: str = "auto", threads: int = 1) -> TextEncoder:
    """The sentence-transformers model ``name`` on ``backend``: ``onnx`` (ONNX Runtime over the
    cached export; the process imports neither torch nor sentence-transformers), ``torch``
    (``SentenceTransformer.encode``), or ``auto``: onnx where the model is an encoder under
    Transformer + mean Pooling (+ Normalize), else torch."""
    if backend not in ("auto", "onnx", "torch"):
        raise ValueError(f"encoder backend: 'auto', 'onnx' or 'torch', not {backend!r}")
    if backend != "torch":
        try:
            onnx = OnnxEncoder(name, max_seq_length, threads=threads)
        except UnsupportedForOnnx as e:
            if backend == "onnx":
                raise
            log.info("encoder %s: torch (%s)", name, e)
        else:
            return TextEncoder("onnx", onnx.encode, onnx.count_tokens, int(onnx.encode(["dimension probe"]).shape[1]))
    from rayapp.models._loading import load_sentence_transformer

    st = load_sentence_transformer(name, max_seq_length)

    def count(texts: list[str]) -> list[int]:
        return [len(x) for x in st.tokenizer(list(texts), truncation=True, max_length=st.max_seq_length)["input_ids"]]

    return TextEncoder("torch", lambda texts, bs: st.encode(texts, batch_size=bs, convert_to_numpy=True), count,
                       int(st.get_sentence_embedding_dimension()))
