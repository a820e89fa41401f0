"""Session-scoped fixtures: one local Ray cluster, the real MiniLM and SmolLM2, tiny random models.

Tests marked ``multinode`` build their own ``ray.cluster_utils.Cluster`` and run in a separate
pytest process (``make test`` runs both); they never share a process with ``ray_session``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
REPO = TESTS_DIR.parent
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SMALL_MODULES = ["json", "csv", "tempfile"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


METRICS_PORT = free_port()


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if ray.is_initialized():
        yield ray
        return
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _metrics_export_port=METRICS_PORT,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                                  "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(REPO)])}},
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def metrics_url(ray_session) -> str:
    """Prometheus endpoint of the test cluster's metrics agent (Ray exports every ``ray.util.metrics``
    series there, Serve's and rayapp's)."""
    return f"http://127.0.0.1:{METRICS_PORT}/metrics"


@pytest.fixture(scope="session")
def serve_port() -> int:
    """One HTTP port for every Serve test of the session (Serve's HTTP options are cluster-wide)."""
    return free_port()


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rayapp-home")


@pytest.fixture(scope="session")
def small_corpus(ray_session, home):
    from rayapp.config import CorpusConfig
    from rayapp.data import build_corpus

    return build_corpus(CorpusConfig(modules=SMALL_MODULES), home)


@pytest.fixture(scope="session")
def small_index(small_corpus, home):
    from rayapp.config import EmbedConfig, IndexConfig
    from rayapp.index import build_index

    return build_index(small_corpus, EmbedConfig(batch_size=32), IndexConfig(), home)


@pytest.fixture(scope="session")
def minilm():
    from rayapp.models import load_sentence_transformer

    return load_sentence_transformer("minilm", 256)


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    from rayapp.models import resolve_generator

    return resolve_generator("smollm2")


@pytest.fixture(scope="session")
def tiny_lm_dir(smollm2_dir, tmp_path_factory) -> str:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer and chat template: for mechanics."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> str:
    """A randomly initialised 2-layer BERT with MiniLM's tokenizer: for encoder mechanics."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from rayapp.models import resolve_embedder

    tok = AutoTokenizer.from_pretrained(resolve_embedder("minilm"))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=512)
    out = tmp_path_factory.mktemp("tiny-bert")
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_cross_dir(tiny_bert_dir, tmp_path_factory) -> str:
    """A seeded, untrained cross-encoder folder (tiny BERT + one-logit head): for mechanics."""
    import torch

    from rayapp.rerank import CrossEncoder

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-cross")
    CrossEncoder.from_pretrained(tiny_bert_dir, num_labels=1).save(out)
    return str(out)


@pytest.fixture(scope="session")
def funnel_index(small_corpus, home):
    """The small corpus's index with FunnelRAG's cluster BM25 and document vectors."""
    from rayapp.config import EmbedConfig, IndexConfig
    from rayapp.index import build_index

    return build_index(small_corpus, EmbedConfig(batch_size=32), IndexConfig(funnel=True), home)
