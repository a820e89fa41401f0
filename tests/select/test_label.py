import json

import numpy as np
import pytest

from rayapp.config import CorpusConfig
from rayapp.select.data import MultiLabelDataError
from rayapp.select.label import LabelCorpusConfig, LabelingConfig, label_corpus, label_documents, read_doc_labels

WORDS = {
    "cooking": "recipe oven flour butter sugar bake dough pan simmer garlic onion sauce knife kitchen",
    "astronomy": "telescope orbit planet star galaxy comet nebula moon eclipse spectrum gravity solar",
    "finance": "stock bond market interest loan bank equity dividend inflation credit budget tax",
}


def corpus_rows(n=90, seed=0):
    rng = np.random.default_rng(seed)
    topics = list(WORDS)
    rows = []
    for i in range(n):
        own = [topics[i % 3]] + ([topics[(i + 1) % 3]] if i % 4 == 0 else [])  # a quarter carry two topics
        words = [w for t in own for w in rng.choice(WORDS[t].split(), 12).tolist()]
        words += rng.choice("the a of and to in is it that with".split(), 8).tolist()
        rng.shuffle(words)
        rows.append({"id": f"d{i}", "title": f"note {i}", "text": " ".join(words), "topics": own})
    return rows


@pytest.fixture(scope="module")
def corpus(ray_session, tmp_path_factory):
    from rayapp.data.corpus import build_corpus

    tmp = tmp_path_factory.mktemp("label")
    rows = corpus_rows()
    with open(tmp / "docs.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({k: r[k] for k in ("id", "title", "text")}) + "\n")
    info = build_corpus(CorpusConfig(kind="jsonl", path=tmp / "docs.jsonl", id_field="id"), tmp / "home")
    return tmp, info.path, rows


def test_label_corpus_propagates_few_seed_labels(corpus):
    tmp, path, rows = corpus
    seeds = tmp / "seeds.jsonl"
    with open(seeds, "w") as f:
        for r in rows[:12]:  # 12 of 90 documents labelled
            f.write(json.dumps({"doc_id": r["id"], "labels": r["topics"]}) + "\n")
        f.write("not json\n")
        f.write(json.dumps({"doc_id": "nope", "labels": ["cooking"]}) + "\n")
        f.write(json.dumps({"doc_id": rows[0]["id"], "labels": ["cooking"]}) + "\n")  # labelled twice
        f.write(json.dumps({"doc_id": rows[20]["id"], "labels": []}) + "\n")
    cfg = LabelCorpusConfig(corpus=path, seeds=seeds, output_dir=tmp / "out", max_fit_rows=60, n_selected=20)
    report = label_corpus(cfg)
    assert report["documents"] == 90 and report["seeded"] == 12 and report["quarantined"] == 4
    assert report["fit_rows"] == 60 and report["propagated_rows"] == 30
    bad = [json.loads(x) for x in (tmp / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert [b["line"] for b in bad] == [13, 14, 15, 16] and "labelled twice" in bad[2]["error"]
    out = {json.loads(x)["orig_id"]: json.loads(x) for x in (tmp / "out" / "doc_labels.jsonl").read_text().splitlines()}
    assert len(out) == 90
    for r in rows[:12]:  # seeded documents keep their labels
        assert sorted(out[r["id"]]["labels"]) == sorted(r["topics"]) and out[r["id"]]["seeded"]
    unseeded = rows[12:]
    top_right = np.mean([out[r["id"]]["domain"] in r["topics"] for r in unseeded])
    assert top_right >= 0.9, top_right
    # the selected features are topic words, not stop words
    assert set(report["selected_features"][:10]) <= set(" ".join(WORDS.values()).split())
    assert read_doc_labels(tmp / "out" / "doc_labels.jsonl")[out[rows[1]["id"]]["doc_id"]] == out[rows[1]["id"]]["domain"]


def test_doc_labels_feed_weak_pairs_and_domain_batches(corpus):
    from rayapp.data.pairs import weak_pairs
    from rayapp.train.embedder import batch_key
    from rayapp.train.sampler import homogeneity, plan_batches

    tmp, path, rows = corpus
    domains = {r["id"]: r["topics"][0] for r in rows}
    docs = [{"doc_id": r["id"], "title": r["title"], "text": r["text"], "domain": domains[r["id"]]} for r in rows]
    pairs = weak_pairs(docs, "title-body")
    assert {p["domain"] for p in pairs} == set(WORDS)
    keys = [batch_key({"task": p["task"], "domain": p["domain"]}, "domain") for p in pairs]
    plan = plan_batches(keys, batch_size=10, homogeneous_ratio=1.0)
    assert homogeneity(plan, keys) == 1.0
    by_task = plan_batches([p["task"] for p in pairs], batch_size=10)
    assert homogeneity(by_task, keys) < 0.7  # all rows share one task: batching by task mixes the topics


def test_label_documents_needs_two_labels_and_a_seed():
    X = np.random.default_rng(0).random((20, 5))
    cfg = LabelingConfig()
    with pytest.raises(MultiLabelDataError, match="no usable seed label"):
        label_documents(X, {}, cfg)
    with pytest.raises(MultiLabelDataError, match="name one label \\('a'\\)"):
        label_documents(X, {0: ["a"], 1: ["a"]}, cfg)


def test_unknown_sgmfs_argument_is_named():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"unknown SGMFS argument\(s\) \['alpah'\]"):
        LabelingConfig(sgmfs={"alpah": 1.0})
