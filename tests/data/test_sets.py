"""The shared data set loaders, checked against the row counts in each SOURCE.md."""

from pathlib import Path

import pytest

from rayapp.data.sets import (default_data_dir, load_flashrag_sample, load_nq_open, load_pubmedqa,
                              load_trecqa)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _check_common(qa):
    ids = [d["doc_id"] for d in qa.docs]
    assert len(ids) == len(set(ids)) and not any(d["error"] for d in qa.docs)
    assert all(set(q) == {"qid", "text", "answers"} for q in qa.queries)
    texts = {d["text"] for d in qa.docs}
    for p in qa.pairs:  # positives and negatives are corpus texts, found by equality
        assert set(p) == {"qid", "query", "pos", "neg"} and p["pos"]
        assert set(p["pos"]) <= texts and set(p["neg"]) <= texts
    doc_ids = set(ids)
    assert all(set(g) <= doc_ids for g in qa.qrels.values())


@pytest.mark.parametrize("split,n", [("all", 1000), ("test", 500), ("train", 500)])
@pytest.mark.shared_data
def test_pubmedqa(split, n):
    if not DATA.is_dir():
        pytest.skip("../shared/data absent")
    qa = load_pubmedqa(DATA, split)
    _check_common(qa)
    assert len(qa.docs) == len(qa.queries) == len(qa.pairs) == n
    if split == "all":
        assert qa.stats["contexts"] == 3358
        decisions = [q["answers"][0] for q in qa.queries]
        assert {d: decisions.count(d) for d in set(decisions)} == {"yes": 552, "no": 338, "maybe": 110}
    q = qa.queries[0]
    doc_id = next(iter(qa.qrels[q["qid"]]))
    doc = next(d for d in qa.docs if d["doc_id"] == doc_id)
    assert doc["cluster_key"] == q["qid"] and doc["title"] == f"PMID {q['qid']}"
    assert qa.pairs[0]["pos"] == [doc["text"]] and qa.pairs[0]["neg"] == []


@pytest.mark.shared_data
def test_pubmedqa_splits_are_disjoint():
    if not DATA.is_dir():
        pytest.skip("../shared/data absent")
    test, train = load_pubmedqa(DATA, "test"), load_pubmedqa(DATA, "train")
    assert not {q["qid"] for q in test.queries} & {q["qid"] for q in train.queries}


@pytest.mark.parametrize("split,rows,questions,with_pos,pos,neg", [
    ("train", 4718, 93, 83, 348, 4370), ("dev", 1148, 81, 78, 222, 926), ("test", 1517, 95, 89, 284, 1233)])
@pytest.mark.shared_data
def test_trecqa(split, rows, questions, with_pos, pos, neg):
    if not DATA.is_dir():
        pytest.skip("../shared/data absent")
    qa = load_trecqa(DATA, split)
    _check_common(qa)
    s = qa.stats
    assert (s["rows"], s["questions"], s["with_positive"], s["label_1"], s["label_0"]) == \
        (rows, questions, with_pos, pos, neg)
    assert len(qa.queries) == questions and len(qa.pairs) == with_pos
    assert s["no_positive"] == questions - with_pos
    no_pair = {q["qid"] for q in qa.queries} - {p["qid"] for p in qa.pairs}
    assert len(no_pair) == s["no_positive"] and all(max(qa.qrels[q].values()) == 0 for q in no_pair)
    if split == "train":  # one duplicated (question, sentence) row in train
        assert sum(len(g) for g in qa.qrels.values()) == rows - 1


@pytest.mark.shared_data
def test_nq_open():
    if not DATA.is_dir():
        pytest.skip("../shared/data absent")
    qa = load_nq_open(DATA)
    assert len(qa.queries) == 3610 and qa.docs == [] and qa.pairs == []
    assert qa.queries[0]["text"] == "when was the last time anyone was on the moon"
    assert qa.queries[0]["answers"] == ["14 December 1972 UTC", "December 1972"]


@pytest.mark.shared_data
def test_flashrag_sample():
    if not DATA.is_dir():
        pytest.skip("../shared/data absent")
    qa = load_flashrag_sample(DATA)
    _check_common(qa)
    assert len(qa.docs) == 1000 and len(qa.queries) == 17 and qa.stats["answer_in_corpus"] == 4
    first = qa.docs[0]
    assert first["title"] == "Evan Morris" and first["text"].startswith("Evan Morris Evan L. Morris")
    assert qa.queries[0] == {"qid": "test_0", "text": "who got the first nobel prize in physics",
                             "answers": ["Wilhelm Conrad Röntgen"]}


def test_missing_data_dir_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYAPP_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="data folder not found: .*nowhere.*RAYAPP_DATA_DIR"):
        default_data_dir()
    with pytest.raises(FileNotFoundError, match="data set folder not found: .*trecqa_wang_anssel"):
        load_trecqa(tmp_path)


def test_bad_split_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="split must be 'train', 'dev' or 'test', not 'all'"):
        load_trecqa(tmp_path, "all")
    with pytest.raises(ValueError, match="pubmedqa: split must be"):
        load_pubmedqa(tmp_path, "dev")
