"""The Reranker deployment on each runtime (``rerank.backend``): calls batched together keep their
own scores, which are the torch cross-encoder's."""

import numpy as np
import pytest


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_the_reranker_deployment_on_each_backend(ray_session, serve_port, tiny_cross_dir, backend):
    from ray import serve

    from rayapp.rerank import CrossEncoder
    from rayapp.serve._deployments import Reranker

    serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
    app = serve.deployment(Reranker).options(name="Reranker", ray_actor_options={"num_cpus": 0.05}).bind(
        tiny_cross_dir, 64, 32, 8, 0.05, backend)
    handle = serve.run(app, name="rerank-" + backend, route_prefix=None)
    try:
        calls = [("q one", ["a b", "c"]), ("q two", ["d"]), ("write rows to a CSV file", ["csv.writer", "json"])]
        got = [r.result() for r in [handle.score.remote(q, ts) for q, ts in calls]]  # sent together: one batch
        want = CrossEncoder.from_pretrained(tiny_cross_dir, 64)
        for (q, ts), g in zip(calls, got):
            assert len(g) == len(ts) and np.allclose(g, want.score(q, ts), atol=1e-4)
    finally:
        serve.delete("rerank-" + backend)
