"""Stage deadlines: a stuck stage gives 504 naming it (never a hung client); a failing one 503.

The stages here are small Serve deployments that sleep or raise, bound into the real Ingress."""

import time

import httpx
import pytest

from rayapp.config import AppConfig


class StuckStage:
    """Answers ``ready``; ``retrieve`` / ``generate_stream`` sleep ``delay`` s (or raise)."""

    def __init__(self, retrieve_delay: float, generate_delay: float, fail: bool = False):
        self.retrieve_delay, self.generate_delay, self.fail = retrieve_delay, generate_delay, fail

    def ready(self) -> bool:
        return True

    async def retrieve(self, question, top_k):
        import asyncio

        if self.fail:
            raise RuntimeError("index shard lost")
        await asyncio.sleep(self.retrieve_delay)
        return {"hits": [{"id": "p1", "text": "a passage", "score": 1.0}], "timings": []}

    async def generate_stream(self, question, hits, max_new_tokens):
        import asyncio

        yield {"context_ids": ["p1"]}
        yield {"delta": "According to [1"}
        await asyncio.sleep(self.generate_delay)
        yield {"delta": "] never"}


@pytest.fixture(scope="module")
def stuck_url(ray_session, serve_port):
    from ray import serve

    from rayapp.serve._deployments import Ingress

    serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
    cfg = AppConfig.model_validate({"timeouts": {"retriever": 0.5, "generator": 1.0}, "embeddings": {"enabled": False}})
    opts = {"ray_actor_options": {"num_cpus": 0.05}}
    stage = serve.deployment(StuckStage).options(**opts)
    stuck = Ingress.options(name="StuckIngress", **opts).bind(
        cfg, stage.options(name="StuckRetriever").bind(30.0, 0.0), stage.options(name="FastGenerator").bind(0.0, 0.0))
    slow_gen = Ingress.options(name="SlowGenIngress", **opts).bind(
        cfg, stage.options(name="FastRetriever").bind(0.0, 0.0), stage.options(name="StuckGenerator").bind(0.0, 30.0))
    broken = Ingress.options(name="BrokenIngress", **opts).bind(
        cfg, stage.options(name="BrokenRetriever").bind(0.0, 0.0, True), stage.options(name="Gen").bind(0.0, 0.0))
    serve.run(stuck, name="stuck", route_prefix="/stuck")
    serve.run(slow_gen, name="slowgen", route_prefix="/slowgen")
    serve.run(broken, name="broken", route_prefix="/broken")
    yield f"http://127.0.0.1:{serve_port}"
    for name in ("stuck", "slowgen", "broken"):
        serve.delete(name)


def test_stuck_stage_is_504_naming_it(stuck_url):
    t0 = time.monotonic()
    r = httpx.post(f"{stuck_url}/stuck/v1/retrieve", json={"question": "q"}, timeout=60)
    assert r.status_code == 504, r.text
    assert r.json()["error"] == {"type": "stage_timeout", "stage": "retriever",
                                 "message": "retriever did not answer within 0.5 s"}
    assert time.monotonic() - t0 < 20  # the client got an answer long before the stage's 30 s


def test_stuck_stage_ends_a_stream_with_an_error_event(stuck_url):
    import json

    with httpx.stream("POST", f"{stuck_url}/stuck/v1/query", json={"question": "q", "stream": True}, timeout=60) as r:
        lines = [ln for ln in r.iter_lines() if ln]
    assert r.status_code == 200 and lines[0] == "event: error"
    assert json.loads(lines[1][len("data: "):])["stage"] == "retriever"


def test_generator_stuck_mid_stream(stuck_url):
    import json

    t0 = time.monotonic()
    with httpx.stream("POST", f"{stuck_url}/slowgen/v1/query", json={"question": "q", "stream": True}, timeout=60) as r:
        lines = [ln for ln in r.iter_lines() if ln]
    names = [ln[len("event: "):] for ln in lines if ln.startswith("event: ")]
    assert names == ["retrieval", "token", "error"], lines
    assert json.loads(lines[-1][len("data: "):]) == {"type": "stage_timeout", "stage": "generator",
                                                      "message": "generator did not answer within 1.0 s"}
    assert time.monotonic() - t0 < 20


def test_failing_stage_is_503_without_a_stack_trace(stuck_url):
    r = httpx.post(f"{stuck_url}/broken/v1/retrieve", json={"question": "q"}, timeout=60)
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["stage"] == "retriever" and err["type"] == "stage_unavailable" and "Traceback" not in r.text
