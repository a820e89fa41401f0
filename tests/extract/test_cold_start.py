"""LEAR's cold-start targets: well formed, evidence copied from the passages, answers closed."""

from rayapp.extract.cold_start import cold_start_evidence, cold_start_targets
from rayapp.extract.lear import read_extractor_output, score_lear
from rayapp.extract.rewards import format_reward

ROW = {"id": "1", "question": "Does drug X lower blood pressure?",
       "passages": ["Drug X was given to 40 patients. Blood pressure fell by 12 mmHg in the drug X group.",
                    "The trial ran in 2019 at two hospitals."],
       "answers": ["yes"], "reference": "Drug X lowered blood pressure in the treated patients.",
       "answer_format": "yes, no or maybe"}


def test_evidence_is_the_passage_sentence_closest_to_the_reference():
    assert cold_start_evidence(ROW["passages"], ROW["reference"]) == (0, "Blood pressure fell by 12 mmHg in the drug X group.")
    # a sentence longer than the cap loses to a short one; with no short one the best is cut
    long = "Drug X lowered blood pressure in treated patients " + "and more words " * 20 + "."
    assert cold_start_evidence([long, "Drug X helped."], ROW["reference"], max_words=5) == (1, "Drug X helped.")
    assert cold_start_evidence([long], ROW["reference"], max_words=5) == (0, "Drug X lowered blood pressure")


def test_targets_are_well_formed_and_score_full_format():
    (ext_msgs, ext_prefix, ext), *answers = cold_start_targets(ROW)
    text = ext_prefix + ext
    rationale, evidence, ok = read_extractor_output(text)
    assert ok and evidence == "Blood pressure fell by 12 mmHg in the drug X group."
    assert rationale.startswith("Passage 1 holds the finding.") and "Drug X lowered" in rationale
    assert ext_msgs[-1]["content"].endswith(ROW["question"])
    outs = [prefix + t for _, prefix, t in answers]
    assert outs == ["<answer>yes</answer>"] * 3 and format_reward(text, *outs) == 1.0
    # the answer prompts are the hard-masked ones built from (r, e): o_e has no passage text
    assert "two hospitals" not in answers[1][0][-1]["content"] and "two hospitals" in answers[2][0][-1]["content"]
    s = score_lear(text, dict(zip("ref", outs)), ROW["answers"], ROW["passages"])
    assert s["format"] == 1.0 and s["answer"] == 1.0


def test_rationale_is_cut_to_its_word_limit():
    (_, _, ext), *_ = cold_start_targets(ROW, max_rationale_words=3)
    assert ext.startswith("Passage 1 holds the finding. Drug X lowered</reason>")
