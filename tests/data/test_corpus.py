import json

import pyarrow.parquet as pq
import pytest

from rayapp.config import CorpusConfig
from rayapp.data import EmptyCorpusError, build_corpus, load_passages


def make_folder(root, docs):
    for name, content in docs.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return CorpusConfig(kind="folder", path=root, chunk={"max_words": 20})


DOCS = {
    "guide/install.md": "Install the package with pip. " * 12,
    "guide/usage.md": "Run the main job with make demo.\n\nIt prints answers with citations.",
    "api/retrieve.md": "The retriever fuses BM25 and dense rankings with reciprocal rank fusion.",
    "broken.md": b"\xff\xfe not utf-8 \xe9",
}


def test_folder_corpus_build_quarantines_and_counts(ray_session, tmp_path):
    cfg = make_folder(tmp_path / "src", DOCS)
    info = build_corpus(cfg, tmp_path / "home")
    counts = info.manifest["counts"]
    assert counts == {"items": 4, "documents": 3, "passages": counts["passages"], "clusters": 2,
                      "quarantined": 1, "too_short": 0}
    assert counts["passages"] >= 4  # install.md (60 words) is cut into 20-word passages
    q = [json.loads(line) for line in (info.path / "quarantine.jsonl").read_text().splitlines()]
    assert q == [{"source": "file:broken.md", "error": "invalid UTF-8 at byte 0", "meta": q[0]["meta"]}]
    passages = load_passages(info.path)
    assert passages.num_rows == counts["passages"]
    assert all(n <= 20 for n in passages.column("n_words").to_pylist())
    clusters = pq.read_table(info.path / "clusters.parquet").to_pylist()
    assert {c["key"]: len(c["doc_ids"]) for c in clusters} == {"guide": 2, "api": 1}
    docs = pq.read_table(info.path / "documents").to_pylist()
    for p in passages.to_pylist():  # passage -> document map and spans are consistent
        doc = next(d for d in docs if d["doc_id"] == p["doc_id"])
        assert " ".join(doc["text"][p["start"]:p["end"]].split()) == p["text"]
    assert not list((tmp_path / "home" / "corpus").glob("*.tmp-*"))


def test_rebuild_is_cached_and_ids_are_stable(ray_session, tmp_path):
    src = tmp_path / "src"
    cfg = make_folder(src, DOCS)
    first = build_corpus(cfg, tmp_path / "home")
    again = build_corpus(cfg, tmp_path / "home")
    assert again.cached and again.version == first.version
    (src / "guide" / "usage.md").write_text("Run the main job with make demo, then ask.", encoding="utf-8")
    changed = build_corpus(cfg, tmp_path / "home")
    assert not changed.cached and changed.version != first.version
    ids = lambda info: {d["title"]: d["doc_id"] for d in pq.read_table(info.path / "documents").to_pylist()}
    a, b = ids(first), ids(changed)
    assert a["guide/install.md"] == b["guide/install.md"] and a["api/retrieve.md"] == b["api/retrieve.md"]
    assert a["guide/usage.md"] != b["guide/usage.md"]
    assert (first.path / "manifest.json").is_file()  # the old version is kept untouched


def test_config_change_rebuilds(ray_session, tmp_path):
    cfg = make_folder(tmp_path / "src", DOCS)
    first = build_corpus(cfg, tmp_path / "home")
    other = build_corpus(CorpusConfig(**{**cfg.model_dump(), "chunk": {"max_words": 30}}), tmp_path / "home")
    assert other.version != first.version and not other.cached


def test_empty_corpus_is_an_error_and_loses_nothing(ray_session, tmp_path):
    good = build_corpus(make_folder(tmp_path / "src", DOCS), tmp_path / "home")
    bad_src = tmp_path / "bad"
    cfg = make_folder(bad_src, {"x.md": b"\xff\xff", "y.md": "   "})
    with pytest.raises(EmptyCorpusError, match=r"2 source items gave 0 usable documents \(2 quarantined"):
        build_corpus(cfg, tmp_path / "home")
    with pytest.raises(EmptyCorpusError, match="listed no files"):
        build_corpus(CorpusConfig(kind="folder", path=tmp_path / "src", glob="*.none"), tmp_path / "home")
    assert sorted(p.name for p in (tmp_path / "home" / "corpus").iterdir()) == [good.version]


def test_stdlib_corpus(small_corpus):
    counts = small_corpus.manifest["counts"]
    assert counts["items"] == 7 and counts["clusters"] == 7 and counts["quarantined"] == 0  # json is a package of 5
    titles = set(load_passages(small_corpus.path).column("title").to_pylist())
    assert {"json.dumps", "csv.Sniffer", "tempfile.TemporaryDirectory"} <= titles
