"""A trainable text embedder over any Hugging Face encoder or decoder (KaLM-Embedding style).

- Decoders (Llama, Qwen2, SmolLM2, ...) get **bidirectional attention** by default (KaLM V2): the
  config says ``is_causal = False`` (transformers then builds a padding-only mask) and every
  attention module's ``is_causal`` flag is cleared (transformers uses it when a batch has no padding).
- Pooling ``mean`` (default), ``cls`` or ``lasttoken`` (the last non-padding token), then L2 norm.
- Queries carry an instruction, ``"Instruct: {task} \\n Query: {query}"``; passages carry none.
- Saved as a sentence-transformers folder (Transformer + Pooling + Normalize, safetensors): the
  index, the server and sentence-transformers itself load it unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F

from rayapp.models._loading import _read_pooling, is_decoder_config

__all__ = ["Embedder", "format_query", "is_decoder_config", "set_bidirectional"]

Pooling = Literal["mean", "cls", "lasttoken"]


def format_query(query: str, instruction: str = "") -> str:
    """KaLM's query format; an empty instruction leaves the query as it is."""
    return f"Instruct: {instruction} \n Query: {query}" if instruction else query


def set_bidirectional(model: torch.nn.Module) -> int:
    """Remove the causal mask of a decoder in place; returns how many attention modules changed."""
    model.config.is_causal = False
    n = 0
    for m in model.modules():
        if getattr(m, "is_causal", None) is True:
            m.is_causal = False
            n += 1
    return n


class Embedder(torch.nn.Module):
    """``forward(input_ids, attention_mask)`` -> (B, d) unit vectors."""

    def __init__(self, backbone, tokenizer, pooling: Pooling = "mean", normalize: bool = True):
        super().__init__()
        if pooling not in ("mean", "cls", "lasttoken"):
            raise ValueError(f"pooling must be mean, cls or lasttoken, got {pooling!r}")
        self.backbone, self.tokenizer, self.pooling, self.normalize = backbone, tokenizer, pooling, normalize
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"

    @classmethod
    def from_pretrained(cls, path: str, pooling: Optional[Pooling] = None, bidirectional: Optional[bool] = None,
                        gradient_checkpointing: bool = False) -> "Embedder":
        """Load a Hugging Face model folder, or a sentence-transformers folder (its pooling is read
        from ``1_Pooling/config.json`` unless ``pooling`` is given). ``bidirectional`` defaults to
        True for decoders and is ignored for encoders."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        root = Path(path)
        saved = _read_pooling(root)
        config = AutoConfig.from_pretrained(path)
        decoder = is_decoder_config(config)
        backbone = AutoModel.from_pretrained(path, attn_implementation="sdpa")
        if decoder and (bidirectional if bidirectional is not None else True):
            set_bidirectional(backbone)
        if gradient_checkpointing:
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        tok = AutoTokenizer.from_pretrained(path)
        return cls(backbone, tok, pooling or saved or ("lasttoken" if decoder else "mean"))

    @property
    def dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    def tokenize(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.to(hidden.dtype)
        if self.pooling == "mean":
            vec = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1e-9)
        elif self.pooling == "cls":
            vec = hidden[:, 0]
        else:
            last = attention_mask.sum(1) - 1
            vec = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return F.normalize(vec, dim=-1) if self.normalize else vec

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 64, max_length: int = 256,
               dim: Optional[int] = None) -> np.ndarray:
        """Vectors of ``texts`` (length-sorted batches), optionally truncated to the first ``dim``
        coordinates and re-normalised (Matryoshka)."""
        was_training = self.training
        self.eval()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), dim or self.dim), dtype=np.float32)
        for s in range(0, len(texts), batch_size):
            idx = order[s : s + batch_size]
            enc = self.tokenize([texts[i] for i in idx], max_length)
            v = self(enc["input_ids"], enc["attention_mask"]).float()
            if dim is not None:
                v = F.normalize(v[:, :dim], dim=-1)
            out[idx] = v.numpy()
        self.train(was_training)
        return out

    def save(self, folder: Path) -> Path:
        """Write a sentence-transformers folder (safetensors) to ``folder``."""
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.models import Normalize
        from sentence_transformers.models import Pooling as STPooling
        from sentence_transformers.models import Transformer

        folder = Path(folder)
        hf_dir = folder / "_hf"
        self.backbone.save_pretrained(hf_dir, safe_serialization=True)
        # An embedder reads plain text: without this, sentence-transformers (>= 6) would wrap every
        # text in the tokenizer's chat template.
        self.tokenizer.chat_template = None
        self.tokenizer.save_pretrained(hf_dir)
        (hf_dir / "chat_template.jinja").unlink(missing_ok=True)
        modules = [Transformer(str(hf_dir)), STPooling(self.dim, pooling_mode=self.pooling)]
        if self.normalize:
            modules.append(Normalize())
        st = SentenceTransformer(modules=modules, device="cpu")
        st.save(str(folder))
        import shutil

        shutil.rmtree(hf_dir)
        return folder
