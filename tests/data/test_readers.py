import json
from pathlib import Path

import pytest

from rayapp.data import SourceError
from rayapp.data.readers import read_beir, read_bge_pairs, read_hf_docs, read_jsonl_docs, read_parquet_docs

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"
BGE_SAMPLES = SHARED_DATA / "flagembedding_finetune_samples"


def _write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _meta(row):
    return json.loads(row["meta"])


# ---------------------------------------------------------------------------------------- JSONL
def test_jsonl_good_and_bad_rows(tmp_path):
    big = json.dumps({"text": "y" * 200}).encode()
    f = _write_lines(tmp_path / "docs.jsonl", [
        json.dumps({"id": 7, "title": "Intro", "text": "Hello   world.", "topic": "t1"}).encode(),  # 1
        json.dumps({"text": "No title here."}).encode(),  # 2
        b'{"text": "caf\xe9"}',  # 3: invalid UTF-8 at byte 13
        b'{"text": oops}',  # 4
        b"[1, 2]",  # 5
        json.dumps({"body": "x"}).encode(),  # 6
        json.dumps({"text": "  "}).encode(),  # 7
        big,  # 8
        b"   ",  # 9: blank, not a record
        json.dumps({"text": 3}).encode(),  # 10
    ])
    rows = list(read_jsonl_docs(f, id_field="id", cluster_field="topic", max_record_bytes=100))
    assert len(rows) == 9  # every non-blank line is one row, good or bad
    good = [r for r in rows if not r["error"]]
    errors = [r["error"] for r in rows if r["error"]]
    assert errors == [
        "line 3: invalid UTF-8 at byte 13",
        "line 4: malformed JSON: Expecting value: line 1 column 10 (char 9)",
        "line 5: not a JSON object",
        "line 6: missing text field 'text'",
        "line 7: empty text",
        f"line 8: oversized: {len(big)} bytes > max_record_bytes=100",
        "line 10: text field 'text' is not a string (int)",
    ]
    first, second = good
    assert first["title"] == "Intro" and first["text"] == "Hello world." and first["cluster_key"] == "t1"
    assert _meta(first) == {"line": 1, "orig_id": "7", "path": str(f)}
    assert first["source"] == "jsonl:docs.jsonl" and first["n_words"] == 2
    assert second["title"] == "" and second["cluster_key"] == "docs" and "orig_id" not in _meta(second)
    assert all(_meta(r)["line"] for r in rows if r["error"])  # bad rows say where they were


def test_jsonl_ids_are_stable_and_content_based(tmp_path):
    a = _write_lines(tmp_path / "a.jsonl", [json.dumps({"title": "T", "text": "Same text."}).encode()])
    b = _write_lines(tmp_path / "b.jsonl", [
        b"",
        json.dumps({"title": "T", "text": "Same  text.", "x": 1}).encode(),  # same after cleaning
        json.dumps({"title": "U", "text": "Same text."}).encode(),
    ])
    (ra,) = read_jsonl_docs(a)
    rb, rc = read_jsonl_docs(b, source_name="other")
    assert ra["doc_id"] == next(iter(read_jsonl_docs(a)))["doc_id"] == rb["doc_id"] != rc["doc_id"]
    assert rb["source"] == "jsonl:other"


def test_jsonl_bom_crlf_and_missing_file(tmp_path):
    f = tmp_path / "w.jsonl"
    f.write_bytes(b'\xef\xbb\xbf{"text": "one"}\r\n{"text": "two"}')  # BOM, CRLF, no final newline
    assert [r["text"] for r in read_jsonl_docs(f)] == ["one", "two"]
    with pytest.raises(FileNotFoundError, match="JSONL file not found: .*nope.jsonl"):
        read_jsonl_docs(tmp_path / "nope.jsonl")


def test_jsonl_oversized_line_is_counted_not_kept(tmp_path):
    f = _write_lines(tmp_path / "big.jsonl", [b'{"text": "' + b"z" * 5000 + b'"}', b'{"text": "ok"}'])
    rows = list(read_jsonl_docs(f, max_record_bytes=64))
    assert rows[0]["error"] == "line 1: oversized: 5012 bytes > max_record_bytes=64"
    assert rows[1]["error"] == "" and _meta(rows[1])["line"] == 2


# -------------------------------------------------------------------------------------- parquet
def _parquet(path: Path, **cols) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(cols), path)
    return path


def test_parquet_rows_and_errors(tmp_path):
    f = _parquet(tmp_path / "p.parquet", text=["Alpha text.", None, " ", "Beta text.", "w" * 50],
                 title=["A", "B", "C", None, "E"], key=["k1", "k2", "k3", "k4", "k5"])
    rows = list(read_parquet_docs(f, id_field="key", batch_size=2, max_record_bytes=40))
    assert len(rows) == 5
    assert [r["error"] for r in rows] == ["", "row 1: empty text", "row 2: empty text", "",
                                          "row 4: oversized: 50 bytes > max_record_bytes=40"]
    assert rows[0]["title"] == "A" and rows[3]["title"] == "" and rows[0]["cluster_key"] == "p"
    assert _meta(rows[3]) == {"orig_id": "k4", "path": str(f), "row": 3}
    assert rows[0]["source"] == "parquet:p.parquet"
    with pytest.raises(ValueError, match=r"p\.parquet: no text column 'body'"):
        read_parquet_docs(f, text_field="body")
    with pytest.raises(ValueError, match="no id column 'doc'"):
        read_parquet_docs(f, id_field="doc")
    no_title = _parquet(tmp_path / "q.parquet", text=["Only text."])
    assert [r["title"] for r in read_parquet_docs(no_title)] == [""]


# ----------------------------------------------------------------------------------------- BEIR
def _beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    _write_lines(root / "corpus.jsonl", [
        json.dumps({"_id": "d1", "title": "Cats", "text": "Cats purr."}).encode(),
        json.dumps({"_id": "d2", "title": "", "text": "Dogs bark.", "metadata": {}}).encode(),
        json.dumps({"_id": "d3", "title": "Empty", "text": ""}).encode(),
        json.dumps({"title": "No id", "text": "Orphan."}).encode(),
        json.dumps({"_id": "d1", "title": "Again", "text": "Other text."}).encode(),
    ])
    _write_lines(root / "queries.jsonl", [json.dumps({"_id": "q1", "text": "what purrs?"}).encode(),
                                          json.dumps({"_id": "q2", "text": "what barks?"}).encode()])
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td1\t0\n")
    return root


def test_beir_folder(tmp_path):
    bs = read_beir(_beir(tmp_path / "scifake"))
    assert bs.queries == {"q1": "what purrs?", "q2": "what barks?"}
    assert bs.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d1": 0}}
    assert [d["title"] for d in bs.docs] == ["Cats", ""]
    assert [b["error"] for b in bs.bad] == ["line 3: empty text", "line 4: missing id field '_id'",
                                            "line 5: duplicate _id 'd1'"]
    assert len(bs.docs) + len(bs.bad) == 5
    assert bs.doc_id_of == {"d1": bs.docs[0]["doc_id"], "d2": bs.docs[1]["doc_id"]}
    assert bs.docs[0]["source"] == "beir:scifake" and bs.docs[0]["cluster_key"] == "scifake"
    assert _meta(bs.docs[0])["orig_id"] == "d1"


def test_beir_missing_files_and_bad_qrels(tmp_path):
    root = _beir(tmp_path / "ds")
    with pytest.raises(FileNotFoundError, match=r"qrels for split 'dev' not found: .*dev\.tsv"):
        read_beir(root, split="dev")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1 d2 1\n")
    with pytest.raises(ValueError, match=r"test\.tsv: line 3: expected 3 tab-separated fields"):
        read_beir(root)
    (root / "qrels" / "test.tsv").write_text("q1\td1\thigh\n")
    with pytest.raises(ValueError, match=r"test\.tsv: line 1: score 'high' is not an integer"):
        read_beir(root)
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\n{"_id": "q2"\n')
    with pytest.raises(ValueError, match=r"queries\.jsonl: line 2: malformed JSON"):
        read_beir(root)
    (root / "queries.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"BEIR queries not found: .*queries\.jsonl"):
        read_beir(root)
    with pytest.raises(FileNotFoundError, match=r"BEIR corpus not found: .*corpus\.jsonl"):
        read_beir(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------ BGE
def test_bge_pairs(tmp_path):
    lines = [
        {"query": "q1", "pos": ["p1"], "neg": ["n1", "n2"], "pos_scores": [0.9], "neg_scores": [0.1, 0.2],
         "prompt": "Represent this:", "type": "normal"},  # 1
        {"query": "q2", "pos": "single positive"},  # 2: wrapped, no neg
        {"pos": ["p"]},  # 3
        {"query": "q4", "pos": []},  # 4
        {"query": "q5", "pos": ["p"], "neg": ["n", 3]},  # 5
        {"query": "q6", "pos": ["p"], "pos_scores": [1, 2]},  # 6
        {"query": "q7", "pos": ["p"], "neg": ["n"], "neg_scores": ["high"]},  # 7
    ]
    f = _write_lines(tmp_path / "train.jsonl", [json.dumps(x).encode() for x in lines] + [b"{nope", b""])
    good, bad = read_bge_pairs(f)
    assert len(good) + len(bad) == 8
    assert good[0] == {"query": "q1", "pos": ["p1"], "neg": ["n1", "n2"], "pos_scores": [0.9],
                       "neg_scores": [0.1, 0.2], "prompt": "Represent this:", "type": "normal", "line": 1}
    assert good[1] == {"query": "q2", "pos": ["single positive"], "neg": [], "pos_scores": None,
                       "neg_scores": None, "prompt": None, "type": None, "line": 2}
    assert [b["error"] for b in bad] == [
        "line 3: missing query",
        "line 4: empty pos list",
        "line 5: neg[1] is not a string",
        "line 6: pos_scores has 2 entries, pos has 1",
        "line 7: neg_scores is not a list of numbers",
        "line 8: malformed JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    ]
    assert bad[0]["source"] == "bge:train.jsonl" and _meta(bad[0])["line"] == 3


def test_bge_real_flagembedding_samples():
    if not BGE_SAMPLES.is_dir():
        pytest.skip(f"shared data not present: {BGE_SAMPLES}")
    files = sorted(BGE_SAMPLES.rglob("*.jsonl"))
    assert len(files) == 5
    for f in files:
        good, bad = read_bge_pairs(f)
        assert bad == [] and len(good) == 10, f
        assert all(g["pos"] and g["query"] for g in good)
    good, _ = read_bge_pairs(BGE_SAMPLES / "embedder" / "retrieval" / "nli.jsonl")
    assert good[0]["type"] == "only_1neg" and good[0]["prompt"] and len(good[0]["neg_scores"]) == 1
    good, _ = read_bge_pairs(BGE_SAMPLES / "embedder" / "sts" / "sts.jsonl")
    assert good[0]["pos_scores"] is None and good[0]["type"] == "symmetric_sts"


# ---------------------------------------------------------------------------------- HF datasets
@pytest.fixture
def hf_offline(monkeypatch, tmp_path):
    """No hub here: make datasets fail fast instead of retrying, and cache under tmp_path."""
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hf-cache"


def test_hf_local_json_and_parquet(tmp_path, hf_offline):
    f = _write_lines(tmp_path / "hf.jsonl", [json.dumps({"id": 1, "title": "One", "text": "First doc."}).encode(),
                                             json.dumps({"id": 2, "title": "Two", "text": ""}).encode()])
    rows = list(read_hf_docs("json", data_files=str(f), id_field="id", cache_dir=str(hf_offline)))
    assert [r["error"] for r in rows] == ["", "row 1: empty text"]
    assert rows[0]["source"] == "hf:json" and rows[0]["cluster_key"] == "json"
    assert _meta(rows[0]) == {"orig_id": "1", "row": 0, "split": "train"}
    assert rows[0]["doc_id"] == next(iter(read_jsonl_docs(f)))["doc_id"]  # same content, same id
    with pytest.raises(ValueError, match="no text column 'body'"):
        read_hf_docs("json", data_files=str(f), text_field="body", cache_dir=str(hf_offline))

    p = _parquet(tmp_path / "hf.parquet", text=["A parquet doc.", None], title=["P", "Q"])
    rows = list(read_hf_docs("parquet", data_files=str(p), streaming=True))
    assert [r["error"] for r in rows] == ["", "row 1: empty text"] and rows[0]["title"] == "P"


def test_hf_missing_dataset_is_a_source_error(tmp_path, hf_offline):
    with pytest.raises(SourceError, match=r"'no-such-user/no-such-dataset'.*Hub may be unreachable"):
        read_hf_docs("no-such-user/no-such-dataset", cache_dir=str(hf_offline))
    with pytest.raises(SourceError, match="'json'"):
        read_hf_docs("json", data_files=str(tmp_path / "absent.jsonl"), cache_dir=str(hf_offline))
