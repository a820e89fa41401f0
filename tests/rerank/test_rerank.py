"""The cross-encoder reranker: scoring, and training on Ray Train with a resume after a failure."""

import json

import numpy as np
import pytest
import torch

from rayapp.rerank import CrossEncoder
from rayapp.train.config import TrainRerankerConfig
from rayapp.train.reranker import group_texts, train_reranker


def toy_rows(n=24):
    # learnable by a tiny random model: positives say "relevant", negatives "unrelated"
    topics = ["apple", "river", "engine", "violin", "planet", "garden", "castle", "doctor"]
    rows = []
    for i in range(n):
        t = topics[i % len(topics)]
        others = [x for x in topics if x != t]
        rows.append({"query": f"tell me about the {t}", "pos": f"the {t} relevant text",
                     "negs": [f"the {others[(i + j) % 7]} unrelated text" for j in range(2)]})
    return rows


def test_group_texts_puts_the_positive_first_and_fills():
    rows = [{"query": "q", "pos": "p", "negs": ["n1"]}]
    q, p = group_texts(rows, 3, np.random.default_rng(0), ["p", "x", "y", "z"])
    assert q == ["q"] * 4 and p[:2] == ["p", "n1"] and "p" not in p[2:] and len(set(p[1:])) == 3


def test_scores_keep_input_order(tiny_bert_dir):
    ce = CrossEncoder.from_pretrained(tiny_bert_dir, num_labels=1)
    passages = ["a much longer passage about many different things " * 3, "short", "a medium passage here"]
    batched = ce.score("query", passages, batch_size=2)
    one_by_one = np.array([ce.score("query", [p])[0] for p in passages])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="2 queries but 1 passages"):
        ce.score_pairs(["a", "b"], ["c"])


def test_config_needs_divisible_batch(tmp_path):
    with pytest.raises(ValueError, match="batch_size: 6 is not a multiple of workers=4"):
        TrainRerankerConfig(data=tmp_path / "x.jsonl", batch_size=6, workers=4)


def test_training_resumes_after_a_failure_and_learns(ray_session, tiny_bert_dir, tmp_path):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    rows = toy_rows()
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n", encoding="utf-8")
    cfg = TrainRerankerConfig(model=tiny_bert_dir, data=data, steps=30, batch_size=8, hard_negatives=2, lr=2e-3,
                              warmup_steps=2, max_length=32, workers=2, cpus_per_worker=0.5, checkpoint_every=10,
                              log_every=10, output_dir=tmp_path / "out")
    out = train_reranker(cfg, inject_failure_at_step=15)
    assert out["bad_rows"] == 1 and out["metrics"]["step"] == 30 and out["metrics"]["resumed_from"] == 10
    assert out["metrics"]["world_size"] == 2

    def accuracy(ce_score):
        return np.mean([ce_score(r["query"], [r["pos"]] + r["negs"]).argmax() == 0 for r in rows])

    def margin(ce_score):  # positive score minus the best negative's, averaged over the rows
        return np.mean([(lambda s: s[0] - s[1:].max())(ce_score(r["query"], [r["pos"]] + r["negs"])) for r in rows])

    # an untrained random head already ranks well on this toy task by chance (one token separates
    # positives from negatives), so learning shows in the margin: 100x any seeded random head's
    before = []
    for seed in range(4):
        torch.manual_seed(seed)
        before.append(margin(CrossEncoder.from_pretrained(tiny_bert_dir, num_labels=1).score))
    trained = CrossEncoder.from_pretrained(out["path"])
    assert accuracy(trained.score) >= 0.9
    assert margin(trained.score) > 100 * max(abs(b) for b in before), (before, margin(trained.score))
    # a standard sequence-classification folder: sentence-transformers' CrossEncoder reads it unchanged
    st = STCrossEncoder(out["path"], device="cpu", max_length=32)
    pairs = [(r["query"], r["pos"]) for r in rows[:4]]
    ours = trained.score_pairs([q for q, _ in pairs], [p for _, p in pairs])
    np.testing.assert_allclose(st.predict(pairs, activation_fn=torch.nn.Identity()), ours, rtol=1e-4, atol=1e-5)
    assert train_reranker(cfg)["reused"]


def test_a_query_longer_than_max_length_is_scored(tiny_bert_dir):
    from rayapp.rerank import CrossEncoder

    ce = CrossEncoder.from_pretrained(tiny_bert_dir, max_length=32, num_labels=1)
    scores = ce.score("word " * 200, ["a short passage", "another passage " * 50])
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_the_onnx_cross_encoder_scores_as_torch_does(tiny_cross_dir, tmp_path, monkeypatch):
    """Same folder, two runtimes: equal scores in input order, a long query truncated the same way;
    the export is made once and reused; a folder without tokenizer.json is refused by name."""
    import shutil

    from rayapp.models._onnx import UnsupportedForOnnx
    from rayapp.rerank._onnx import OnnxCrossEncoder

    monkeypatch.setenv("RAYAPP_MODEL_CACHE", str(tmp_path / "cache"))
    qs = ["write rows to a CSV file"] * 4 + ["word " * 200]
    ps = ["csv.writer writes rows.", "json.dumps returns a string. " * 30, "x", "tempfile", "the csv module"]
    want = CrossEncoder.from_pretrained(tiny_cross_dir, 64).score_pairs(qs, ps, batch_size=2)
    onnx = OnnxCrossEncoder(tiny_cross_dir, 64)
    assert np.allclose(onnx.score_pairs(qs, ps, batch_size=2), want, atol=1e-4)
    assert np.allclose(onnx.score(qs[0], ps[:4]), want[:4], atol=1e-4)
    assert len(list((tmp_path / "cache").glob("onnx-cross-*"))) == 1
    OnnxCrossEncoder(tiny_cross_dir, 64)
    assert len(list((tmp_path / "cache").glob("onnx-cross-*"))) == 1  # cached
    with pytest.raises(ValueError, match="2 queries but 1 passages"):
        onnx.score_pairs(["a", "b"], ["c"])
    bare = tmp_path / "bare"
    shutil.copytree(tiny_cross_dir, bare)
    (bare / "tokenizer.json").unlink()
    with pytest.raises(UnsupportedForOnnx, match="needs the folder's tokenizer.json"):
        OnnxCrossEncoder(bare, 64)

