"""The reranker benchmark's training rows: blocks of negatives, and PubMedQA negatives mined by the
training-data job."""

from rayapp.data.sets import QASet
from rayapp.rerank.bench import BenchRerankerConfig, _block_rows, _pubmed_rows


def test_block_rows_use_every_negative_once_per_positive():
    pairs = [{"query": "q1", "pos": ["p1", "p2"], "neg": ["n1", "n2", "n3", "n4", "p1"]},
             {"query": "q2", "pos": ["p3"], "neg": ["n5"]}]  # fewer negatives than k: no row
    rows = _block_rows(pairs, 3, seed=0, task="t")
    assert [r["pos"] for r in rows] == ["p1", "p1", "p2", "p2"]
    for pos in ("p1", "p2"):
        blocks = [r["negs"] for r in rows if r["pos"] == pos]
        assert all(len(b) == 3 and len(set(b)) == 3 for b in blocks)
        assert set(blocks[0] + blocks[1]) == {"n1", "n2", "n3", "n4"}  # p1 is a positive, never a negative
    assert {r["task"] for r in rows} == {"t"}


def test_pubmed_negatives_are_mined_from_the_other_abstracts(ray_session):
    topics = ["insulin dosing in type 2 diabetes", "statins and cholesterol in older adults",
              "asthma inhalers in children", "antibiotics for urinary tract infections",
              "sleep apnea and blood pressure", "vitamin D and bone fractures",
              "migraine and beta blockers", "hip replacement recovery times"]
    docs = [{"doc_id": str(i), "text": f"This study examined {t}. Patients were followed for a year."}
            for i, t in enumerate(topics)]
    pairs = [{"qid": str(i), "query": f"Does {t} change outcomes?", "pos": [docs[i]["text"]], "neg": []}
             for i, t in enumerate(topics)]
    qa = QASet("pubmedqa-train", docs, [], {}, pairs)
    cfg = BenchRerankerConfig(hard_negatives=2, pubmedqa_rows=3,
                              pubmed_pairs={"k": 4, "rank_lo": 0, "rank_hi": 5, "filter_topk": 8})
    rows, mining = _pubmed_rows(cfg, qa)
    assert mining["pairs_in"] == 8 and mining["negatives"]["from_window"] == 4 * mining["kept"]
    assert len(rows) == 3 * 2  # 3 questions, 4 negatives in blocks of 2
    for r in rows:
        own = next(p["pos"][0] for p in pairs if p["query"] == r["query"])
        assert r["pos"] == own and own not in r["negs"] and len(r["negs"]) == 2
        assert set(r["negs"]) <= {d["text"] for d in docs}
    random_rows, _ = _pubmed_rows(cfg.model_copy(update={"pubmed_negatives": "random"}), qa)
    assert len(random_rows) == 3 and all(len(r["negs"]) == 2 for r in random_rows)
