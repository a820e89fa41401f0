"""Cold-start targets for LEAR (a supervised format stage before GRPO, for models too small to follow the tags).

SmolLM2-135M, prompted with LEAR's instruction and a worked example, never closes ``</reason>`` by
itself, so every scaffolded rollout has its tag forced and R_fmt is 0 for every sample: GRPO gets no
signal from the format reward. As in the "cold start" of RL recipes for small models (DeepSeek-R1,
arXiv 2501.12948, section 2.3.1), a few supervised steps on well-formed outputs come first. The
targets are built from the training rows alone, with no model in the loop:

- evidence e: the passage sentence with the highest unigram F1 against the row's reference (the
  full-sentence answer; PubMedQA's long answer, which is not part of the passages), preferring
  sentences of at most ``max_evidence_words`` words (short enough for the rollout's token limit);
- rationale r: which passage holds it, then the reference cut to ``max_rationale_words`` words;
- extractor target ``r</reason><extract>e</extract>`` (the prompt already opens ``<reason>``);
- answer target ``a</answer>`` under each of the three masks built from (r, e), so that the answers
  close their tag too (R_fmt needs all three).

The LEAR paper (arXiv 2507.15586) starts RL from Qwen2.5-Instruct without such a stage; it is
rayapp's addition, off unless ``TrainLearConfig.cold_start`` is set.
"""

from __future__ import annotations

from typing import Any

from rayapp.extract.heuristic import split_sentences
from rayapp.extract.lear import ANSWER_PREFIX, ANSWER_STOP, EXTRACT_OPEN, EXTRACT_PREFIX, EXTRACT_STOP, REASON_STOP
from rayapp.extract.prompts import extractor_prompt, masked_answer_prompts
from rayapp.extract.rewards import unigram_f1

__all__ = ["cold_start_evidence", "cold_start_targets"]


def cold_start_evidence(passages: list[str], reference: str, max_words: int = 20) -> tuple[int, str]:
    """(passage index, sentence): the sentence of ``passages`` closest to ``reference`` by unigram F1
    (the first on ties; a passage with no sentence break is one sentence). Sentences of at most
    ``max_words`` words come first; when there is none, the best sentence is cut to ``max_words``."""
    sentences = [(i, s) for i, p in enumerate(passages) for s in split_sentences(p) or [p]]
    pool = [x for x in sentences if len(x[1].split()) <= max_words] or sentences
    i, s = max(pool, key=lambda x: unigram_f1(x[1], reference))
    return i, " ".join(s.split()[:max_words])


def cold_start_targets(row: dict[str, Any], max_rationale_words: int = 16,
                   max_evidence_words: int = 20) -> list[tuple[list[dict[str, str]], str, str]]:
    """The supervised examples of one extraction row, as (chat prompt, assistant prefix, target):
    the extraction and its three masked answers."""
    k, evidence = cold_start_evidence(row["passages"], row["reference"], max_evidence_words)
    ref = " ".join(row["reference"].split()[:max_rationale_words])
    rationale = f"Passage {k + 1} holds the finding. {ref}"
    out = [(extractor_prompt(row["question"], row["passages"]), EXTRACT_PREFIX,
            f"{rationale}{REASON_STOP}{EXTRACT_OPEN}{evidence}{EXTRACT_STOP}")]
    masks = masked_answer_prompts(row["question"], row["passages"], rationale, evidence, row.get("answer_format"))
    out += [(masks[m], ANSWER_PREFIX, f"{row['answers'][0]}{ANSWER_STOP}") for m in ("r", "e", "f")]
    return out
