"""The Recommender deployment with two replicas: an append taken by one is seen by both, through
the shared append log (``recommender.append_log``). The replicas run the ONNX backend (the app
tests cover torch)."""

from rayapp.config import RecommenderConfig
from tests.recommend.test_service import build_model_dir


def test_an_append_reaches_every_recommender_replica(ray_session, serve_port, tmp_path):
    from ray import serve

    from rayapp.serve._deployments import Recommender

    serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
    cfg = RecommenderConfig(model_dir=build_model_dir(tmp_path), append_log=tmp_path / "appends.jsonl",
                            backend="onnx")
    app = serve.deployment(Recommender).options(name="Recommender", num_replicas=2,
                                                ray_actor_options={"num_cpus": 0.05}).bind(cfg)
    handle = serve.run(app, name="recs", route_prefix=None)
    try:
        n = handle.recommend.remote(["i1"], None, 3).result()["memories"]
        assert handle.append.remote("newbie", ["i5", "i6", "i7"]).result()["memories_added"] == 2
        # Serve picks a replica per call: 12 calls reach both with probability 1 - 2 ** -11
        outs = [handle.recommend.remote(None, "newbie", 3).result() for _ in range(12)]
        assert all(o.get("history_length") == 3 and o["memories"] == n + 2 and o["mode"] == "raserec"
                   for o in outs), outs
    finally:
        serve.delete("recs")
