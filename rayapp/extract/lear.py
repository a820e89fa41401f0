"""LEAR's rollout scoring: one extractor output and its three masked answers -> the rewards."""

from __future__ import annotations

import re
from typing import Any, Optional

from rayapp.extract.prompts import masked_answer_prompts
from rayapp.extract.rewards import answer_reward, format_reward, lear_reward, length_reward
from rayapp.extract.tags import parse_tags

__all__ = ["ANSWER_PREFIX", "ANSWER_STOP", "EXTRACT_PREFIX", "EXTRACT_STOP", "REASON_STOP", "EXTRACT_OPEN", "SCAFFOLD_TAGS", "answer_text", "read_extractor_output", "lear_answer_prompts",
           "score_lear"]

#: The assistant's turn opens with the first tag (part of the output; small models follow the
#: format far more often when it is started for them) and generation stops at the closing tag.
EXTRACT_PREFIX, EXTRACT_STOP = "<reason>", "</extract>"
REASON_STOP, EXTRACT_OPEN = "</reason>", "<extract>"  # the scaffold's bridge (TrainLearConfig.scaffold)
#: The tag arguments of ``RolloutWorker.generate_scaffolded`` for LEAR's format: prefix, first stop,
#: bridge when the model closed the rationale, bridge when it did not, second stop.
SCAFFOLD_TAGS = (EXTRACT_PREFIX, REASON_STOP, EXTRACT_OPEN, REASON_STOP + EXTRACT_OPEN, EXTRACT_STOP)
ANSWER_PREFIX, ANSWER_STOP = "<answer>", "</answer>"


def answer_text(output: str) -> str:
    """The ``<answer>`` content, or the whole output when the tag is missing."""
    got = parse_tags(output, ["answer"]).get("answer")
    return got or output.replace("<answer>", " ").replace(ANSWER_STOP, " ").strip()


def read_extractor_output(text: str) -> tuple[str, str, bool]:
    """(rationale, evidence, well_formed). The contents are read leniently: the rationale runs from
    ``<reason>`` to ``</reason>``, ``<extract>`` or the end, the evidence from ``<extract>`` to
    ``</extract>`` or the end (an output cut by the token limit still says something); whether the
    tags are well formed is judged strictly, and only R_fmt depends on it."""
    p = parse_tags(text, ["reason", "extract"])
    rationale, evidence = p.get("reason"), p.get("extract")
    if not rationale and "<reason>" in text:
        rationale = re.split(r"</reason>|<extract>", text.split("<reason>", 1)[1])[0].strip()
    if not evidence and "<extract>" in text:
        evidence = text.split("<extract>", 1)[1].split("</extract>")[0].strip()
    return rationale, evidence, p.well_formed


def lear_answer_prompts(question: str, passages: list[str], extractor_output: str,
                        answer_format: Optional[str] = None) -> dict[str, list[dict]]:
    """The answer prompts o_r, o_e, o_f built from what the extractor wrote (hard masks)."""
    rationale, evidence, _ = read_extractor_output(extractor_output)
    return masked_answer_prompts(question, passages, rationale, evidence, answer_format)


def score_lear(extractor_output: str, answers: dict[str, str], golds: list[str], passages: list[str],
               tau: float = 1.0, gamma: float = 0.5, omega: float = 0.9, w_ans: float = 0.8, w_len: float = 0.1,
               w_fmt: float = 0.1, tags_forced: bool = False) -> dict[str, Any]:
    """All of LEAR's rewards for one rollout (``answers``: the raw outputs under masks r, e, f).
    ``tags_forced``: a scaffold inserted a closing tag the model did not write, so R_fmt is 0."""
    rationale, evidence, well_formed = read_extractor_output(extractor_output)
    l_r, l_e = len(rationale.split()), len(evidence.split())
    l_p = sum(len(x.split()) for x in passages)
    o = {k: answer_text(v) for k, v in answers.items()}
    r_ans = answer_reward(golds[0], o["r"], o["e"], o["f"], golds=golds)
    r_len = length_reward(l_r, l_e, l_p, tau=tau, omega=omega, gamma=gamma)
    r_fmt = 0.0 if tags_forced else format_reward(extractor_output, answers["r"], answers["e"], answers["f"])
    return {"reward": lear_reward(r_ans, r_len, r_fmt, w_ans, w_len, w_fmt), "answer": r_ans, "length": r_len,
            "format": r_fmt, "extract_well_formed": float(well_formed), "l_r": l_r, "l_e": l_e, "l_p": l_p,
            "compression": l_p / l_e if l_e else None, "answer_f": o["f"]}
