"""The composed app with ``generator.backend: onnx`` (ONNX Runtime GenAI): the same answers over
HTTP as the engine gives in process, streaming, batching, and PICA refused with 422."""

import json

import httpx
import pytest

from rayapp.config import AppConfig

pytest.importorskip("onnxruntime_genai")


@pytest.fixture(scope="module")
def onnx_app(ray_session, small_index, smollm2_dir, serve_port):
    from ray import serve

    from rayapp.serve import APP_NAME, start_app

    cfg = AppConfig.model_validate({
        "generator": {"model": "smollm2", "backend": "onnx", "max_new_tokens": 16, "served_name": "smollm2"},
        "retriever": {"top_k": 3},
        "http": {"port": serve_port},
    })
    yield start_app(cfg, small_index.path), cfg
    serve.delete(APP_NAME)


def chat(url, content, **kw):
    return httpx.post(f"{url}/v1/chat/completions", timeout=300,
                      json={"model": "smollm2", "messages": [{"role": "user", "content": content}], **kw})


def test_query_answers_with_a_citation_as_the_engine_does(onnx_app):
    from rayapp.generate import OnnxBackend
    from rayapp.types import Hit

    url, cfg = onnx_app
    r = httpx.post(f"{url}/v1/query", json={"question": "How do I serialize a Python object to a JSON string?"},
                   timeout=300)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"].startswith("According to [") and body["citations"]
    text = {p["id"]: p for p in body["passages"]}
    hits = [Hit(**{k: text[i][k] for k in ("id", "kind", "score", "stage", "text")}) for i in body["context_ids"]]
    local = OnnxBackend(cfg.generator).answer("How do I serialize a Python object to a JSON string?", hits)
    assert body["answer"] == local["text"]


def test_chat_batched_and_streamed(onnx_app):
    from concurrent.futures import ThreadPoolExecutor

    url, _ = onnx_app
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda q: chat(url, q, max_tokens=8), ["Hi", "What is csv?", "Hi", "Name a colour."]))
    assert all(r.status_code == 200 for r in outs), [r.text for r in outs]
    texts = [r.json()["choices"][0]["message"]["content"] for r in outs]
    assert texts[0] == texts[2] and all(texts)  # greedy: the same question gets the same answer in any batch
    with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=300,
                      json={"model": "smollm2", "messages": [{"role": "user", "content": "What is csv?"}],
                            "max_tokens": 8, "stream": True}) as r:
        assert r.status_code == 200
        events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    streamed = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert streamed == texts[1]


def test_pica_is_refused_with_the_backend_named(onnx_app):
    url, _ = onnx_app
    r = chat(url, "What is a tuple?", max_tokens=8,
             pica={"demos": [{"query": "What is a list?", "answer": "An ordered sequence."}]})
    assert r.status_code == 422, r.text
    assert "needs generator.backend 'hf'" in r.text and "'onnx'" in r.text
