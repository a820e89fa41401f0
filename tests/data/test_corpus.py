import json

import pyarrow.parquet as pq
import pytest

from rayapp.config import CorpusConfig
from rayapp.data import EmptyCorpusError, build_corpus, load_documents, load_passages
from rayapp.data._clusters import kmeans_groups, pack_groups, tfidf_features


def make_folder(root, docs, **cfg):
    for name, content in docs.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return CorpusConfig(kind="folder", path=root, **{"chunk": {"max_tokens": 20, "tokenizer": "whitespace"}, **cfg})


DOCS = {
    "guide/install.md": "Install the package with pip. " * 12,
    "guide/usage.md": "Run the main job with make demo.\n\nIt prints answers with citations.",
    "api/retrieve.md": "The retriever fuses BM25 and dense rankings with reciprocal rank fusion.",
    "broken.md": b"\xff\xfe not utf-8 \xe9",
}


def quarantine(info):
    return [json.loads(line) for line in (info.path / "quarantine.jsonl").read_text().splitlines()]


def test_folder_corpus_build_quarantines_and_counts(ray_session, tmp_path):
    info = build_corpus(make_folder(tmp_path / "src", DOCS), tmp_path / "home")
    counts = info.manifest["counts"]
    assert (counts["items"], counts["documents"], counts["clusters"], counts["quarantined"]) == (4, 3, 2, 1)
    assert counts["passages"] >= 4  # install.md (60 words) is cut into 20-word passages
    q = quarantine(info)
    assert [(e["stage"], e["source"], e["error"]) for e in q] == [("read", "file:broken.md", "invalid UTF-8 at byte 0")]
    passages = load_passages(info.path)
    assert passages.num_rows == counts["passages"]
    assert all(n <= 20 for n in passages.column("n_tokens").to_pylist())
    clusters = pq.read_table(info.path / "clusters.parquet").to_pylist()
    assert {c["key"]: len(c["doc_ids"]) for c in clusters} == {"guide": 2, "api": 1}
    docs = {d["doc_id"]: d for d in load_documents(info.path).to_pylist()}
    for p in passages.to_pylist():  # passage -> document map and spans are consistent
        assert " ".join(docs[p["doc_id"]]["text"][p["start"]:p["end"]].split()) == p["text"]
    assert {d for c in clusters for d in c["doc_ids"]} == set(docs)  # document -> cluster map
    assert not list((tmp_path / "home" / "corpus").glob("*.tmp-*"))


def test_token_budget_uses_the_tokenizer(ray_session, tmp_path):
    cfg = make_folder(tmp_path / "src", DOCS, chunk={"max_tokens": 16, "tokenizer": "minilm"})
    info = build_corpus(cfg, tmp_path / "home")
    from rayapp.data._tokens import token_counter

    counter = token_counter("minilm")
    for p in load_passages(info.path).to_pylist():
        assert p["n_tokens"] <= 16 and p["n_tokens"] == counter.count(p["text"])


def test_exact_and_near_duplicates_are_removed_and_kept_in_quarantine(ray_session, tmp_path):
    base = " ".join(f"word{i}" for i in range(80))
    docs = {"a/1.md": base, "a/2.md": base, "a/3.md": base.replace("word79", "other79"),
            "a/4.md": "something else entirely, nothing like the others at all"}
    info = build_corpus(make_folder(tmp_path / "src", docs), tmp_path / "home")
    c = info.manifest["counts"]
    assert (c["documents"], c["exact_duplicate"], c["near_duplicate"]) == (2, 1, 1)
    titles = set(load_documents(info.path).column("title").to_pylist())
    assert titles == {"a/1.md", "a/4.md"}  # the first in source order is kept
    q = {e["item"]: e for e in quarantine(info)}
    assert q["a/2.md"]["stage"] == "dedup" and q["a/2.md"]["error"].startswith("exact duplicate of ")
    assert q["a/3.md"]["error"].startswith("near duplicate of ") and q["a/3.md"]["row"]["text"].endswith("other79")


def test_length_filters_count_and_keep_rows(ray_session, tmp_path):
    docs = {"x/short.md": "two words", "x/long.md": "w " * 50, "x/ok.md": "a fine length document here"}
    cfg = make_folder(tmp_path / "src", docs, min_doc_tokens=3, max_doc_tokens=40)
    info = build_corpus(cfg, tmp_path / "home")
    c = info.manifest["counts"]
    assert (c["documents"], c["too_short"], c["too_long"], c["quarantined"]) == (1, 1, 1, 2)
    errors = sorted(e["error"] for e in quarantine(info))
    assert errors == ["too long: 50 tokens > corpus.max_doc_tokens=40", "too short: 2 tokens < corpus.min_doc_tokens=3"]


def test_rebuild_is_cached_and_incremental_with_stable_ids(ray_session, tmp_path):
    src = tmp_path / "src"
    cfg = make_folder(src, DOCS)
    first = build_corpus(cfg, tmp_path / "home")
    again = build_corpus(cfg, tmp_path / "home")
    assert again.cached and again.version == first.version
    (src / "guide" / "usage.md").write_text("Run the main job with make demo, then ask.", encoding="utf-8")
    (src / "api" / "new.md").write_text("A new page about the index service and its shards.", encoding="utf-8")
    changed = build_corpus(cfg, tmp_path / "home")
    c = changed.manifest["counts"]
    assert not changed.cached and changed.version != first.version
    assert (c["items_read"], c["items_reused"], c["documents"], c["quarantined"]) == (2, 3, 4, 1)
    # MinHash signatures: computed for the 2 read rows only (the quarantined reused row is a read error)
    assert first.manifest["counts"]["rows_signed"] == 3 and c["rows_signed"] == 2
    ids = lambda info: {d["title"]: d["doc_id"] for d in load_documents(info.path).to_pylist()}
    a, b = ids(first), ids(changed)
    assert a["guide/install.md"] == b["guide/install.md"] and a["api/retrieve.md"] == b["api/retrieve.md"]
    assert a["guide/usage.md"] != b["guide/usage.md"]
    # only the changed and added documents were chunked; the others' passages were carried over
    new_docs = {b["guide/usage.md"], b["api/new.md"]}
    assert c["passages_chunked"] == sum(p["doc_id"] in new_docs for p in load_passages(changed.path).to_pylist())
    # an incremental build equals a from-scratch build of the same inputs
    scratch = build_corpus(cfg, tmp_path / "home2")
    assert scratch.version == changed.version
    assert load_passages(scratch.path).to_pylist() == load_passages(changed.path).to_pylist()
    assert (first.path / "manifest.json").is_file()  # the old version is kept untouched


def test_config_change_rebuilds(ray_session, tmp_path):
    cfg = make_folder(tmp_path / "src", DOCS)
    first = build_corpus(cfg, tmp_path / "home")
    other = build_corpus(CorpusConfig(**{**cfg.model_dump(), "chunk": {"max_tokens": 30}}), tmp_path / "home")
    assert other.version != first.version and not other.cached and other.manifest["counts"]["items_reused"] == 0


def test_empty_corpus_is_an_error_and_loses_nothing(ray_session, tmp_path):
    good = build_corpus(make_folder(tmp_path / "src", DOCS), tmp_path / "home")
    cfg = make_folder(tmp_path / "bad", {"x.md": b"\xff\xff", "y.md": "   "})
    with pytest.raises(EmptyCorpusError, match=r"2 source items gave 0 usable documents \(2 quarantined"):
        build_corpus(cfg, tmp_path / "home")
    with pytest.raises(EmptyCorpusError, match="listed no files"):
        build_corpus(CorpusConfig(kind="folder", path=tmp_path / "src", glob="*.none"), tmp_path / "home")
    assert sorted(p.name for p in (tmp_path / "home" / "corpus").iterdir() if p.is_dir()) == [good.version]


def test_stdlib_corpus(small_corpus):
    counts = small_corpus.manifest["counts"]
    assert counts["items"] == 7 and counts["clusters"] >= 7 and counts["read_errors"] == 0  # json is a package of 5
    titles = set(load_passages(small_corpus.path).column("title").to_pylist())
    assert {"json.dumps", "csv.Sniffer", "tempfile.TemporaryDirectory"} <= titles


def test_pack_groups_respects_budget_and_order():
    clusters = pack_groups(["a", "a", "a", "b", "a"], ["d1", "d2", "d3", "d4", "d5"], [3, 3, 3, 9, 20], 7)
    assert [(c["key"], c["doc_ids"], c["n_tokens"]) for c in clusters] == [
        ("a", ["d1", "d2"], 6), ("a#1", ["d3"], 3), ("a#2", ["d5"], 20), ("b", ["d4"], 9)]


def test_kmeans_groups_separate_clear_clusters():
    import numpy as np

    rng = np.random.default_rng(0)
    centers = np.eye(8, dtype=np.float32)[:2]
    vecs = np.concatenate([centers[0] + 0.01 * rng.standard_normal((10, 8)),
                           centers[1] + 0.01 * rng.standard_normal((10, 8))]).astype(np.float32)
    keys = kmeans_groups(vecs, [100] * 20, max_tokens=1000)
    assert len(set(keys)) == 2 and len(set(keys[:10])) == 1 and len(set(keys[10:])) == 1


def test_tfidf_features_cluster_documents_by_topic():
    import numpy as np

    sport = [f"the team won the football match {i} with a late goal from the striker" for i in range(12)]
    cells = [f"the protein binds the receptor in cell line {i} and the kinase activity rises" for i in range(12)]
    vecs = tfidf_features(sport + cells)
    assert vecs.shape[0] == 24 and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    keys = kmeans_groups(vecs, [1000] * 24, max_tokens=12000)
    assert len(set(keys[:12])) == 1 and len(set(keys[12:])) == 1 and keys[0] != keys[12]


def test_jsonl_beir_and_parquet_kinds(ray_session, tmp_path):
    import pyarrow as pa

    lines = [json.dumps({"_id": "d1", "title": "One", "text": "The first document about retrieval."}),
             "{not json", json.dumps({"_id": "d2", "title": "Two", "text": ""}),
             json.dumps({"_id": "d3", "title": "Three", "text": "A third document, about generation."})]
    beir = tmp_path / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    info = build_corpus(CorpusConfig(kind="beir", path=beir), tmp_path / "home")
    c = info.manifest["counts"]
    assert (c["documents"], c["read_errors"]) == (2, 2)
    errors = [e["error"] for e in quarantine(info)]
    assert errors[0].startswith("line 2: malformed JSON") and errors[1] == "line 3: empty text"
    metas = [json.loads(m) for m in load_documents(info.path).column("meta").to_pylist()]
    assert sorted(m["orig_id"] for m in metas) == ["d1", "d3"]

    j = build_corpus(CorpusConfig(kind="jsonl", path=beir / "corpus.jsonl", id_field="_id"), tmp_path / "home")
    assert j.manifest["counts"]["documents"] == 2
    pq.write_table(pa.table({"text": ["parquet text one here", "parquet text two here"], "title": ["a", "b"]}),
                   tmp_path / "d.parquet")
    p = build_corpus(CorpusConfig(kind="parquet", path=tmp_path / "d.parquet"), tmp_path / "home")
    assert p.manifest["counts"]["documents"] == 2
