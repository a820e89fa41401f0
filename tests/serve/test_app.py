"""HTTP tests of the composed app: ingress -> retriever -> generator (real MiniLM and SmolLM2)."""

import httpx
import pytest

from rayapp.config import AppConfig


@pytest.fixture(scope="module")
def app_url(ray_session, small_index, smollm2_dir, serve_port):
    from ray import serve

    from rayapp.serve import APP_NAME, start_app

    cfg = AppConfig.model_validate({
        "generator": {"model": smollm2_dir, "max_new_tokens": 24},
        "retriever": {"top_k": 3},
        "limits": {"max_question_chars": 500, "max_top_k": 10, "max_new_tokens": 64},
        "http": {"port": serve_port},
    })
    yield start_app(cfg, small_index.path)
    serve.delete(APP_NAME)


def post(url, path, body, **kw):
    return httpx.post(f"{url}{path}", timeout=300, **({"json": body} if body is not None else {}), **kw)


def test_healthz(app_url):
    r = httpx.get(f"{app_url}/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_retrieve(app_url):
    r = post(app_url, "/v1/retrieve", {"question": "temporary directory context manager", "top_k": 2})
    assert r.status_code == 200
    body = r.json()
    assert len(body["hits"]) == 2 and body["hits"][0]["title"].startswith("tempfile")
    assert [t["stage"] for t in body["timings"]] == ["bm25", "dense", "fuse", "retrieve_total"]


def test_query_answers_with_citations_from_its_passages(app_url):
    r = post(app_url, "/v1/query", {"question": "How do I serialize a Python object to a JSON string?"})
    assert r.status_code == 200, r.text
    body = r.json()
    passage_ids = {p["id"] for p in body["passages"]}
    assert len(body["passages"]) == 3 and body["answer"]
    assert body["citations"], body["answer"]
    assert {c["id"] for c in body["citations"]} <= set(body["context_ids"]) <= passage_ids
    stages = [t["stage"] for t in body["timings"]]
    assert stages[-3:] == ["retrieve_total", "generate", "total"]
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


def test_non_json_body_is_4xx_json(app_url):
    r = post(app_url, "/v1/query", None, content=b"\xff\xfe not json", headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500 and "error" in r.json()


def test_unknown_route_is_404_json(app_url):
    r = httpx.get(f"{app_url}/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["message"] == "Not Found"


def test_openapi_is_served(app_url):
    paths = httpx.get(f"{app_url}/openapi.json").json()["paths"]
    assert {"/healthz", "/v1/retrieve", "/v1/query"} <= set(paths)
