"""The serve benchmark's own pieces (the load, kill and hop runs are in test_faults / test_app)."""

import pytest
from pydantic import ValidationError

from rayapp.serve.bench import BenchServeConfig, recommend_users
from tests.recommend.test_service import build_model_dir


def test_recommend_endpoint_needs_a_recommender():
    with pytest.raises(ValidationError, match=r"'recommend' needs app.recommender.model_dir"):
        BenchServeConfig(endpoints=["retrieve", "recommend"])
    with pytest.raises(ValidationError, match=r"'recommend' needs app.recommender.model_dir"):
        BenchServeConfig(endpoints=["retrieve"], kills=[{"deployment": "Recommender", "endpoint": "recommend"}])
    assert BenchServeConfig(endpoints=["recommend"], app={"recommender": {"model_dir": "somewhere"}})


@pytest.mark.parametrize("endpoint,app,needle", [
    ("extract", {}, r"'extract' needs app.extractor.method"),
    ("rerank", {}, r"'rerank' needs app.rerank.model"),
    ("embeddings", {"embeddings": {"enabled": False}}, r"'embeddings' needs app.embeddings.enabled"),
])
def test_stage_endpoints_need_their_stage(endpoint, app, needle):
    with pytest.raises(ValidationError, match=needle):
        BenchServeConfig(endpoints=[endpoint], app=app)
    with pytest.raises(ValidationError, match=needle):
        BenchServeConfig(endpoints=["retrieve"], kills=[{"deployment": "Ingress", "endpoint": endpoint}], app=app)


def test_recommend_users_is_a_seeded_sample_of_the_served_histories(tmp_path):
    model_dir = build_model_dir(tmp_path)
    users = recommend_users(model_dir, 10)
    assert len(users) == len(set(users)) == 10 and set(users) <= {f"u{i}" for i in range(80)}
    assert recommend_users(model_dir, 10) == users and recommend_users(model_dir, 10, seed=1) != users
    assert len(recommend_users(model_dir, 500)) == 80


@pytest.mark.parametrize("name", ["bench_serve.yaml", "bench_serve_100k.yaml", "bench_serve_recommend.yaml",
                                  "bench_serve_stages.yaml", "bench_serve_funnel.yaml"])
def test_serve_bench_configs_load(name):
    from pathlib import Path

    from rayapp.config import load_config

    cfg = load_config(BenchServeConfig, Path(__file__).resolve().parents[2] / "configs" / name)
    assert cfg.endpoints and ("recommend" in cfg.endpoints) == (cfg.app.recommender.model_dir is not None)
