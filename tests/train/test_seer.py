"""SEER: the experts, the preference pairs and an LPO run on Ray Train with a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rayapp.extract.data import write_extract_rows
from rayapp.extract.seer import answer_sentence, conciseness, faithfulness, preference_pairs
from rayapp.train.config import TrainSeerConfig
from rayapp.train.seer import candidate_evidence

PASSAGES = ["Aspirin lowers the risk of heart attacks in older adults. The trial enrolled 400 patients.",
            "Side effects were mild and rare."]


def encoder(minilm):
    return lambda texts: minilm.encode(texts, normalize_embeddings=True)


def test_faithfulness_prefers_evidence_taken_from_the_passages(minilm):
    f = faithfulness(["Aspirin lowers the risk of heart attacks in older adults.",
                      "Bananas are grown on volcanic islands.", ""], PASSAGES, encoder(minilm))
    assert f[0] > 0.95 and f[0] > f[1] + 0.3 and f[2] == 0.0


def test_conciseness_prefers_evidence_that_states_the_answer(minilm):
    sent = answer_sentence("Does aspirin lower the risk of heart attacks?", "yes")
    assert sent == "Does aspirin lower the risk of heart attacks: yes."
    assert answer_sentence("q?", "yes", "Aspirin clearly lowers the risk.") == "Aspirin clearly lowers the risk."
    c = conciseness(["Aspirin lowers the risk of heart attacks.", "The trial enrolled 400 patients.", ""], sent,
                    encoder(minilm))
    assert c[0] > c[1] and c[2] == 0.0


def test_preference_pairs_are_ranked_and_lambda_weighted():
    pairs = preference_pairs(np.array([0.2, 0.9, 0.5]), max_pairs=10)
    assert {(w, l) for w, l, _ in pairs} == {(1, 0), (1, 2), (2, 0)}
    lam = {(w, l): x for w, l, x in pairs}
    # ranks: 1 -> 1, 2 -> 2, 0 -> 3; lambda = (s_w - s_l)(1/r_w - 1/r_l)
    assert lam[(1, 0)] == pytest.approx(0.7 * (1 - 1 / 3), rel=1e-6)
    assert lam[(2, 0)] == pytest.approx(0.3 * (1 / 2 - 1 / 3), rel=1e-6)
    assert pairs[0][:2] == (1, 0) and len(preference_pairs(np.array([0.2, 0.9, 0.5]), 1)) == 1
    assert preference_pairs(np.array([0.5, 0.5]), 4) == []


def test_candidate_evidence():
    assert candidate_evidence("<reason>r</reason><extract>the fact</extract>") == "the fact"
    assert candidate_evidence("<reason>r</reason> just text") == "r  just text"


def test_seer_pairs_and_lpo_training(ray_session, tiny_lm_dir, tmp_path):
    from rayapp.train.seer import train_seer

    rows = [{"id": str(i), "question": f"Does aspirin {i} help?", "passages": PASSAGES, "answers": ["yes"]}
            for i in range(3)]
    data = write_extract_rows(rows, tmp_path / "rows.jsonl")
    cfg = TrainSeerConfig(model=tiny_lm_dir, data=data, candidates=3, max_extract_tokens=12, max_pairs_per_row=2,
                          pairs_per_step=2, micro_batch_size=2, lr=1e-3, workers=1, cpus_per_worker=0.5,
                          rollout={"num_cpus": 0.5}, output_dir=tmp_path / "seer")
    out = train_seer(cfg)
    stats = out["pairs"]
    assert stats["candidates_sampled"] == 9 and stats["pairs"] >= 1
    pairs = [json.loads(x) for x in open(tmp_path / "seer" / "pairs.jsonl")]
    assert all(p["s_w"] > p["s_l"] and p["lambda"] > 0 and len(p["experts_w"]) == 3 for p in pairs)
    assert out["steps"] == -(-stats["pairs"] // 2) and out["metrics"]["step"] == out["steps"]
    assert np.isfinite(out["metrics"]["loss"])
    assert train_seer(cfg)["reused"] is True
