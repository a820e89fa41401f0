"""Generate stage: answers from retrieved passages, with citations mapped back to passage ids.

The prompt numbers the passages ``[1] ... [n]`` (within a word budget) and asks the model to cite
them; :func:`parse_citations` reads the ``[i]`` markers back and maps them to passage ids. Markers
that name no given passage are dropped, never invented.
"""

from __future__ import annotations

import re
import time
from typing import Any, Optional

from rayapp.config import GeneratorConfig
from rayapp.types import Hit

from rayapp.generate.engine import (BACKENDS, BackendUnavailableError, ChatMessage, Completion, HFBackend,
                                    OnnxBackend, Sampling, make_backend, register_backend)
from rayapp.generate.pica import Pica, PicaResult, TaskVectorStore

__all__ = ["build_messages", "parse_citations", "Generator", "ChatMessage", "Sampling", "Completion", "BACKENDS",
           "register_backend", "make_backend", "HFBackend", "OnnxBackend", "BackendUnavailableError", "Pica", "PicaResult",
           "TaskVectorStore"]

_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def build_messages(question: str, hits: list[Hit], cfg: GeneratorConfig) -> tuple[list[dict[str, str]], list[Hit]]:
    """Chat messages for ``question`` over ``hits``; returns the messages and the hits numbered in
    them (a prefix of ``hits`` that fits ``cfg.max_context_words``; at least one passage)."""
    used: list[Hit] = []
    blocks: list[str] = []
    words = 0
    for hit in hits:
        text = hit.text or ""
        n = len(text.split())
        if used and words + n > cfg.max_context_words:
            break
        used.append(hit)
        words += n
        blocks.append(f"[{len(used)}] {text}")
    context = "\n".join(blocks)
    user = f"Sources:\n{context}\n\nQuestion: {question}"
    return [{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": user}], used


def parse_citations(text: str, used: list[Hit]) -> list[str]:
    """Passage ids of the valid ``[i]`` / ``[i, j]`` markers in ``text``, first-cited first, unique."""
    out: list[str] = []
    for m in _MARKER.finditer(text):
        for num in m.group(1).split(","):
            i = int(num)
            if 1 <= i <= len(used) and used[i - 1].id not in out:
                out.append(used[i - 1].id)
    return out


class Generator:
    """A Hugging Face causal LM answering from passages (greedy decoding by default)."""

    def __init__(self, cfg: GeneratorConfig, tokenizer=None, model=None):
        import torch

        from rayapp.models import load_causal_lm

        torch.set_num_threads(cfg.torch_threads)
        self.cfg = cfg
        self.tokenizer, self.model = (tokenizer, model) if model is not None else load_causal_lm(cfg.model)

    def _first_citation(self, prompt_len: int, n_sources: int):
        """``prefix_allowed_tokens_fn``: at the first new position only the tokens of "1".."n"."""
        numbers = sorted({self.tokenizer.encode(str(i), add_special_tokens=False)[0] for i in range(1, n_sources + 1)})
        everything = list(range(len(self.tokenizer)))

        def allowed(_batch_id, ids):
            return numbers if ids.shape[-1] == prompt_len else everything

        return allowed

    def generate(self, question: str, hits: list[Hit], max_new_tokens: Optional[int] = None) -> dict[str, Any]:
        """``{"text", "citations", "cited_numbers", "n_prompt_tokens", "n_new_tokens", "seconds"}``."""
        import torch

        t0 = time.perf_counter()
        messages, used = build_messages(question, hits, self.cfg)
        prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        enc = self.tokenizer(prompt + self.cfg.answer_prefix, return_tensors="pt", add_special_tokens=False
                             ).to(self.model.device)
        extra = {}
        if self.cfg.constrain_first_citation and self.cfg.answer_prefix.endswith("["):
            extra["prefix_allowed_tokens_fn"] = self._first_citation(enc["input_ids"].shape[1], len(used))
        with torch.inference_mode():
            out = self.model.generate(
                **enc, **extra, max_new_tokens=max_new_tokens or self.cfg.max_new_tokens, do_sample=False,
                repetition_penalty=self.cfg.repetition_penalty,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        new = out[0, enc["input_ids"].shape[1]:]
        text = (self.cfg.answer_prefix + self.tokenizer.decode(new, skip_special_tokens=True)).strip()
        return {
            "text": text,
            "citations": parse_citations(text, used),
            "context_ids": [h.id for h in used],
            "n_prompt_tokens": int(enc["input_ids"].shape[1]),
            "n_new_tokens": int(new.shape[0]),
            "seconds": round(time.perf_counter() - t0, 6),
        }
