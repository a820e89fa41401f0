"""Zero-downtime swaps of the running app: a new index version under traffic, then a delta index
with new documents. Every request is counted; the moment answers come from the new version is
measured from the client side."""

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from rayapp.config import AppConfig

NEW_DOC = {"title": "quokkalib.telemetry",
           "text": "The quokkalib telemetry module batches zyxwv sensor readings and uploads them every "
                   "ninety seconds over a compressed channel. Call quokkalib.telemetry.flush() to send "
                   "the pending zyxwv readings at once."}


class Traffic:
    """``clients`` threads posting /v1/retrieve in a loop; every response is recorded with its time."""

    def __init__(self, url: str, question: str, clients: int = 3):
        self.url, self.question, self.stop = url, question, threading.Event()
        self.log: list[tuple[float, int, dict]] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(timeout=120) as c:
            while not self.stop.is_set():
                try:
                    r = c.post(f"{self.url}/v1/retrieve", json={"question": self.question, "top_k": 3})
                    self.log.append((time.monotonic(), r.status_code, r.json() if r.status_code == 200 else {"text": r.text}))
                except httpx.HTTPError as e:
                    self.log.append((time.monotonic(), 0, {"error": repr(e)}))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=150)

    def failures(self) -> list:
        return [(s, b) for _, s, b in self.log if s != 200]


@pytest.fixture(scope="module")
def app(ray_session, small_index, tiny_lm_dir, serve_port):
    from ray import serve

    from rayapp.serve import APP_NAME, start_app

    cfg = AppConfig.model_validate({
        "generator": {"model": tiny_lm_dir, "max_new_tokens": 4},
        "retriever": {"top_k": 3},
        "http": {"port": serve_port},
        "deployments": {"Retriever": {"num_replicas": 2, "num_cpus": 0.1}, "Ingress": {"num_cpus": 0.1},
                        "Generator": {"num_cpus": 0.1}, "Embedder": {"num_cpus": 0.1}},
    })
    url = start_app(cfg, small_index.path)
    yield cfg, url
    serve.delete(APP_NAME)


@pytest.fixture(scope="module")
def second_index(ray_session, home):
    """Another version: the small corpus plus one more module (a different corpus version)."""
    from rayapp.config import CorpusConfig, EmbedConfig, IndexConfig
    from rayapp.data import build_corpus
    from rayapp.index import build_index
    from tests.conftest import SMALL_MODULES

    corpus = build_corpus(CorpusConfig(modules=[*SMALL_MODULES, "shutil"]), home)
    return build_index(corpus, EmbedConfig(batch_size=32), IndexConfig(), home)


def test_swap_to_a_new_index_version_under_traffic_fails_nothing(app, small_index, second_index):
    from rayapp.serve import deploy_app, served_index_version

    cfg, url = app
    old, new = small_index.version, second_index.version
    assert served_index_version() == old
    with Traffic(url, "copy a directory tree recursively") as traffic:
        time.sleep(3)
        t_swap = time.monotonic()
        out = deploy_app(cfg, second_index.path)
        t_done = time.monotonic()
        time.sleep(3)
    assert out["swapped"] and out["index_version"] == new
    assert traffic.failures() == [], traffic.failures()[:3]
    versions = [(t, b["index_version"]) for t, _, b in traffic.log]
    before = [v for t, v in versions if t < t_swap]
    assert before and set(before) == {old}
    first_new = min(t for t, v in versions if v == new)
    # once the update returns, every replica serves the new version
    assert {v for t, v in versions if t > t_done + 0.5} == {new}
    assert served_index_version() == new
    # the new version's own documents are found: shutil is only in the second corpus
    hits = [b["hits"] for t, _, b in traffic.log if t > t_done + 0.5]
    assert any(h["title"].startswith("shutil") for h in hits[-1])
    print(f"swap: {len(traffic.log)} requests, 0 failed; new version answered {first_new - t_swap:.2f} s "
          f"after the update began; update returned after {t_done - t_swap:.2f} s")


def test_added_documents_become_retrievable_without_a_rebuild(app, second_index, home, tmp_path):
    from rayapp.index.delta import build_delta, list_deltas
    from rayapp.serve import deploy_app

    cfg, url = app
    docs = tmp_path / "new.jsonl"
    docs.write_text(json.dumps(NEW_DOC) + "\n" + "{not json\n", encoding="utf-8")
    with Traffic(url, "how do I send pending zyxwv sensor readings at once", clients=2) as traffic:
        time.sleep(1)
        t0 = time.monotonic()
        delta = build_delta(second_index.path, docs, home)
        deploy_app(cfg, second_index.path, list_deltas(home, second_index.path))
        t_done = time.monotonic()
        time.sleep(2)
    assert delta.manifest["counts"]["passages"] >= 1
    assert traffic.failures() == [], traffic.failures()[:3]
    found = [t for t, _, b in traffic.log if any(h["title"] == NEW_DOC["title"] for h in b["hits"])]
    assert found, "the added document was never retrieved"
    assert min(found) > t0 and all(b["delta_versions"] == [delta.version] for t, _, b in traffic.log if t > t_done + 0.5)
    # merged by reciprocal rank with the base index's list: in the top 3 of every answer from then on
    after = [[h["title"] for h in b["hits"]] for t, _, b in traffic.log if t > t_done + 0.5]
    assert after and all(NEW_DOC["title"] in titles[:2] for titles in after), after[:3]
    # the bad line was quarantined and counted, not fatal
    corpus = json.loads((Path(delta.manifest["corpus_path"]) / "manifest.json").read_text())
    assert corpus["counts"]["quarantined"] == 1 and corpus["counts"]["documents"] == 1
    print(f"delta: retrievable {min(found) - t0:.2f} s after the add began (build + roll {t_done - t0:.2f} s)")


def test_a_delta_from_another_embedder_is_refused(small_index, home, tmp_path, ray_session):
    from rayapp.index import LoadedIndex
    from rayapp.index.delta import DeltaError, check_delta

    base = LoadedIndex(small_index.path)
    other = LoadedIndex(small_index.path)
    other.manifest = {**other.manifest, "embedder": {**other.manifest["embedder"], "path": "/elsewhere"}}
    with pytest.raises(DeltaError, match="was embedded with /elsewhere"):
        check_delta(base, other)
