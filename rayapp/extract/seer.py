"""SEER's expert scoring (arXiv 2410.11315): three experts score evidence candidates, combined by
smoothed coefficient-of-variation weights."""

from __future__ import annotations

import numpy as np

__all__ = ["cv_weights", "combine_experts", "helpfulness", "dedup_candidates", "faithfulness", "answer_sentence",
           "conciseness", "preference_pairs"]


def cv_weights(scores: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """alpha = softmax(c / tau) with c_k = sigma_k / mu_k, the coefficient of variation of expert k's
    scores over the candidates (``scores``: [candidates, experts]); an expert that separates the
    candidates more gets more weight."""
    s = np.asarray(scores, dtype=np.float64)
    c = s.std(axis=0) / np.maximum(np.abs(s.mean(axis=0)), 1e-8)
    z = np.exp((c - c.max()) / tau)
    return z / z.sum()


def combine_experts(scores: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """s = sum_k alpha_k s_k per candidate."""
    return np.asarray(scores, dtype=np.float64) @ cv_weights(scores, tau)


def helpfulness(logp_with_evidence: float, logp_without: float) -> float:
    """s_h = sigmoid(log p(a | q + e) - log p(a | q)) under the generator."""
    return float(1 / (1 + np.exp(-(logp_with_evidence - logp_without))))


def dedup_candidates(candidates: list[str]) -> list[str]:
    """Drop candidates whose normalised word sequence was seen before (first kept, order kept)."""
    from rayapp.extract.rewards import normalize_answer

    seen, out = set(), []
    for c in candidates:
        key = normalize_answer(c)
        if key and key not in seen:
            seen.add(key)
            out.append(c)
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def faithfulness(evidences: list[str], passages: list[str], encode) -> np.ndarray:
    """Faithfulness expert (a documented proxy; no AlignScore model ships offline): the mean, over
    the evidence's sentences, of each sentence's best cosine similarity with a passage sentence
    under the bi-encoder ``encode`` (texts -> vectors). Like AlignScore's chunk-level
    max-alignment, a sentence copied or paraphrased from the passages scores near 1, an invented
    one low; empty evidence scores 0."""
    from rayapp.extract.heuristic import split_sentences

    src = [s for p in passages for s in split_sentences(p)] or passages
    src_v = _unit(np.asarray(encode(src), dtype=np.float64))
    out = np.zeros(len(evidences))
    for i, e in enumerate(evidences):
        sents = split_sentences(e)
        if sents:
            sims = _unit(np.asarray(encode(sents), dtype=np.float64)) @ src_v.T
            out[i] = float(np.clip(sims.max(axis=1), 0, 1).mean())
    return out


def answer_sentence(question: str, answer: str, reference: str = "") -> str:
    """A full-sentence form of the answer for the conciseness expert: the reference answer when it
    is a sentence (5+ words), else the question restated with the short answer."""
    if len(reference.split()) >= 5:
        return reference
    return f"{question.rstrip('?').strip()}: {answer}."


def conciseness(evidences: list[str], sentence: str, encode) -> np.ndarray:
    """Conciseness expert: cosine(evidence, full-sentence answer): evidence that says the answer
    and little else is closest to it; empty evidence scores 0."""
    v = _unit(np.asarray(encode([sentence] + [e or " " for e in evidences]), dtype=np.float64))
    sims = np.clip(v[1:] @ v[0], 0, 1)
    return np.where([bool(e.strip()) for e in evidences], sims, 0.0)


def preference_pairs(scores: np.ndarray, max_pairs: int) -> list[tuple[int, int, float]]:
    """(winner, loser, lambda) for candidates with combined scores ``scores``: every pair with
    s_w > s_l, weighted by SEER's lambda_wl = (s_w - s_l)(1/rank_w - 1/rank_l) (ranks 1-based by
    score), the ``max_pairs`` with the largest lambda."""
    import torch

    from rayapp.train.rl import lambda_weights

    s = np.asarray(scores, dtype=np.float64)
    rank = np.empty(len(s), dtype=np.int64)
    rank[np.argsort(-s, kind="stable")] = np.arange(1, len(s) + 1)
    idx = [(a, b) for a in range(len(s)) for b in range(len(s)) if s[a] > s[b]]
    if not idx:
        return []
    w, l = np.array([a for a, _ in idx]), np.array([b for _, b in idx])
    lam = lambda_weights(*(torch.from_numpy(x) for x in (s[w], s[l], rank[w], rank[l]))).tolist()
    pairs = list(zip(w.tolist(), l.tolist(), lam))
    return sorted(pairs, key=lambda p: -p[2])[:max_pairs]
