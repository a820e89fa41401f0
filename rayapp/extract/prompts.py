"""LEAR's prompts, including the hard knowledge masks: the masked text is removed from the input
and the prompt rebuilt, never hidden behind a placeholder.

- extractor: M(q, P) -> ``<reason>r</reason><extract>e</extract>``
- o_r = M(q, P, r): evidence removed;  o_e = M(q, e): passages and rationale removed;
  o_f = M(q, P, r, e): everything. Each answer is asked for inside ``<answer>`` tags.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["extractor_prompt", "answer_prompt", "masked_answer_prompts"]

_EXTRACT = ("Read the passages and the question. First explain which facts matter inside <reason></reason>, "
            "then copy only the sentences needed to answer inside <extract></extract>.\n\n"
            "Example:\nPassages:\n[1] The Eiffel Tower is in Paris. It opened in 1889 after two years of work.\n"
            "Question: When did the Eiffel Tower open?\n"
            "<reason>Passage 1 gives the opening year; the place and the building time do not answer the "
            "question.</reason><extract>It opened in 1889.</extract>")
_ANSWER = "Answer the question in a few words inside <answer></answer>."


def _passages(passages: list[str]) -> str:
    return "\n".join(f"[{i + 1}] {p}" for i, p in enumerate(passages))


def extractor_prompt(question: str, passages: list[str]) -> list[dict[str, str]]:
    return [{"role": "system", "content": _EXTRACT},
            {"role": "user", "content": f"Passages:\n{_passages(passages)}\n\nQuestion: {question}"}]


def answer_prompt(question: str, passages: Optional[list[str]] = None, rationale: Optional[str] = None,
                  evidence: Optional[str] = None, answer_format: Optional[str] = None) -> list[dict[str, str]]:
    """M(q, ...): only the parts given appear in the prompt; ``answer_format`` (e.g. "yes, no or
    maybe") narrows the answer."""
    parts = []
    if passages:
        parts.append(f"Passages:\n{_passages(passages)}")
    if rationale:
        parts.append(f"Reasoning: {rationale}")
    if evidence:
        parts.append(f"Evidence: {evidence}")
    parts.append(f"Question: {question}")
    system = _ANSWER + (f" Answer with {answer_format}." if answer_format else "")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


def masked_answer_prompts(question: str, passages: list[str], rationale: str, evidence: str,
                          answer_format: Optional[str] = None) -> dict[str, list[dict]]:
    """The three answer prompts: ``r`` (evidence masked), ``e`` (passages and rationale masked), ``f``."""
    return {"r": answer_prompt(question, passages, rationale, None, answer_format),
            "e": answer_prompt(question, None, None, evidence, answer_format),
            "f": answer_prompt(question, passages, rationale, evidence, answer_format)}
