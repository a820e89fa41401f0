"""LEAR rewards against the issue's hand-computed values, the tag parser and the masked prompts."""

import math

import pytest

from rayapp.extract import REWARDS, masked_answer_prompts, parse_tags
from rayapp.extract.rewards import (answer_reward, evidence_length_reward, format_reward, lear_reward,
                                    length_reward, rationale_length_reward, unigram_f1)


def test_rationale_length_reward():
    assert rationale_length_reward(30, 20, tau=1.0) == pytest.approx(0.6225, abs=1e-4)
    # shorter rationale than evidence: sigmoid((1 - 20/10) / 1) = sigmoid(-1)
    assert rationale_length_reward(10, 20, tau=1.0) == pytest.approx(1 / (1 + math.e), abs=1e-9)
    assert rationale_length_reward(20, 20) == 0.5 and rationale_length_reward(0, 5) == 0.0


def test_evidence_length_reward():
    assert evidence_length_reward(140, 700, omega=0.9, gamma=0.5) == pytest.approx(0.894, abs=1e-3)
    assert evidence_length_reward(70, 700) == 1.0  # 1 - 0.1 = 0.9 >= omega
    assert evidence_length_reward(700, 700) == 0.0 and evidence_length_reward(800, 700) == 0.0


def test_length_answer_and_total_rewards():
    assert length_reward(30, 20, 100, tau=1.0, gamma=0.5) == pytest.approx((0.62246 + 0.8 ** 0.5) / 2, abs=1e-4)
    assert unigram_f1("The Eiffel Tower", "eiffel tower") == 1.0
    assert unigram_f1("Paris France", "Paris") == pytest.approx(2 / 3)
    assert unigram_f1("", "x") == 0.0 and unigram_f1("", "") == 1.0
    assert answer_reward("Paris", "Paris", "London", "in Paris") == pytest.approx((1 + 0 + 2 / 3) / 3)
    assert lear_reward(1.0, 0.5, 1.0) == pytest.approx(0.8 + 0.05 + 0.1)
    assert {"answer", "length", "format", "lear", "rationale_length", "evidence_length"} <= set(REWARDS)


@pytest.mark.parametrize("text,ok,problem", [
    ("<reason>why</reason><extract>it</extract>", True, None),
    ("<reason>why</reason>", False, "<extract> missing"),
    ("<reason>a<extract>b</extract></reason>", False, "inside"),
    ("<reason>a</reason><reason>b</reason><extract>c</extract>", False, "<reason> repeated"),
    ("</reason>a<reason><extract>c</extract>", False, "before"),
    ("<extract>c</extract><reason>a</reason>", False, "inside or before"),
])
def test_tag_parser(text, ok, problem):
    p = parse_tags(text, ["reason", "extract"])
    assert p.well_formed is ok
    if problem:
        assert any(problem in msg for msg in p.problems), p.problems
    else:
        assert p.get("reason") == "why" and p.get("extract") == "it"


def test_format_reward():
    good = "<reason>r</reason><extract>e</extract>"
    assert format_reward(good, "<answer>a</answer>", "<answer>b</answer>", "<answer>c</answer>") == 1.0
    assert format_reward(good, "<answer>a</answer>", "b", "<answer>c</answer>") == 0.0
    assert format_reward("<reason>r</reason>", "<answer>a</answer>", "<answer>b</answer>", "<answer>c</answer>") == 0.0


def test_masked_prompts_exclude_the_masked_text():
    q, P, r, e = "Who built it?", ["PASSAGE-ONE text", "PASSAGE-TWO text"], "RATIONALE-X", "EVIDENCE-Y"
    m = {k: " ".join(x["content"] for x in v) for k, v in masked_answer_prompts(q, P, r, e).items()}
    assert "PASSAGE-ONE" in m["r"] and "RATIONALE-X" in m["r"] and "EVIDENCE-Y" not in m["r"]
    assert "EVIDENCE-Y" in m["e"] and "PASSAGE" not in m["e"] and "RATIONALE-X" not in m["e"]
    assert all(s in m["f"] for s in ("PASSAGE-ONE", "PASSAGE-TWO", "RATIONALE-X", "EVIDENCE-Y"))
    assert all(q in v for v in m.values())
