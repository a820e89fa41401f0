"""A trained extractor (SEER or LEAR folder) behind the same interface as the heuristics, and the
mapping of evidence back to the retrieved passages it came from (so citations keep pointing at
sources)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Optional

from rayapp.config import ExtractorConfig
from rayapp.extract.heuristic import Evidence, compression_ratio, register_extractor, split_sentences
from rayapp.extract.lear import read_extractor_output

__all__ = ["LMExtractor", "make_extractor", "evidence_hits"]


@register_extractor("lm")
class LMExtractor:
    """Greedy generation with a trained extractor; when it writes no evidence, the passages are kept
    (compression 1) and the rationale says so, so the answer never loses its context."""

    def __init__(self, model: str, max_tokens: int = 160, torch_threads: int = 1, scaffold: bool = False,
                 max_reason_tokens: int = 64):
        from rayapp.models import resolve_generator
        from rayapp.train.rollout import RolloutWorker

        self.sampler = RolloutWorker(resolve_generator(model), torch_threads)  # the training code path
        self.max_tokens, self.scaffold, self.max_reason_tokens = max_tokens, scaffold, max_reason_tokens

    def __call__(self, question: str, passages: list[str]) -> Evidence:
        from rayapp.extract.lear import EXTRACT_PREFIX, EXTRACT_STOP, SCAFFOLD_TAGS
        from rayapp.extract.prompts import extractor_prompt

        prompt = [extractor_prompt(question, passages)]
        if self.scaffold:
            out = self.sampler.generate_scaffolded(prompt, self.max_reason_tokens, self.max_tokens, 0.0, 1.0, None, 1,
                                                   *SCAFFOLD_TAGS)[0]
        else:
            out = self.sampler.generate(prompt, self.max_tokens, temperature=0.0, stop=[EXTRACT_STOP],
                                        prefix=EXTRACT_PREFIX)[0]
        rationale, evidence, _ = read_extractor_output(out["text"])
        if not evidence:
            text = "\n".join(passages)
            return Evidence(text, f"no evidence extracted; passages kept ({rationale[:200]})",
                            compression_ratio(passages, text))
        return Evidence(evidence, rationale, compression_ratio(passages, evidence))


def make_extractor(cfg: ExtractorConfig, encode=None):
    """The configured extractor (``None`` for ``method: none``); ``encode`` overrides the
    bi-encoder of ``top_sentences``."""
    from rayapp.extract.heuristic import EXTRACTORS

    if cfg.method == "none":
        return None
    if cfg.method == "lm":
        return EXTRACTORS["lm"](cfg.model, cfg.max_tokens, cfg.torch_threads, cfg.scaffold, cfg.max_reason_tokens)
    if cfg.method == "top_sentences":
        if encode is None:
            from rayapp.models._onnx import load_text_encoder

            encode = load_text_encoder(cfg.embedder, 256, cfg.embedder_backend, threads=cfg.torch_threads).encode
        return EXTRACTORS["top_sentences"](encode, cfg.k)
    return EXTRACTORS[cfg.method]()


def _words(text: str) -> Counter:
    return Counter(re.findall(r"\w+", text.lower()))


def evidence_hits(hits: list[dict[str, Any]], evidence: str) -> list[dict[str, Any]]:
    """The hits with their text replaced by the evidence sentences that came from them (each
    sentence goes to the hit sharing the most words with it); hits given no sentence are dropped.
    Order and ids are kept, so the generator's citations still name real passages."""
    sents = split_sentences(evidence)
    if not hits or not sents:
        return hits
    bags = [_words(h.get("text") or "") for h in hits]
    parts: dict[int, list[str]] = {}
    for s in sents:
        w = _words(s)
        best: Optional[int] = max(range(len(hits)), key=lambda i: (sum((w & bags[i]).values()), -i))
        parts.setdefault(best, []).append(s)
    return [{**h, "text": " ".join(parts[i])} for i, h in enumerate(hits) if i in parts]
