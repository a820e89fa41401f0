"""The funnel as Serve deployments: FunnelRetriever (cluster BM25 + pre-ranker) -> PostRanker."""

import httpx
import pytest

from rayapp.config import AppConfig


@pytest.fixture(scope="module")
def funnel_url(ray_session, funnel_index, smollm2_dir, tiny_cross_dir, serve_port):
    from ray import serve

    from rayapp.serve import APP_NAME, start_app

    cfg = AppConfig.model_validate({
        "generator": {"model": smollm2_dir, "max_new_tokens": 8},
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

    assert "PostRanker" in serve.status().applications[APP_NAME].deployments
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
