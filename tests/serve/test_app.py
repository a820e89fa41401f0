"""HTTP tests of the composed app: ingress -> retriever -> generator (real MiniLM and SmolLM2)."""

import os

import httpx
import pytest

from rayapp.config import AppConfig


@pytest.fixture(scope="module")
def app_url(ray_session, small_index, smollm2_dir, serve_port, tmp_path_factory):
    from ray import serve

    from rayapp.serve import APP_NAME, start_app
    from tests.recommend.test_service import build_model_dir

    rec_dir = build_model_dir(tmp_path_factory.mktemp("rec"))
    cfg = AppConfig.model_validate({
        "generator": {"model": smollm2_dir, "max_new_tokens": 24, "served_name": "smollm2",
                      "pica_tasks": {"define": DEMOS}, "pica_vectors_dir": str(tmp_path_factory.mktemp("pica"))},
        "retriever": {"top_k": 3},
        "extractor": {"method": "top_sentences", "k": 4},
        "recommender": {"model_dir": str(rec_dir), "max_history": 20, "max_top_k": 50},
        "limits": {"max_question_chars": 500, "max_top_k": 10, "max_new_tokens": 64, "max_batch": 8,
                   "max_text_chars": 2000, "max_body_bytes": 200_000},
        "http": {"port": serve_port},
    })
    yield start_app(cfg, small_index.path)
    serve.delete(APP_NAME)


DEMOS = [{"query": "What is a list in Python?", "answer": "A list is an ordered, mutable sequence of values."},
         {"query": "What is a dict in Python?", "answer": "A dict maps keys to values."}]


def post(url, path, body, **kw):
    return httpx.post(f"{url}{path}", timeout=300, **({"json": body} if body is not None else {}), **kw)


def test_healthz(app_url):
    r = httpx.get(f"{app_url}/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_names_every_configured_stage(app_url):
    r = httpx.get(f"{app_url}/readyz", timeout=60)
    assert r.status_code == 200
    assert r.json() == {"status": "ready",
                        "stages": ["retriever", "generator", "extractor", "recommender", "embedder"]}


def test_retrieve(app_url):
    r = post(app_url, "/v1/retrieve", {"question": "temporary directory context manager", "top_k": 2})
    assert r.status_code == 200
    body = r.json()
    assert len(body["hits"]) == 2 and body["hits"][0]["title"].startswith("tempfile")
    assert [t["stage"] for t in body["timings"]] == ["encode_query", "bm25", "dense", "fuse", "retrieve_total"]


def test_query_answers_with_citations_from_its_passages(app_url):
    r = post(app_url, "/v1/query", {"question": "How do I serialize a Python object to a JSON string?"})
    assert r.status_code == 200, r.text
    body = r.json()
    passage_ids = {p["id"] for p in body["passages"]}
    assert len(body["passages"]) == 3 and body["answer"]
    assert body["citations"], body["answer"]
    assert {c["id"] for c in body["citations"]} <= set(body["context_ids"]) <= passage_ids
    ev = body["evidence"]  # the extract stage ran between retrieval and generation
    assert ev["method"] == "top_sentences" and ev["evidence"] and ev["compression"] >= 1 and ev["rationale"]
    assert all(p["text"] for p in body["passages"])  # the full passages are still returned
    stages = [t["stage"] for t in body["timings"]]
    assert stages[-4:] == ["retrieve_total", "extract", "generate", "total"]
    assert all(t["seconds"] >= 0 for t in body["timings"])


@pytest.mark.parametrize("body,field,needle", [
    ({"question": "x" * 100_000}, "question", "at most 500 characters (got 100000)"),
    ({"question": "ok", "bogus": 1}, "bogus", "unknown field"),
    ({"question": "ok", "top_k": 0}, "top_k", "greater than or equal to 1"),
    ({"question": "ok", "top_k": 11}, "top_k", "at most 10"),
    ({"question": "ok", "max_new_tokens": 65}, "max_new_tokens", "at most 64"),
    ({"question": "   "}, "question", "must not be blank"),
    ({"question": ""}, "question", "at least 1 character"),
    ({"question": 5}, "question", "valid string"),
    ({}, "question", "Field required"),
])
def test_bad_query_is_422_with_field(app_url, body, field, needle):
    r = post(app_url, "/v1/query", body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == field and needle in err["message"]


def test_recommend_and_append_interactions(app_url):
    r = post(app_url, "/v1/recommend", {"items": ["i1", "i2"], "top_k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == 3 and body["mode"] == "raserec" and body["seconds"] >= 0
    n = body["memories"]
    r = post(app_url, "/v1/recommend/interactions", {"user": "web-user", "items": ["i3", "i4", "i5"]})
    assert r.status_code == 200 and r.json()["memories"] == n + 2
    assert post(app_url, "/v1/recommend", {"user": "web-user"}).json()["history_length"] == 3


def test_recommend_under_concurrent_load(app_url):
    """The serve benchmark's /v1/recommend load: every request of every client answered."""
    from rayapp.serve.bench import run_load

    records = run_load(app_url, "recommend", ["u0", "u1", "u2"], clients=3, duration_s=1.0, top_k=5)
    assert records and {code for _, _, code in records} == {200}


def test_stage_endpoints_under_the_bench_load(app_url):
    """The serve benchmark's /v1/embeddings and /v1/extract bodies (the served embedder's name; the
    passages the app retrieves) are accepted, every request of every client answered."""
    from rayapp.serve.bench import run_load, stage_bodies

    qs = ["temporary directory context manager", "parse command line arguments"]
    emb = stage_bodies(app_url, "embeddings", qs)
    assert [b["input"] for b in emb] == qs and emb[0]["model"] == httpx.get(f"{app_url}/v1/info").json()["embedder"]
    ext = stage_bodies(app_url, "extract", qs)
    assert [len(b["passages"]) for b in ext] == [3, 3] and ext[0]["question"] == qs[0]
    for endpoint, bodies in (("embeddings", emb), ("extract", ext)):
        records = run_load(app_url, endpoint, bodies, clients=2, duration_s=1.0)
        assert records and {code for _, _, code in records} == {200}, endpoint


@pytest.mark.parametrize("path,body,field,needle", [
    ("/v1/recommend", {"items": ["nope"]}, "items", "unknown item ids"),
    ("/v1/recommend", {"items": ["i1"] * 21}, "items", "at most 20 items"),
    ("/v1/recommend", {"items": ["i1"], "top_k": 51}, "top_k", "at most 50"),
    ("/v1/recommend", {"user": "ghost"}, "user", "unknown user"),
    ("/v1/recommend/interactions", {"user": "x", "items": []}, "items", "at least 1"),
])
def test_bad_recommend_is_422_with_field(app_url, path, body, field, needle):
    r = post(app_url, path, body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == field and needle in err["message"]


def test_non_json_body_is_4xx_json(app_url):
    r = post(app_url, "/v1/query", None, content=b"\xff\xfe not json", headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500 and "error" in r.json()


def test_unknown_route_is_404_json(app_url):
    r = httpx.get(f"{app_url}/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["message"] == "Not Found"


def test_openapi_is_served(app_url):
    paths = httpx.get(f"{app_url}/openapi.json").json()["paths"]
    assert {"/healthz", "/v1/retrieve", "/v1/query"} <= set(paths)


# ------------------------------------------------------------------------------ OpenAI-compatible
def chat(url, content="What is the capital of France?", **kw):
    return post(url, "/v1/chat/completions", {"model": "smollm2", "messages": [{"role": "user", "content": content}],
                                              **kw})


def test_models_lists_the_served_model(app_url):
    r = httpx.get(f"{app_url}/v1/models")
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ["smollm2"]


def test_chat_completion(app_url):
    r = chat(app_url, max_tokens=16)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "smollm2"
    choice = body["choices"][0]
    assert "Paris" in choice["message"]["content"] and choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in {"stop", "length"} and 0 < body["usage"]["completion_tokens"] <= 16
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_streaming_sends_the_same_text_as_sse(app_url):
    import json

    whole = chat(app_url, "Name three colours.", max_tokens=10).json()["choices"][0]["message"]["content"]
    with httpx.stream("POST", f"{app_url}/v1/chat/completions", timeout=300,
                      json={"model": "smollm2", "messages": [{"role": "user", "content": "Name three colours."}],
                            "max_tokens": 10, "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == whole
    assert len(chunks) > 3 and chunks[-1]["choices"][0]["finish_reason"] and chunks[-1]["usage"]["completion_tokens"]


def test_concurrent_requests_share_batches(app_url):
    from concurrent.futures import ThreadPoolExecutor

    from ray import serve

    from rayapp.serve import APP_NAME

    with ThreadPoolExecutor(6) as pool:
        rs = list(pool.map(lambda i: chat(app_url, f"Count to {i + 2}.", max_tokens=6), range(6)))
    assert all(r.status_code == 200 for r in rs)
    sizes = serve.get_deployment_handle("Generator", APP_NAME).stats.remote().result()["batch_sizes"]
    assert max(sizes) > 1, sizes


def test_concurrent_retrievals_share_the_query_encoder_and_keep_their_own_answers(app_url):
    """Calls sent together are encoded in one pass (the encode_query stage names the batch size),
    and each still gets its own question's hits: the same as when it is sent alone."""
    from ray import serve

    from rayapp.serve import APP_NAME

    handle = serve.get_deployment_handle("Retriever", APP_NAME)
    questions = ["temporary directory", "parse JSON", "regular expression groups", "sort a list",
                 "read a CSV file", "current date and time", "copy a file", "random integer"]
    alone = [handle.retrieve.remote(q, 3).result() for q in questions]
    assert all(a["timings"][0] == {**a["timings"][0], "stage": "encode_query", "n_in": 1} for a in alone)
    for _ in range(3):  # the batch wait is 2 ms: sent at once, they nearly always share a pass
        together = [r.result() for r in [handle.retrieve.remote(q, 3) for q in questions]]
        for a, t in zip(alone, together):
            assert [h["id"] for h in t["hits"]] == [h["id"] for h in a["hits"]]
            assert [h["score"] for h in t["hits"]] == pytest.approx([h["score"] for h in a["hits"]], abs=1e-6)
        if max(t["timings"][0]["n_in"] for t in together) > 1:
            break
    assert max(t["timings"][0]["n_in"] for t in together) > 1, [t["timings"][0] for t in together]


def test_retriever_encodes_queries_with_onnx_and_ranks_as_sentence_transformers(app_url, small_index, minilm):
    """``query_encoder: auto`` runs MiniLM through ONNX Runtime in the replica; its rankings are
    those of the same retriever with ``SentenceTransformer.encode`` in this process."""
    from ray import serve

    from rayapp.config import RetrieverConfig
    from rayapp.index import LoadedIndex
    from rayapp.retrieve import HybridRetriever
    from rayapp.serve import APP_NAME

    handle = serve.get_deployment_handle("Retriever", APP_NAME)
    assert handle.info.remote().result()["query_encoder"] == "onnx"
    local = HybridRetriever(LoadedIndex(small_index.path), RetrieverConfig(top_k=3),
                            lambda q: minilm.encode(q, normalize_embeddings=True))
    for q in ["temporary directory", "parse JSON", "write rows to a CSV file", "dump an object to a string"]:
        served = handle.retrieve.remote(q, 3).result()["hits"]
        hits, _ = local.retrieve(q, 3)
        assert [h["id"] for h in served] == [h.id for h in hits], q
        assert [h["score"] for h in served] == pytest.approx([h.score for h in hits], abs=1e-6)


def test_pica_request_per_query_and_per_task(app_url):
    for pica in ({"demos": DEMOS}, {"task": "define"}, {"task": "define", "mode": "task"}):
        r = chat(app_url, "What is a tuple in Python?", max_tokens=20, pica=pica)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["choices"][0]["message"]["content"].strip() and body["pica"]["stage"] in {"few_shot", "zero_shot"}
        if body["pica"]["stage"] == "zero_shot":
            assert body["pica"]["kv_cache"]["zero_shot"] < body["pica"]["kv_cache"]["few_shot"] + 20


@pytest.mark.parametrize("body,status,field,needle", [
    ({"model": "smollm2", "messages": []}, 422, "messages", "at least 1 item"),
    ({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, 404, "model", "'gpt-9' is not served"),
    ({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}, 422, "max_tokens",
     "at most 64"),
    ({"model": "smollm2", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}, 422,
     "messages.0.content", "valid string"),
    ({"model": "smollm2", "messages": [{"role": "robot", "content": "hi"}]}, 422, "messages.0.role", "'system'"),
    ({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "logit_bias": {}}, 422, "logit_bias",
     "unknown field"),
    ({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}, 422,
     "stop", "at most 4"),
    ({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "pica": {"task": "nope"}}, 422,
     "pica.task", "unknown task 'nope'"),
    ({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "pica": {"demos": DEMOS},
      "stream": True}, 422, "stream", "not streamed"),
    ({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "pica": {"demos": DEMOS, "mode": "task"}},
     422, "pica.mode", "needs a configured task"),
    ({"model": "smollm2", "messages": [{"role": "user", "content": "x" * 30000}]}, 422, "messages", "at most 20000"),
])
def test_bad_chat_request_is_4xx_with_field(app_url, body, status, field, needle):
    r = post(app_url, "/v1/chat/completions", body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["field"] == field and needle in err["message"], err


# ------------------------------------------------------------------------------ stage endpoints
def test_embeddings_in_openai_shape_with_matryoshka_and_base64(app_url):
    import base64

    import numpy as np

    model = httpx.get(f"{app_url}/v1/info").json()["embedder"]
    texts = ["How do I parse JSON in Python?", "json.loads parses a JSON document into Python objects.",
             "The tempfile module creates temporary files."]
    r = post(app_url, "/v1/embeddings", {"model": model, "input": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == model and body["usage"]["prompt_tokens"] > 10
    v = np.array([d["embedding"] for d in body["data"]])
    assert [d["index"] for d in body["data"]] == [0, 1, 2] and v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1  # the question is nearer its answer than an unrelated passage
    r = post(app_url, "/v1/embeddings", {"model": model, "input": texts[0], "dimensions": 64, "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    small = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    cut = v[0, :64] / np.linalg.norm(v[0, :64])
    assert small.shape == (64,) and np.allclose(small, cut, atol=1e-4)  # truncated, then re-normalised
    # embeddings.backend: auto runs MiniLM in ONNX Runtime; the vectors are the ones sentence-transformers gives
    from ray import serve

    from rayapp.models import load_sentence_transformer
    from rayapp.serve import APP_NAME

    assert serve.get_deployment_handle("Embedder", APP_NAME).info.remote().result()["backend"] == "onnx"
    st = load_sentence_transformer("minilm", 256)
    assert (v * st.encode(texts, normalize_embeddings=True)).sum(axis=1).min() >= 0.9999
    assert body["usage"]["prompt_tokens"] == sum(len(x) for x in st.tokenizer(texts)["input_ids"])


@pytest.mark.parametrize("body,status,field,needle", [
    ({"model": "other", "input": "hi"}, 404, "model", "is not served here"),
    ({"input": []}, 422, "input", "empty list"),
    ({"input": ["a"] * 9}, 422, "input", "at most 8 items"),
    ({"input": ["ok", "  "]}, 422, "input.1", "must not be blank"),
    ({"input": "x" * 2001}, 422, "input.0", "at most 2000 characters"),
    ({"input": "hi", "dimensions": 385}, 422, "dimensions", "at most 384"),
    ({"input": "hi", "encoding_format": "int8"}, 422, "encoding_format", "'float' or 'base64'"),
    ({"input": [1, 2]}, 422, "input", "valid string"),
])
def test_bad_embeddings_request_is_4xx_with_field(app_url, body, status, field, needle):
    body = {"model": httpx.get(f"{app_url}/v1/info").json()["embedder"], **body}
    r = post(app_url, "/v1/embeddings", body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["field"].startswith(field) and needle in err["message"], err


def test_extract_on_given_passages(app_url):
    passages = [{"id": "a", "text": "The json module encodes Python objects. json.dumps returns a JSON string. "
                                   "It accepts an indent argument."},
                "The tempfile module creates temporary files and directories. It cleans them up."]
    r = post(app_url, "/v1/extract", {"question": "Which function returns a JSON string?", "passages": passages})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "top_sentences" and "json.dumps" in body["evidence"]
    assert body["passages"][0]["id"] == "a" and {p["id"] for p in body["passages"]} <= {"a", "1"}
    assert all(p["evidence"] for p in body["passages"]) and body["seconds"] >= 0


@pytest.mark.parametrize("body,field,needle", [
    ({"question": "q", "passages": []}, "passages", "at least 1 item"),
    ({"question": " ", "passages": ["p"]}, "question", "must not be blank"),
    ({"question": "q", "passages": ["p"] * 9}, "passages", "at most 8 items"),
    ({"question": "q", "passages": [{"text": "p", "score": 1}]}, "passages", "unknown field"),
])
def test_bad_extract_request_is_422_with_field(app_url, body, field, needle):
    r = post(app_url, "/v1/extract", body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"].startswith(field) and needle in err["message"], err


def test_rerank_without_a_reranker_is_404(app_url):
    r = post(app_url, "/v1/rerank", {"query": "q", "documents": ["a"]})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_configured"


def sse_events(response) -> list[tuple[str, dict]]:
    import json

    out, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            out.append((name, json.loads(line[len("data: "):])))
    return out


def test_query_streams_retrieval_evidence_tokens_then_done(app_url):
    with httpx.stream("POST", f"{app_url}/v1/query", timeout=300,
                      json={"question": "How do I serialize a Python object to a JSON string?", "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    names = [n for n, _ in events]
    assert names[:2] == ["retrieval", "evidence"] and names[-1] == "done" and names.count("token") > 3
    done = events[-1][1]
    assert "".join(d["delta"] for n, d in events if n == "token").strip() == done["answer"]
    assert done["answer"].startswith("According to [")
    passages = {p["id"] for p in events[0][1]["passages"]}
    assert {c["id"] for c in done["citations"]} <= set(done["context_ids"]) <= passages
    assert [t["stage"] for t in done["timings"]][-3:] == ["extract", "generate", "total"]
    assert done["usage"]["completion_tokens"] > 0


def test_body_over_the_limit_is_413(app_url):
    r = post(app_url, "/v1/retrieve", None, content=b'{"question": "' + b"x" * 300_000 + b'"}',
             headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert "at most 200000 bytes" in r.json()["error"]["message"]


def test_web_page_is_served(app_url):
    r = httpx.get(f"{app_url}/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="question"' in r.text and "/v1/query" in r.text and "/v1/recommend" in r.text


def test_request_id_is_echoed_and_logged_by_every_stage(app_url):
    """Serve's proxy takes the client's X-Request-ID (or makes one) and carries it through every
    handle call; each stage's JSON log lines name it."""
    import json
    import time
    import uuid

    import ray

    rid = f"rid-{uuid.uuid4().hex[:12]}"
    r = post(app_url, "/v1/query", {"question": "How do I parse JSON?"}, headers={"X-Request-ID": rid})
    assert r.status_code == 200 and r.headers["x-request-id"] == rid
    logs = ray._private.worker._global_node.get_logs_dir_path()
    from pathlib import Path

    want, seen = {"Ingress", "Retriever", "Extractor", "Generator"}, set()
    deadline = time.monotonic() + 30
    while seen != want and time.monotonic() < deadline:
        for f in Path(logs, "serve").glob("replica_rayapp_*.log"):
            for line in f.read_text(errors="replace").splitlines():
                if rid in line and line.startswith("{"):
                    rec = json.loads(line)
                    if rec.get("request_id") == rid:
                        seen.add(rec["deployment"].split("_")[-1] if "deployment" in rec else f.name.split("_")[2])
        time.sleep(0.5)
    assert seen == want


def test_prometheus_metrics_through_rays_agent(app_url, metrics_url):
    import time

    assert post(app_url, "/v1/retrieve", {"question": "temporary directory", "top_k": 2}).status_code == 200
    assert post(app_url, "/v1/retrieve", {"question": "x", "bogus": 1}).status_code == 422
    wanted = {  # each a series that must appear (Ray's agent exports about every 10 s)
        "requests 200": lambda ln: ln.startswith("ray_rayapp_requests_total{") and 'route="/v1/retrieve"' in ln
        and 'status="200"' in ln,
        "requests 422": lambda ln: ln.startswith("ray_rayapp_requests_total{") and 'route="/v1/retrieve"' in ln
        and 'status="422"' in ln,
        "bm25 seconds": lambda ln: ln.startswith("ray_rayapp_stage_seconds_bucket{") and 'stage="bm25"' in ln,
        "fuse candidates": lambda ln: ln.startswith("ray_rayapp_stage_candidates_bucket{") and 'stage="fuse"' in ln,
        "latency by deployment": lambda ln: ln.startswith("ray_rayapp_request_seconds_count{")
        and 'deployment="Ingress"' in ln,
    }
    deadline, missing = time.monotonic() + 90, set(wanted)
    while missing and time.monotonic() < deadline:
        lines = [ln for ln in httpx.get(metrics_url, timeout=10).text.splitlines() if ln.startswith("ray_rayapp_")]
        missing = {name for name, ok in wanted.items() if not any(ok(ln) for ln in lines)}
        time.sleep(2)
    assert not missing


# ------------------------------------------------------------------------------ web page
def _chromium():
    import shutil

    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not (binary and driver):
        if os.environ.get("RAYAPP_REQUIRE_BROWSER"):
            pytest.fail("RAYAPP_REQUIRE_BROWSER is set but chromium / chromedriver are not installed")
        pytest.skip("headless browser test: install the Debian packages chromium and chromium-driver "
                    "(.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def test_web_page_end_to_end_in_headless_chromium(app_url):
    """Ask on the page: the answer appears with clickable citations that highlight their passage, the
    evidence, a bar per stage; the recommendation panel lists items and shows a bad id's error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _chromium()
    try:
        wait = WebDriverWait(browser, 240)
        browser.get(f"{app_url}/")
        wait.until(EC.text_to_be_present_in_element((By.ID, "info"), "stages:"))
        browser.find_element(By.ID, "question").send_keys("How do I serialize a Python object to a JSON string?")
        browser.find_element(By.ID, "ask-button").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "citation"))
        assert browser.find_element(By.ID, "answer").text.startswith("According to [")
        cites = browser.find_elements(By.CSS_SELECTOR, "#answer a.cite")
        assert cites, browser.find_element(By.ID, "answer").text
        cited = cites[0].get_attribute("data-id")
        cites[0].click()
        active = browser.find_elements(By.CSS_SELECTOR, ".passage.active")
        assert [p.get_attribute("data-id") for p in active] == [cited]
        assert len(browser.find_elements(By.CSS_SELECTOR, ".passage")) == 3
        bars = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#timings div.stage")]
        assert {"bm25", "dense", "extract", "generate"} <= set(bars)
        assert "total" in browser.find_element(By.ID, "timing-legend").text
        assert "compression" in browser.find_element(By.ID, "evidence").text

        browser.find_element(By.ID, "rec-items").send_keys("i1, i2")
        browser.find_element(By.ID, "rec-button").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "rec-status"), "item(s)"))
        assert len(browser.find_elements(By.CSS_SELECTOR, "#items li")) == 10
        box = browser.find_element(By.ID, "rec-items")
        box.clear()
        box.send_keys("no-such-item")
        browser.find_element(By.ID, "rec-button").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "rec-status"), "unknown item ids"))
        assert browser.find_element(By.ID, "rec-status").get_attribute("class") == "error"
    finally:
        browser.quit()


# ------------------------------------------------------------------------------ fuzzing
#: examples per operation and mode: the generating endpoints cost a decode each
FUZZ_EXAMPLES = {"/v1/query": 6, "/v1/chat/completions": 6}


def test_fuzz_every_endpoint_from_the_served_openapi_spec(app_url):
    """Schemathesis generates requests from ``/openapi.json``, valid and invalid ones, for every
    operation: none may get a 5xx or a stack trace. Bounded and derandomised (the same cases each run)."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(f"{app_url}/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    assert {"/v1/query", "/v1/retrieve", "/v1/rerank", "/v1/embeddings", "/v1/extract", "/v1/chat/completions",
            "/v1/recommend", "/readyz"} <= {op.path for op in ops}
    failures, sent = [], {}
    for op in ops:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=FUZZ_EXAMPLES.get(op.path, 20), deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(mode))
            def fuzz(case):
                r = case.call(base_url=app_url, timeout=300)
                sent[op.path] = sent.get(op.path, 0) + 1
                if r.status_code >= 500 or "Traceback" in r.text:
                    failures.append(f"{case.method} {op.path} {case.body!r:.300} -> {r.status_code} {r.text[:300]}")

            try:
                fuzz()
            except Unsatisfiable:  # no invalid request exists (a GET without parameters)
                assert mode == GenerationMode.NEGATIVE and op.method.upper() == "GET", op.path
    assert not failures, "\n".join(failures[:10])
    assert all(n > 0 for n in sent.values()) and len(sent) == len(ops)
