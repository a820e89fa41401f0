"""The main job's pipeline on a small slice of the corpus, with the real MiniLM and SmolLM2."""

import json

from rayapp.config import AppConfig, CorpusConfig, DemoConfig
from rayapp.demo import format_answer, run_demo

QUESTIONS = ["How do I serialize a Python object to a JSON string?",
             "How do I create a temporary directory that is removed automatically?"]


def test_demo_pipeline_cites_retrieved_passages_and_reuses_artifacts(ray_session, tmp_path, serve_port, smollm2_dir):
    cfg = DemoConfig(
        home=tmp_path / "home",
        corpus=CorpusConfig(modules=["json", "tempfile"]),
        app=AppConfig.model_validate({"generator": {"model": smollm2_dir, "max_new_tokens": 24},
                                      "http": {"port": serve_port}}),
        questions=QUESTIONS,
        results_dir=tmp_path / "results",
    )
    report = run_demo(cfg)
    assert [a["question"] for a in report["answers"]] == QUESTIONS
    for ans in report["answers"]:
        retrieved = {p["id"] for p in ans["passages"]}
        assert ans["citations"], ans["answer"]
        assert {c["id"] for c in ans["citations"]} <= retrieved
        assert "Cited:\n  [" in format_answer(ans)
    json_ans = report["answers"][0]
    assert any(p["title"].startswith("json") for p in json_ans["passages"])
    stages = {s["stage"]: s for s in report["stages"]}
    assert not stages["corpus"]["cached"] and not stages["embed+index"]["cached"]
    on_disk = json.loads((tmp_path / "results" / "demo.json").read_text())
    assert on_disk["answers"][0]["answer"] == json_ans["answer"]
    assert (tmp_path / "results" / "demo.md").read_text().startswith("# Main job stages")

    again = run_demo(cfg.model_copy(update={"questions": QUESTIONS[:1]}))
    stages = {s["stage"]: s for s in again["stages"]}
    assert stages["corpus"]["cached"] and stages["embed+index"]["cached"]
    assert again["index"]["path"] == report["index"]["path"]
    assert again["answers"][0]["answer"] == json_ans["answer"]  # greedy decoding: same answer
