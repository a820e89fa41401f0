"""The funnel as Serve deployments: FunnelRetriever (cluster BM25 + pre-ranker) -> Reranker, which also
answers /v1/rerank."""

import httpx
import pytest

from rayapp.config import AppConfig


@pytest.fixture(scope="module")
def funnel_url(ray_session, funnel_index, smollm2_dir, tiny_cross_dir, serve_port):
    from ray import serve

    from rayapp.serve import APP_NAME, start_app

    cfg = AppConfig.model_validate({
        "generator": {"model": smollm2_dir, "max_new_tokens": 8},
        "rerank": {"backend": "onnx"},  # the post-ranker on ONNX Runtime; its scores are checked against torch below
        "retriever": {"kind": "funnel", "top_k": 3,
                      "funnel": {"clusters": 2, "docs": 4, "passages": 3, "reranker": tiny_cross_dir,
                                 "reranker_max_length": 64}},
        "http": {"port": serve_port},
    })
    yield start_app(cfg, funnel_index.path)
    serve.delete(APP_NAME)


def test_funnel_retrieve_over_http(funnel_url):
    from ray import serve

    from rayapp.serve import APP_NAME

    assert "Reranker" in serve.status().applications[APP_NAME].deployments
    r = httpx.post(f"{funnel_url}/v1/retrieve", json={"question": "write rows to a CSV file", "top_k": 2}, timeout=300)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["hits"]) == 2 and all(h["stage"] == "funnel" and h["kind"] == "passage" for h in body["hits"])
    stages = [t["stage"] for t in body["timings"]]
    assert stages == ["encode_query", "clusters_bm25", "docs_dense", "passages_cross", "retrieve_total"]
    t = {x["stage"]: x for x in body["timings"]}
    assert t["clusters_bm25"]["n_out"] == 2 and t["docs_dense"]["n_out"] == 4 and t["passages_cross"]["n_out"] == 2


def test_funnel_feeds_the_rag_path(funnel_url):
    r = httpx.post(f"{funnel_url}/v1/query", json={"question": "How do I read a CSV file?"}, timeout=300)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["passages"]) == 3 and set(body["context_ids"]) <= {p["id"] for p in body["passages"]}


def test_rerank_bodies_of_the_serve_bench(funnel_url):
    from rayapp.serve.bench import run_load, stage_bodies

    bodies = stage_bodies(funnel_url, "rerank", ["write rows to a CSV file"])
    assert bodies[0]["query"] == "write rows to a CSV file" and len(bodies[0]["documents"]) == 3
    records = run_load(funnel_url, "rerank", bodies, clients=2, duration_s=1.0)
    assert records and {code for _, _, code in records} == {200}


def test_rerank_endpoint_scores_with_the_post_ranker(funnel_url, tiny_cross_dir):
    import math

    from rayapp.rerank import CrossEncoder

    docs = ["csv.writer writes rows to a CSV file.", {"text": "json.dumps returns a JSON string."},
            "tempfile makes temporary files."]
    r = httpx.post(f"{funnel_url}/v1/rerank", timeout=300,
                   json={"query": "write rows to a CSV file", "documents": docs, "top_n": 2, "return_documents": True})
    assert r.status_code == 200, r.text
    body = r.json()
    direct = CrossEncoder.from_pretrained(tiny_cross_dir, 64).score(
        "write rows to a CSV file", [d if isinstance(d, str) else d["text"] for d in docs])
    order = sorted(range(3), key=lambda i: -direct[i])[:2]
    assert [x["index"] for x in body["results"]] == order  # the served scores are the model's, best first
    for x in body["results"]:
        assert math.isclose(x["logit"], float(direct[x["index"]]), abs_tol=1e-4)
        assert math.isclose(x["relevance_score"], 1 / (1 + math.exp(-x["logit"])), rel_tol=1e-6)
        assert x["document"]["text"]
    assert body["model"] and body["id"].startswith("rerank-")


@pytest.mark.parametrize("body,field,needle", [
    ({"query": "q", "documents": []}, "documents", "at least 1 item"),
    ({"query": "  ", "documents": ["a"]}, "query", "must not be blank"),
    ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n", "greater than or equal to 1"),
    ({"query": "q", "documents": ["a"], "model": "nope"}, "model", "is not served here"),
])
def test_bad_rerank_request_is_4xx_with_field(funnel_url, body, field, needle):
    r = httpx.post(f"{funnel_url}/v1/rerank", json=body, timeout=60)
    assert 400 <= r.status_code < 500, r.text
    err = r.json()["error"]
    assert err["field"] == field and needle in err["message"], err
