"""LEAR's verifiable rewards (arXiv 2507.15586), one function each, and a registry by name.

The extractor writes ``<reason>r</reason><extract>e</extract>``; three answers are then produced
under hard knowledge masks (:mod:`rayapp.extract.prompts`): ``o_r`` (evidence removed), ``o_e``
(passages and rationale removed) and ``o_f`` (everything). Lengths are word counts.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Callable, Optional
from rayapp._internal.registry import registrar

__all__ = ["REWARDS", "register_reward", "normalize_answer", "unigram_f1", "exact_match", "answer_reward",
           "rationale_length_reward", "evidence_length_reward", "length_reward", "format_reward", "lear_reward"]

REWARDS: dict[str, Callable[..., float]] = {}


register_reward = registrar(REWARDS, "reward")


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def unigram_f1(prediction: str, gold: str) -> float:
    """Unigram F1 of normalised tokens: F1 = 2PR / (P + R), P = overlap/|pred|, R = overlap/|gold|."""
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(p) & Counter(g)).values())
    if not p or not g or common == 0:
        return float(p == g)
    return 2 * common / (len(p) + len(g))


def exact_match(prediction: str, gold: str) -> float:
    """1 when the normalised prediction equals the normalised gold answer (SQuAD EM), else 0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


@register_reward("answer")
def answer_reward(gold: str, o_r: str, o_e: str, o_f: str, golds: Optional[list[str]] = None) -> float:
    """R_ans = mean over {o_r, o_e, o_f} of unigram F1(a, o_*) (best over gold aliases)."""
    answers = golds or [gold]
    return sum(max(unigram_f1(o, a) for a in answers) for o in (o_r, o_e, o_f)) / 3


@register_reward("rationale_length")
def rationale_length_reward(l_r: int, l_e: int, tau: float = 1.0) -> float:
    """R_len_r = sigmoid((L_r / L_e - 1) / tau) if L_r >= L_e else sigmoid((1 - L_e / L_r) / tau):
    a rationale longer than its evidence is rewarded (LEAR). L_r=30, L_e=20, tau=1 -> 0.6225."""
    if l_e <= 0 or l_r <= 0:
        return 0.0
    x = (l_r / l_e - 1) / tau if l_r >= l_e else (1 - l_e / l_r) / tau
    return 1 / (1 + math.exp(-x))


@register_reward("evidence_length")
def evidence_length_reward(l_e: int, l_p: int, omega: float = 0.9, gamma: float = 0.5) -> float:
    """R_len_e = 1 if 1 - L_e / L_P >= omega else (1 - L_e / L_P)^gamma (0 when the evidence is no
    shorter than the passages). L_e=140, L_P=700, gamma=0.5 -> 0.894."""
    if l_p <= 0:
        return 0.0
    saved = 1 - l_e / l_p
    if saved >= omega:
        return 1.0
    return saved ** gamma if saved > 0 else 0.0


@register_reward("length")
def length_reward(l_r: int, l_e: int, l_p: int, tau: float = 1.0, omega: float = 0.9, gamma: float = 0.5) -> float:
    """R_len = (R_len_r + R_len_e) / 2."""
    return (rationale_length_reward(l_r, l_e, tau) + evidence_length_reward(l_e, l_p, omega, gamma)) / 2


@register_reward("format")
def format_reward(extractor_output: str, o_r: str, o_e: str, o_f: str) -> float:
    """R_fmt = 1 when the extractor's ``<reason>`` and ``<extract>`` pairs and the ``<answer>`` pair
    of every answer are each well formed (exactly once, not nested), else 0."""
    from rayapp.extract.tags import parse_tags

    ok = parse_tags(extractor_output, ["reason", "extract"]).well_formed
    return float(ok and all(parse_tags(o, ["answer"]).well_formed for o in (o_r, o_e, o_f)))


@register_reward("lear")
def lear_reward(r_ans: float, r_len: float, r_fmt: float, w_ans: float = 0.8, w_len: float = 0.1,
                w_fmt: float = 0.1) -> float:
    """R = 0.8 R_ans + 0.1 R_len + 0.1 R_fmt (LEAR)."""
    return w_ans * r_ans + w_len * r_len + w_fmt * r_fmt
