"""LEAR's rollout scoring: one extractor output and its three masked answers -> the rewards."""

from __future__ import annotations

from typing import Any

from rayapp.extract.prompts import masked_answer_prompts
from rayapp.extract.rewards import answer_reward, format_reward, lear_reward, length_reward
from rayapp.extract.tags import parse_tags

__all__ = ["ANSWER_STOP", "EXTRACT_STOP", "answer_text", "lear_answer_prompts", "score_lear"]

EXTRACT_STOP = "</extract>"
ANSWER_STOP = "</answer>"


def answer_text(output: str) -> str:
    """The ``<answer>`` content, or the whole output when the tag is missing."""
    got = parse_tags(output, ["answer"]).get("answer")
    return got or output.replace("<answer>", " ").replace(ANSWER_STOP, " ").strip()


def lear_answer_prompts(question: str, passages: list[str], extractor_output: str) -> dict[str, list[dict]]:
    """The answer prompts o_r, o_e, o_f built from what the extractor wrote (hard masks)."""
    p = parse_tags(extractor_output, ["reason", "extract"])
    return masked_answer_prompts(question, passages, p.get("reason"), p.get("extract"))


def score_lear(extractor_output: str, answers: dict[str, str], golds: list[str], passages: list[str],
               tau: float = 1.0, gamma: float = 0.5, omega: float = 0.9, w_ans: float = 0.8, w_len: float = 0.1,
               w_fmt: float = 0.1) -> dict[str, Any]:
    """All of LEAR's rewards for one rollout (``answers``: the raw outputs under masks r, e, f)."""
    p = parse_tags(extractor_output, ["reason", "extract"])
    l_r, l_e = len(p.get("reason").split()), len(p.get("extract").split())
    l_p = sum(len(x.split()) for x in passages)
    o = {k: answer_text(v) for k, v in answers.items()}
    r_ans = answer_reward(golds[0], o["r"], o["e"], o["f"], golds=golds)
    r_len = length_reward(l_r, l_e, l_p, tau=tau, omega=omega, gamma=gamma)
    r_fmt = format_reward(extractor_output, answers["r"], answers["e"], answers["f"])
    return {"reward": lear_reward(r_ans, r_len, r_fmt, w_ans, w_len, w_fmt), "answer": r_ans, "length": r_len,
            "format": r_fmt, "extract_well_formed": float(p.well_formed), "l_r": l_r, "l_e": l_e, "l_p": l_p,
            "compression": l_p / l_e if l_e else None, "answer_f": o["f"]}
