"""The Serve deployments. Stages do not know they are served: each deployment wraps a stage class.

Ingress (FastAPI) validates every request and maps every failure to a JSON error body:
``{"error": {"type", "message", "field"?}}``. Bad input is 4xx, a failing stage is 503 naming the
stage; no response carries a stack trace.
"""


import asyncio
import logging
import threading
import time
import json
import uuid
from typing import Any, Literal, Optional, Union

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from ray import serve
from ray.serve.handle import DeploymentHandle

from rayapp.config import AppConfig, Demo, ExtractorConfig, GeneratorConfig, LimitsConfig, RecommenderConfig, RetrieverConfig
from rayapp.serve import _state
from rayapp.serve._auth import Guard
from rayapp.types import Hit, StageTiming

# a child of Serve's logger: its records carry the request id, route and replica (JSON encoding)
log = logging.getLogger("ray.serve.rayapp")


def _threads() -> int:
    """Threads for a replica's model runtime: ``OMP_NUM_THREADS``, which Ray sets from the
    replica's ``num_cpus`` (1 when unset)."""
    import os

    return int(os.environ.get("OMP_NUM_THREADS") or 1)


class _Ready:
    """``ready()`` answers once the deployment's constructor has finished (models loaded): ``/readyz``."""

    def ready(self) -> bool:
        return True


class _Versioned(_Ready):
    """A retriever over one index version plus its deltas, set by the deployment's ``user_config``
    ``{"index_path": ..., "deltas": [...]}``. A new user_config (``serve.run`` / ``serve deploy`` of
    the same app with another version) is an in-place update: :meth:`reconfigure` loads the new
    version in a thread while the current one keeps answering, then swaps one reference, so no
    request sees a half-loaded index. Delta indexes (:func:`rayapp.index.delta.build_delta`) are
    searched beside the main index and their hits merged by reciprocal rank."""

    def __init__(self, cfg: RetrieverConfig):
        self.cfg, self.current, self._models = cfg, None, {}
        self.encoder_backend: Optional[str] = None

    def ready(self) -> bool:
        return self.current is not None

    async def reconfigure(self, config: dict[str, Any]) -> None:
        index_path, deltas = config["index_path"], list(config.get("deltas") or [])
        self.current = await asyncio.to_thread(self._load, index_path, deltas)
        log.info("serving index %s (+%d deltas, %d passages)", self.current["version"], len(deltas),
                 self.current["passages"])

    def _encoder(self, emb: dict[str, Any]):
        """The index's query encoder (one per embedder, kept across index versions), by
        ``retriever.query_encoder``; ``self.encoder_backend`` says which one runs."""
        key = (emb["path"], emb["max_seq_length"])
        if key not in self._models:
            self._models[key] = self._load_encoder(emb["path"], emb["max_seq_length"])
        return self._models[key]

    def _load_encoder(self, path: str, max_seq_length: int):
        from rayapp.models._onnx import load_text_encoder

        enc = load_text_encoder(path, max_seq_length, self.cfg.query_encoder, threads=_threads())
        self.encoder_backend = enc.backend
        return enc.encode

    def _load(self, index_path: str, deltas: list[str]) -> dict[str, Any]:
        from rayapp.index import LoadedIndex
        from rayapp.index.delta import check_delta
        from rayapp.retrieve import HybridRetriever

        index = LoadedIndex(index_path)
        encode = self._encoder(index.manifest["embedder"])
        extra = []
        for d in deltas:
            dix = LoadedIndex(d)
            check_delta(index, dix)
            extra.append(HybridRetriever(dix, self.cfg, encode))
        return {"version": index.manifest["version"], "index": index, "encode": encode,
                "main": self._main(index, encode), "deltas": extra,
                "delta_versions": [x.index.manifest["version"] for x in extra],
                "passages": len(index) + sum(len(x.index) for x in extra)}

    def _main(self, index, encode):
        raise NotImplementedError

    def _answer(self, cur: dict[str, Any], hits: list[Hit], timings: list, question: str, top_k: int,
                query_vec=None) -> dict[str, Any]:
        from rayapp.retrieve import merge_hits

        if cur["deltas"]:
            t0 = time.perf_counter()
            lists = [hits] + [d.retrieve(question, top_k, query_vec=query_vec)[0] for d in cur["deltas"]]
            hits = merge_hits(lists, top_k, self.cfg.rrf_k)
            timings.append(StageTiming("deltas", round(time.perf_counter() - t0, 6), sum(map(len, lists)), len(hits)))
        log.info("retrieve top_k=%d -> %d hits in %.1f ms (index %s)", top_k, len(hits),
                 1e3 * sum(t.seconds for t in timings), cur["version"])
        return {"hits": [h.to_dict() for h in hits], "timings": [t.to_dict() for t in timings],
                "index_version": cur["version"], "delta_versions": cur["delta_versions"]}

    def info(self) -> dict[str, Any]:
        cur = self.current
        return {"passages": cur["passages"], "index_version": cur["version"], "delta_versions": cur["delta_versions"],
                "query_encoder": self.encoder_backend}


class Retriever(_Versioned):
    """Hybrid BM25 + dense retrieval (RRF) over the served index version. Concurrent calls share
    one pass of each stage (``@serve.batch``, ``retriever.max_batch_size`` calls waiting up to
    ``retriever.batch_wait_timeout_s``): the batch's questions are encoded together (stage
    ``encode_query``, ``n_in`` = the batch size), then BM25 and faiss each search once for all of
    them (:meth:`~rayapp.retrieve.HybridRetriever.retrieve_many`); fusion and deltas go per question."""

    def __init__(self, cfg: RetrieverConfig):
        super().__init__(cfg)
        self.retrieve.set_max_batch_size(cfg.max_batch_size)
        self.retrieve.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)

    def _main(self, index, encode):
        from rayapp.retrieve import HybridRetriever

        return HybridRetriever(index, self.cfg, encode)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def retrieve(self, questions: list[str], top_ks: list[int]) -> list[dict[str, Any]]:
        # Runs on the replica's event loop, on purpose: while a batch encodes, the calls that arrive
        # queue up and the next batch takes them all. In a worker thread (asyncio.to_thread) the loop
        # handed calls over one or two at a time (batches of 1.5 calls, no gain; BENCHMARKS.md).
        # Each request's own context (its request id) is set again for its log line.
        import numpy as np

        contexts = serve.context._get_serve_batch_request_context()
        contexts = contexts if len(contexts) == len(questions) else [None] * len(questions)
        cur = self.current  # one version for the whole batch, even if a swap lands meanwhile
        head, vecs = [], [None] * len(questions)
        if self.cfg.use_dense:
            t0 = time.perf_counter()
            vecs = np.asarray(cur["encode"](questions), dtype=np.float32).reshape(len(questions), -1)
            head = [StageTiming("encode_query", round(time.perf_counter() - t0, 6), len(questions), len(questions))]
        found = cur["main"].retrieve_many(questions, top_ks, vecs if self.cfg.use_dense else None)
        out = []
        for question, top_k, vec, ctx, (hits, timings) in zip(questions, top_ks, vecs, contexts, found):
            if ctx is not None:  # the batch's task has its own copy of the context: set it per request
                serve.context._serve_request_context.set(ctx)
            out.append(self._answer(cur, hits, head + timings, question, top_k, vec))
        return out


class Reranker(_Ready):
    """A cross-encoder scoring (question, passage) pairs: the funnel's post-ranker and ``/v1/rerank``.
    Calls arriving within the batch wait share forward passes (``@serve.batch``): their pairs are
    scored together, length-sorted, ``pair_batch`` at a time."""

    def __init__(self, reranker: str, max_length: int, pair_batch: int = 32, max_batch_size: int = 8,
                 batch_wait_timeout_s: float = 0.01, backend: str = "torch"):
        if backend == "onnx":
            from rayapp.rerank._onnx import OnnxCrossEncoder

            self.cross = OnnxCrossEncoder(reranker, max_length, threads=_threads())
        else:
            from rayapp.rerank import CrossEncoder

            self.cross = CrossEncoder.from_pretrained(reranker, max_length)
        self.pair_batch = pair_batch
        self.score.set_max_batch_size(max_batch_size)
        self.score.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def score(self, questions: list[str], texts: list[list[str]]) -> list[list[float]]:
        qs = [q for q, ts in zip(questions, texts) for _ in ts]
        flat = [t for ts in texts for t in ts]
        scores = (await asyncio.to_thread(self.cross.score_pairs, qs, flat, self.pair_batch)).tolist() if flat else []
        log.info("rerank %d pairs from %d requests", len(flat), len(texts))
        out, i = [], 0
        for ts in texts:
            out.append(scores[i: i + len(ts)])
            i += len(ts)
        return out


class Embedder(_Ready):
    """``/v1/embeddings``: a sentence-transformers model; calls arriving within the batch wait are
    encoded in one pass (``@serve.batch``). Vectors are L2-normalised, after Matryoshka truncation
    when ``dimensions`` is asked for."""

    def __init__(self, model: str, max_seq_length: int, max_batch_size: int = 32, batch_wait_timeout_s: float = 0.01,
                 backend: str = "auto"):
        from rayapp.models._onnx import load_text_encoder

        self.model = load_text_encoder(model, max_seq_length, backend, threads=_threads())
        self.dim = self.model.dim
        self.embed.set_max_batch_size(max_batch_size)
        self.embed.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def info(self) -> dict[str, Any]:
        return {"dimensions": self.dim, "backend": self.model.backend}

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def embed(self, texts: list[list[str]], dims: list[Optional[int]]) -> list[dict[str, Any]]:
        import numpy as np

        flat = [t for ts in texts for t in ts]
        vecs = await asyncio.to_thread(self.model.encode, flat, 32)
        tokens = self.model.count_tokens(flat)
        log.info("embed %d texts from %d requests", len(flat), len(texts))
        out, i = [], 0
        for ts, d in zip(texts, dims):
            v = vecs[i: i + len(ts), : d or self.dim]
            v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            out.append({"vectors": v.astype(np.float32), "tokens": sum(tokens[i: i + len(ts)])})
            i += len(ts)
        return out


class FunnelRetriever(_Versioned):
    """FunnelRAG over the served funnel index version: cluster BM25 and the document pre-ranker run
    here, the passage post-ranker in its own deployment (``post_ranker`` handle) when it is the
    cross-encoder."""

    def __init__(self, cfg: RetrieverConfig, post_ranker: Optional[DeploymentHandle] = None):
        super().__init__(cfg)
        self.post_ranker = post_ranker if cfg.funnel.post_ranker == "cross" else None

    def _main(self, index, encode):
        from rayapp.retrieve.funnel import FunnelRetriever as _Funnel

        return _Funnel(index, self.cfg.funnel, encode, remote_post=self.post_ranker is not None)

    async def retrieve(self, question: str, top_k: int) -> dict[str, Any]:
        from rayapp.retrieve.funnel import passage_hits, top_rows

        cur = self.current
        funnel = cur["main"]
        if self.post_ranker is None:
            hits, timings = funnel.retrieve(question, top_k)
        else:
            t, _, _, _, _, cand = funnel.coarse(question)
            t0 = time.perf_counter()
            texts = [funnel.index.texts[p] for p in cand]
            scores = await self.post_ranker.score.remote(question, texts)
            rows, kept = top_rows(cand, scores, top_k)
            t.rows.append(StageTiming("passages_cross", round(time.perf_counter() - t0, 6), len(cand), len(rows)))
            hits, timings = passage_hits(funnel.index, rows, kept, "funnel"), t.rows
        return self._answer(cur, hits, timings, question, top_k)


class Extractor(_Ready):
    """The extract stage: passages + question -> evidence, rationale (for logs) and compression
    ratio; the generator then sees only the evidence, mapped back onto the passages it came from."""

    def __init__(self, cfg: ExtractorConfig):
        from rayapp.extract.model import make_extractor

        self.cfg, self.fn = cfg, make_extractor(cfg)
        # one extraction at a time: Serve runs concurrent calls of a sync method in threads, and N
        # runnable model threads on few cores starve everything else there (a replacement replica
        # starting beside this one took 27 s to reach its constructor); waiting calls take no CPU
        self._lock = threading.Lock()

    def extract(self, question: str, hits: list[dict[str, Any]]) -> dict[str, Any]:
        import math

        from rayapp.extract.model import evidence_hits

        with self._lock:
            t0 = time.perf_counter()
            ev = self.fn(question, [h.get("text") or "" for h in hits])
        log.info("extract %s: %d passages -> %d evidence characters in %.1f ms", self.cfg.method, len(hits),
                 len(ev.evidence), 1e3 * (time.perf_counter() - t0))
        return {"method": self.cfg.method, "evidence": ev.evidence, "rationale": ev.rationale,
                "compression": ev.compression if math.isfinite(ev.compression) else None,
                "hits": evidence_hits(hits, ev.evidence), "seconds": round(time.perf_counter() - t0, 6)}


class Recommender(_Ready):
    """Sequential recommendation (SASRec, or RaSeRec with its memory bank): top-k items and online
    appends of interactions, seen by the next request (with several replicas, through the shared
    ``append_log`` that each replica reads before a request)."""

    def __init__(self, cfg: RecommenderConfig):
        from rayapp.recommend.service import RecommenderService

        self.svc = RecommenderService(cfg.model_dir, cfg.max_history, cfg.append_log, cfg.backend)

    def recommend(self, items: Optional[list[str]], user: Optional[str], k: int) -> dict[str, Any]:
        from rayapp.recommend.service import RecommendRequestError

        log.info("recommend k=%d user=%s items=%d", k, user is not None, len(items or []))
        try:
            return self.svc.recommend(items=items, user=user, k=k)
        except RecommendRequestError as e:
            return {"error": {"field": e.field, "message": str(e)}}

    def append(self, user: str, items: list[str]) -> dict[str, Any]:
        from rayapp.recommend.service import RecommendRequestError

        try:
            return self.svc.append(user, items)
        except RecommendRequestError as e:
            return {"error": {"field": e.field, "message": str(e)}}


class Generator(_Ready):
    """The generator behind a deployment: the RAG answerer (``generate``), OpenAI-style chat
    completions batched across concurrent requests (``chat``, ``@serve.batch``), token streaming
    (``chat_stream``) and PICA (``pica``). One model per replica, shared by all four."""

    def __init__(self, cfg: GeneratorConfig):
        from rayapp.generate import Generator as _Rag
        from rayapp.generate import HFBackend, make_backend

        self.cfg = cfg
        self.engine = make_backend(cfg)
        self.is_hf = isinstance(self.engine, HFBackend)
        # the RAG answer (answer prefix, first-citation constraint): hf and onnx; vllm answers plainly
        self._answer = (_Rag(cfg, self.engine.tok, self.engine.model).generate if self.is_hf
                        else getattr(self.engine, "answer", None))
        self.chat.set_max_batch_size(cfg.max_batch_size)
        self.chat.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)
        self._pica = None
        self._task_vectors: dict[str, Any] = {}
        self.batch_sizes: list[int] = []

    def generate(self, question: str, hits: list[dict[str, Any]], max_new_tokens: Optional[int]) -> dict[str, Any]:
        if self._answer is not None:
            out = self._answer(question, [Hit(**h) for h in hits], max_new_tokens)
        else:
            from rayapp.generate import Sampling, build_messages, parse_citations

            t0 = time.perf_counter()
            messages, used = build_messages(question, [Hit(**h) for h in hits], self.cfg)
            c = self.engine.complete([(messages, Sampling(max_tokens=max_new_tokens or self.cfg.max_new_tokens))])[0]
            out = {"text": c.text, "citations": parse_citations(c.text, used), "context_ids": [h.id for h in used],
                   "n_prompt_tokens": c.prompt_tokens, "n_new_tokens": c.completion_tokens,
                   "seconds": round(time.perf_counter() - t0, 6)}
        log.info("generate %d prompt + %d new tokens in %.1f ms", out["n_prompt_tokens"], out["n_new_tokens"],
                 1e3 * out["seconds"])
        return out

    def generate_stream(self, question: str, hits: list[dict[str, Any]], max_new_tokens: Optional[int]):
        """The RAG answer token by token: ``{"context_ids"}``, then ``{"delta"}`` chunks (the answer
        prefix first), then ``{"finish_reason", "usage", "citations"}``. The first-citation constraint
        of :meth:`generate` is not applied while streaming."""
        from rayapp.generate import ChatMessage, Sampling, build_messages, parse_citations

        messages, used = build_messages(question, [Hit(**h) for h in hits], self.cfg)
        yield {"context_ids": [h.id for h in used]}
        prefix = self.cfg.answer_prefix if self._answer is not None else ""
        text = prefix
        if prefix:
            yield {"delta": prefix}
        sampling = Sampling(max_tokens=max_new_tokens or self.cfg.max_new_tokens)
        for piece in self.engine.stream([ChatMessage(**m) for m in messages], sampling, prefix=prefix):
            if "delta" in piece:
                text += piece["delta"]
                yield piece
            else:
                log.info("generate (stream) %d new tokens", piece["usage"]["completion_tokens"])
                yield {**piece, "citations": parse_citations(text, used)}

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05)
    async def chat(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from rayapp.generate import ChatMessage, Sampling

        batch = [([ChatMessage(**m) for m in r["messages"]], Sampling(**r["sampling"])) for r in requests]
        self.batch_sizes.append(len(batch))
        out = await asyncio.to_thread(self.engine.complete, batch)
        return [c.to_dict() for c in out]

    def chat_stream(self, request: dict[str, Any]):
        from rayapp.generate import ChatMessage, Sampling

        yield from self.engine.stream([ChatMessage(**m) for m in request["messages"]], Sampling(**request["sampling"]))

    def stats(self) -> dict[str, Any]:
        return {"batch_sizes": list(self.batch_sizes)}

    def _pica_model(self):
        if self._pica is None:
            from rayapp.generate import Pica

            if not self.is_hf:
                raise ValueError("pica: needs generator.backend 'hf' (it hooks the model's o_proj layers)")
            self._pica = Pica(self.engine.tok, self.engine.model, self.cfg.pica)
        return self._pica

    def _task_vector(self, task: str):
        if task not in self._task_vectors:
            from rayapp.generate import TaskVectorStore
            from rayapp.models import model_cache_dir

            p, demos = self._pica_model(), self.cfg.pica_tasks[task]
            store = TaskVectorStore(self.cfg.pica_vectors_dir or model_cache_dir() / "pica")
            key = p.task_key(demos)
            vec = store.load(task, key)
            if vec is None:
                vec = p.task_vector(demos)
                store.save(task, key, vec, {"model": self.cfg.model, "demos": len(demos)})
            self._task_vectors[task] = vec
        return self._task_vectors[task]

    async def pica(self, request: dict[str, Any]) -> dict[str, Any]:
        """PICA over the last user message (the system message, if any, replaces PICA's)."""
        from rayapp.config import Demo

        p = self._pica_model()
        opts = request["pica"]
        task = opts.get("task")
        demos = [Demo(**d) for d in opts["demos"]] if opts.get("demos") else self.cfg.pica_tasks[task]
        vector = self._task_vector(task) if (opts.get("mode") or self.cfg.pica.mode) == "task" else None
        system = next((m["content"] for m in request["messages"] if m["role"] == "system"), None)
        query = request["messages"][-1]["content"]
        r = await asyncio.to_thread(p.generate, query, demos, request["sampling"]["max_tokens"], system, vector)
        return {"text": r.text, "finish_reason": r.finish_reason, "prompt_tokens": r.prompt_tokens,
                "completion_tokens": len(r.token_ids), "pica": {"stage": r.stage, "kv_cache": r.cache_len,
                                                                 "seconds": r.seconds}}


# ------------------------------------------------------------------------------------------ ingress
class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetrieveRequest(_Request):
    question: str = Field(min_length=1)
    top_k: Optional[int] = Field(default=None, ge=1)


class QueryRequest(RetrieveRequest):
    max_new_tokens: Optional[int] = Field(default=None, ge=1)
    #: server-sent events: ``retrieval``, ``evidence``, ``token`` (many), then ``done``
    stream: bool = False


class EmbeddingsRequest(_Request):
    """OpenAI's embeddings request."""

    model: StrictStr
    input: Union[StrictStr, list[StrictStr]]
    encoding_format: Literal["float", "base64"] = "float"
    #: Matryoshka: keep the first ``dimensions`` components, then re-normalise
    dimensions: Optional[int] = Field(default=None, ge=1)
    user: Optional[StrictStr] = None


class _Text(_Request):
    text: StrictStr


class RerankRequest(_Request):
    """The rerank request of the common rerank APIs (Cohere, Jina, Voyage)."""

    model: Optional[StrictStr] = None
    query: StrictStr = Field(min_length=1)
    documents: list[Union[StrictStr, _Text]] = Field(min_length=1)
    top_n: Optional[int] = Field(default=None, ge=1)
    return_documents: bool = False


class _Passage(_Request):
    id: Optional[StrictStr] = None
    text: StrictStr
    title: Optional[StrictStr] = None


class ExtractRequest(_Request):
    """Evidence extraction on its own: a question and passages (strings, or ``{id, text}``)."""

    question: StrictStr = Field(min_length=1)
    passages: list[Union[StrictStr, _Passage]] = Field(min_length=1)


class RecommendRequest(_Request):
    items: Optional[list[StrictStr]] = None
    user: Optional[StrictStr] = None
    top_k: int = Field(default=10, ge=1)


class InteractionsRequest(_Request):
    user: StrictStr = Field(min_length=1)
    items: list[StrictStr] = Field(min_length=1)


class _Message(_Request):
    role: Literal["system", "user", "assistant"]
    content: StrictStr


class _PicaOptions(_Request):
    """PICA for this request: a configured ``task`` (its demonstrations; with ``mode: task`` its
    cached task vector) or inline ``demos``."""

    task: Optional[str] = None
    demos: Optional[list[Demo]] = Field(default=None, min_length=1)
    mode: Optional[Literal["query", "task"]] = None


class ChatCompletionRequest(_Request):
    """OpenAI's chat completion request (the fields rayapp honours; any other is an error)."""

    model: str
    messages: list[_Message] = Field(min_length=1)
    max_tokens: Optional[int] = Field(default=None, ge=1)
    max_completion_tokens: Optional[int] = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: Optional[int] = Field(default=None, ge=0, le=2**32 - 1)
    stop: Optional[Union[StrictStr, list[StrictStr]]] = None
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stream_options: Optional[dict[str, Any]] = None
    user: Optional[str] = None
    pica: Optional[_PicaOptions] = None


def _error(status: int, type_: str, message: str, field: Optional[str] = None) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "message": message}
    if field:
        body["field"] = field
    return JSONResponse(status_code=status, content={"error": body})


class _Front:
    """The ingress's request gate, one pure ASGI middleware (Starlette's ``BaseHTTPMiddleware``
    costs a task group and memory streams per request: three of them took 1.0 ms of CPU per call,
    against 0.2 ms for the whole app without them). Outermost first:

    1. counts every request by route and status and times it to its last byte (401/413/429 included;
       labelled by route template, never by raw path, so cardinality stays bounded; 499 when the
       client went away first);
    2. 413 for a body over ``limits.max_body_bytes`` by its Content-Length, before it is read;
    3. the API-key guard: 401 without a valid key, 429 over the key's rate (``Guard.refusal``).
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            request = Request(scope)
            refusal = self._body_refusal(request)
            guard = _state.STATE["guard"]
            if refusal is None and guard is not None:
                refusal = guard.refusal(request)
            await (self.app if refusal is None else refusal)(scope, receive, send_status)
        except asyncio.CancelledError:
            status = 499
            raise
        finally:
            metrics = _state.STATE["metrics"]
            if metrics is not None:
                route = getattr(scope.get("route"), "path", None)
                if route is None:
                    path = scope["path"]
                    routes = getattr(scope.get("app"), "routes", ())
                    route = path if path in {getattr(r, "path", None) for r in routes} else "other"
                metrics.request(route, status, time.perf_counter() - t0)

    @staticmethod
    def _body_refusal(request: Request) -> Optional[JSONResponse]:
        bound, length = _state.STATE["max_body_bytes"], request.headers.get("content-length")
        if bound is None or length is None:
            return None
        if not length.isdigit():
            return _error(400, "invalid_request", "Content-Length: not a number")
        if int(length) > bound:
            return _error(413, "body_too_large", f"body: at most {bound} bytes (got {length})")
        return None


api = FastAPI(title="rayapp", version="0.1.0", description="Retrieval-augmented generation on Ray Serve.")
api.add_middleware(_Front)


class _Metrics:
    """Prometheus metrics through Ray's metrics agent (``ray.serve.metrics``: each series also
    carries the application, deployment and replica): requests by route and status, request
    latency by route, per-stage latency and candidate counts, stage failures by kind."""

    _SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
    _COUNTS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096]

    def __init__(self):
        from ray.serve.metrics import Counter, Histogram

        self.requests = Counter("rayapp_requests_total", description="HTTP requests by route and status.",
                                tag_keys=("route", "status"))
        self.latency = Histogram("rayapp_request_seconds", description="HTTP request latency by route.",
                                 boundaries=self._SECONDS, tag_keys=("route",))
        self.stage = Histogram("rayapp_stage_seconds", description="Time in each stage of a request.",
                               boundaries=self._SECONDS, tag_keys=("stage",))
        self.candidates = Histogram("rayapp_stage_candidates", description="Candidates each stage returns.",
                                    boundaries=self._COUNTS, tag_keys=("stage",))
        self.failures = Counter("rayapp_stage_failures_total", description="Stage calls that failed or timed out.",
                                tag_keys=("stage", "kind"))

    def request(self, route: str, status: int, seconds: float) -> None:
        self.requests.inc(tags={"route": route, "status": str(status)})
        self.latency.observe(seconds, tags={"route": route})

    def timings(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            self.stage.observe(r["seconds"], tags={"stage": r["stage"]})
            if r.get("n_out"):
                self.candidates.observe(r["n_out"], tags={"stage": r["stage"]})


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errs = exc.errors()
    first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
    field = ".".join(str(p) for p in first["loc"] if p != "body") or None
    msg = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: "
        + ("unknown field" if e["type"] == "extra_forbidden" else e["msg"])
        for e in errs
    )
    return _error(422, "invalid_request", msg, field)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, dict) else {"type": "http_error", "message": str(exc.detail)}
    return JSONResponse(status_code=exc.status_code, content={"error": detail})


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return _error(500, "internal_error", "internal error; see the server log")


def _limit(field: str, value: Optional[int], bound: int, unit: str = "") -> None:
    if value is not None and value > bound:
        raise HTTPException(422, {"type": "limit_exceeded", "field": field,
                                  "message": f"{field}: at most {bound}{unit} (got {value})"})


def _nonblank(field: str, text: str, bound: int) -> None:
    """422 naming ``field`` when ``text`` is blank or longer than ``bound`` characters."""
    if not text.strip():
        raise HTTPException(422, {"type": "invalid_request", "field": field, "message": f"{field}: must not be blank"})
    _limit(field, len(text), bound, " characters")


def _text_limits(field: str, texts: list[str], limits: LimitsConfig) -> None:
    _limit(field, len(texts), limits.max_batch, " items")
    for i, t in enumerate(texts):
        _nonblank(f"{field}.{i}", t, limits.max_text_chars)


def _not_configured(what: str, how: str) -> HTTPException:
    return HTTPException(404, {"type": "not_configured", "message": f"no {what} in this app ({how})"})


async def _await(response) -> Any:
    return await response


@serve.deployment
@serve.ingress(api)
class Ingress:
    """HTTP face of the app: the RAG API (``/v1/query``, SSE with ``stream: true``; ``/v1/retrieve``,
    ``/v1/rerank``, ``/v1/embeddings``, ``/v1/extract``), the OpenAI-compatible ``/v1/models`` and
    ``/v1/chat/completions``, ``/v1/recommend``, ``/healthz``, ``/readyz`` and the web page at ``/``.
    Every stage call has a deadline (``timeouts``): past it the call is cancelled and the answer is
    504 naming the stage."""

    def __init__(self, cfg: AppConfig, retriever: DeploymentHandle, generator: DeploymentHandle,
                 extractor: Optional[DeploymentHandle] = None, recommender: Optional[DeploymentHandle] = None,
                 embedder: Optional[DeploymentHandle] = None, reranker: Optional[DeploymentHandle] = None,
                 embedder_name: Optional[str] = None, reranker_name: Optional[str] = None):
        _state.STATE["guard"] = Guard(cfg.auth)
        _state.STATE["metrics"] = _Metrics()
        _state.STATE["max_body_bytes"] = cfg.limits.max_body_bytes
        self.metrics = _state.STATE["metrics"]
        self.cfg = cfg
        self.retriever, self.generator, self.extractor = retriever, generator, extractor
        self.recommender, self.rec_cfg = recommender, cfg.recommender
        self.embedder, self.reranker = embedder, reranker
        self.embedder_name, self.reranker_name = embedder_name, reranker_name
        self._embed_dim: Optional[int] = None
        self.limits, self.default_top_k = cfg.limits, cfg.retriever.top_k
        self.gen_cfg = cfg.generator
        self.model_id = self.gen_cfg.served_name or self.gen_cfg.model
        self.created = int(time.time())

    def _check(self, req: RetrieveRequest) -> int:
        _nonblank("question", req.question, self.limits.max_question_chars)
        _limit("top_k", req.top_k, self.limits.max_top_k)
        return req.top_k or self.default_top_k

    def _timeout_error(self, stage: str) -> HTTPException:
        self.metrics.failures.inc(tags={"stage": stage, "kind": "timeout"})
        limit = getattr(self.cfg.timeouts, stage)
        log.warning("stage %s timed out after %s s", stage, limit)
        return HTTPException(504, {"type": "stage_timeout", "stage": stage,
                                   "message": f"{stage} did not answer within {limit} s"})

    async def _call(self, stage: str, method, *args, retry: bool = True) -> Any:
        """``method.remote(*args)`` within the stage's deadline; 504 past it, 503 if the stage fails.
        A call whose replica died under it is sent once more (Serve routes it to a live replica),
        within the same deadline, unless ``retry`` is off (calls that change state)."""
        from ray.exceptions import ActorDiedError, ActorUnavailableError

        t0 = time.perf_counter()
        deadline = t0 + getattr(self.cfg.timeouts, stage)
        response = method.remote(*args)
        try:
            try:
                out = await asyncio.wait_for(_await(response), timeout=deadline - time.perf_counter())
            except (ActorDiedError, ActorUnavailableError):
                if not retry:
                    raise
                log.warning("stage %s: replica lost mid-call; retrying on another replica", stage)
                self.metrics.failures.inc(tags={"stage": stage, "kind": "replica_lost"})
                response = method.remote(*args)
                out = await asyncio.wait_for(_await(response), timeout=max(deadline - time.perf_counter(), 1e-3))
        except asyncio.TimeoutError:
            response.cancel()
            raise self._timeout_error(stage) from None
        except Exception as e:  # a stage failed: say which, without its stack trace
            log.exception("stage %s failed", stage)
            self.metrics.failures.inc(tags={"stage": stage, "kind": "failure"})
            raise HTTPException(503, {"type": "stage_unavailable", "stage": stage,
                                      "message": f"{stage} failed: {type(e).__name__}"}) from None
        self.metrics.stage.observe(time.perf_counter() - t0, tags={"stage": f"call_{stage}"})
        return out

    @api.get("/", include_in_schema=False)
    async def page(self) -> HTMLResponse:
        from importlib.resources import files

        return HTMLResponse(files("rayapp.serve").joinpath("static/index.html").read_text(encoding="utf-8"))

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    def _stages(self) -> dict[str, Optional[DeploymentHandle]]:
        return {"retriever": self.retriever, "generator": self.generator, "extractor": self.extractor,
                "recommender": self.recommender, "embedder": self.embedder, "reranker": self.reranker}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        """200 when every configured stage answers ``ready()`` within 5 s; else 503 naming the stage."""
        stages = {n: h for n, h in self._stages().items() if h is not None}
        for name, handle in stages.items():
            try:
                await asyncio.wait_for(_await(handle.ready.remote()), timeout=5.0)
            except Exception as e:  # not deployed yet, failed, or too slow
                return JSONResponse(status_code=503, content={"status": "not_ready", "stage": name,
                                                              "reason": type(e).__name__})
        return JSONResponse(content={"status": "ready", "stages": list(stages)})

    @api.get("/v1/info")
    async def info(self) -> dict[str, Any]:
        """What this app serves: the stages, the models and the request limits (the web page reads it)."""
        return {"stages": [n for n, h in self._stages().items() if h is not None],
                "generator": self.model_id, "embedder": self.embedder_name, "reranker": self.reranker_name,
                "retriever": self.cfg.retriever.kind, "extractor": self.cfg.extractor.method,
                "limits": self.limits.model_dump(), "auth": _state.STATE["guard"].enabled}

    @api.post("/v1/retrieve")
    async def retrieve(self, req: RetrieveRequest) -> dict[str, Any]:
        top_k = self._check(req)
        t0 = time.perf_counter()
        out = await self._call("retriever", self.retriever.retrieve, req.question, top_k)
        out["timings"].append({"stage": "retrieve_total", "seconds": round(time.perf_counter() - t0, 6),
                               "n_in": 0, "n_out": len(out["hits"])})
        self.metrics.timings(out["timings"])
        return out

    # ------------------------------------------------------------------------ stage endpoints
    @api.post("/v1/embeddings")
    async def embeddings(self, req: EmbeddingsRequest) -> dict[str, Any]:
        import base64

        if self.embedder is None:
            raise _not_configured("embedder", "set embeddings.enabled: true")
        if req.model != self.embedder_name:
            raise HTTPException(404, {"type": "model_not_found", "field": "model",
                                      "message": f"model: {req.model!r} is not served here "
                                                 f"(serving {self.embedder_name!r})"})
        texts = [req.input] if isinstance(req.input, str) else req.input
        if not texts:
            raise HTTPException(422, {"type": "invalid_request", "field": "input", "message": "input: empty list"})
        _text_limits("input", texts, self.limits)
        if req.dimensions is not None:
            if self._embed_dim is None:
                self._embed_dim = (await self._call("embedder", self.embedder.info))["dimensions"]
            _limit("dimensions", req.dimensions, self._embed_dim)
        out = await self._call("embedder", self.embedder.embed, texts, req.dimensions)

        def encode(v) -> Any:
            return base64.b64encode(v.astype("<f4").tobytes()).decode() if req.encoding_format == "base64" else v.tolist()

        return {"object": "list", "model": self.embedder_name,
                "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(out["vectors"])],
                "usage": {"prompt_tokens": out["tokens"], "total_tokens": out["tokens"]}}

    @api.post("/v1/rerank")
    async def rerank(self, req: RerankRequest) -> dict[str, Any]:
        import math

        if self.reranker is None:
            raise _not_configured("reranker", "set rerank.model, or use a funnel retriever with post_ranker: cross")
        if req.model is not None and req.model != self.reranker_name:
            raise HTTPException(404, {"type": "model_not_found", "field": "model",
                                      "message": f"model: {req.model!r} is not served here "
                                                 f"(serving {self.reranker_name!r})"})
        _nonblank("query", req.query, self.limits.max_question_chars)
        docs = [d if isinstance(d, str) else d.text for d in req.documents]
        _text_limits("documents", docs, self.limits)
        t0 = time.perf_counter()
        scores = await self._call("reranker", self.reranker.score, req.query, docs)
        order = sorted(range(len(docs)), key=lambda i: -scores[i])[: req.top_n or len(docs)]
        results = []
        for i in order:
            r: dict[str, Any] = {"index": i, "relevance_score": 1.0 / (1.0 + math.exp(-scores[i])), "logit": scores[i]}
            if req.return_documents:
                r["document"] = {"text": docs[i]}
            results.append(r)
        seconds = round(time.perf_counter() - t0, 6)
        self.metrics.timings([{"stage": "rerank", "seconds": seconds, "n_out": len(results)}])
        return {"id": f"rerank-{uuid.uuid4().hex[:24]}", "model": self.reranker_name, "results": results,
                "seconds": seconds}

    @api.post("/v1/extract")
    async def extract(self, req: ExtractRequest) -> dict[str, Any]:
        if self.extractor is None:
            raise _not_configured("extractor", "set extractor.method")
        _nonblank("question", req.question, self.limits.max_question_chars)
        hits = [{"id": str(i), "text": p, "score": 0.0} if isinstance(p, str) else
                {"id": p.id if p.id is not None else str(i), "text": p.text, "title": p.title, "score": 0.0}
                for i, p in enumerate(req.passages)]
        _text_limits("passages", [h["text"] for h in hits], self.limits)
        out = await self._call("extractor", self.extractor.extract, req.question, hits)
        used = out.pop("hits")
        self.metrics.timings([{"stage": "extract", "seconds": out["seconds"], "n_out": len(used)}])
        return {**out, "passages": [{"id": h["id"], "evidence": h["text"]} for h in used]}

    def _recommender_or_404(self) -> DeploymentHandle:
        if self.recommender is None:
            raise _not_configured("recommender", "set recommender.model_dir")
        return self.recommender

    @staticmethod
    def _rec_result(out: dict[str, Any]) -> dict[str, Any]:
        if "error" in out:
            raise HTTPException(422, {"type": "invalid_request", **out["error"]})
        return out

    @api.post("/v1/recommend")
    async def recommend(self, req: RecommendRequest) -> dict[str, Any]:
        rec = self._recommender_or_404()
        _limit("top_k", req.top_k, self.rec_cfg.max_top_k)
        t0 = time.perf_counter()
        out = self._rec_result(await self._call("recommender", rec.recommend, req.items, req.user, req.top_k))
        return {**out, "seconds": round(time.perf_counter() - t0, 6)}

    @api.post("/v1/recommend/interactions")
    async def interactions(self, req: InteractionsRequest) -> dict[str, Any]:
        rec = self._recommender_or_404()
        _limit("items", len(req.items), self.limits.max_batch, " items")
        return self._rec_result(await self._call("recommender", rec.append, req.user, req.items, retry=False))

    # ------------------------------------------------------------------------ the RAG query
    async def _retrieve_and_extract(self, req: QueryRequest, top_k: int) -> tuple[dict, list, dict, list]:
        t0 = time.perf_counter()
        ret = await self._call("retriever", self.retriever.retrieve, req.question, top_k)
        stages = [{"stage": "retrieve_total", "seconds": round(time.perf_counter() - t0, 6), "n_in": 0,
                   "n_out": len(ret["hits"])}]
        context, extra = ret["hits"], {}
        if self.extractor is not None:
            ext = await self._call("extractor", self.extractor.extract, req.question, ret["hits"])
            context = ext.pop("hits")
            extra["evidence"] = ext
            stages.append({"stage": "extract", "seconds": ext["seconds"], "n_in": len(ret["hits"]),
                           "n_out": len(context)})
        return ret, context, extra, stages

    @api.post("/v1/query")
    async def query(self, req: QueryRequest):
        top_k = self._check(req)
        _limit("max_new_tokens", req.max_new_tokens, self.limits.max_new_tokens)
        if req.stream:
            return StreamingResponse(self._query_events(req, top_k), media_type="text/event-stream")
        t0 = time.perf_counter()
        ret, context, extra, stages = await self._retrieve_and_extract(req, top_k)
        t_gen = time.perf_counter()
        gen = await self._call("generator", self.generator.generate, req.question, context, req.max_new_tokens)
        t2 = time.perf_counter()
        by_id = {h["id"]: h for h in ret["hits"]}
        timings = ret["timings"] + stages + [
            {"stage": "generate", "seconds": round(t2 - t_gen, 6), "n_in": len(gen["context_ids"]),
             "n_out": gen["n_new_tokens"]},
            {"stage": "total", "seconds": round(t2 - t0, 6), "n_in": 0, "n_out": 0},
        ]
        self.metrics.timings(timings)
        return {**extra,
            "question": req.question,
            "answer": gen["text"],
            "citations": [by_id[c] for c in gen["citations"]],
            "passages": ret["hits"],
            "context_ids": gen["context_ids"],
            "timings": timings,
            "index_version": ret.get("index_version"),
        }

    async def _query_events(self, req: QueryRequest, top_k: int):
        """SSE: ``retrieval`` {passages, timings}, ``evidence`` (with an extractor), ``token``
        {delta} per decoded piece, then ``done`` {answer, citations, context_ids, timings, usage}; a
        failing or late stage ends the stream with ``error`` {type, stage, message}."""

        def event(name: str, data: dict[str, Any]) -> str:
            return f"event: {name}\ndata: {json.dumps(data)}\n\n"

        t0 = time.perf_counter()
        try:
            ret, context, extra, stages = await self._retrieve_and_extract(req, top_k)
        except HTTPException as e:
            yield event("error", e.detail)
            return
        yield event("retrieval", {"passages": ret["hits"], "timings": ret["timings"] + stages,
                                  "index_version": ret.get("index_version")})
        if "evidence" in extra:
            yield event("evidence", extra["evidence"])
        t_gen = time.perf_counter()
        deadline = t_gen + self.cfg.timeouts.generator
        answer, end, ids = "", None, []
        pieces = self.generator.options(stream=True).generate_stream.remote(req.question, context, req.max_new_tokens)
        try:
            while True:
                try:
                    piece = await asyncio.wait_for(pieces.__anext__(), timeout=max(deadline - time.perf_counter(), 1e-3))
                except StopAsyncIteration:
                    break
                except asyncio.TimeoutError:
                    pieces.cancel()
                    yield event("error", self._timeout_error("generator").detail)
                    return
                if "context_ids" in piece:
                    ids = piece["context_ids"]
                elif "delta" in piece:
                    answer += piece["delta"]
                    yield event("token", {"delta": piece["delta"]})
                else:
                    end = piece
        except Exception as e:  # the stream has started: report in-band
            log.exception("generator stream failed")
            self.metrics.failures.inc(tags={"stage": "generator", "kind": "failure"})
            yield event("error", {"type": "stage_unavailable", "stage": "generator",
                                  "message": f"generator failed: {type(e).__name__}"})
            return
        t2 = time.perf_counter()
        by_id = {h["id"]: h for h in ret["hits"]}
        timings = ret["timings"] + stages + [
            {"stage": "generate", "seconds": round(t2 - t_gen, 6), "n_in": len(ids),
             "n_out": end["usage"]["completion_tokens"]},
            {"stage": "total", "seconds": round(t2 - t0, 6), "n_in": 0, "n_out": 0}]
        self.metrics.timings(timings)
        yield event("done", {"answer": answer.strip(), "citations": [by_id[c] for c in end["citations"]],
                             "context_ids": ids, "timings": timings, "finish_reason": end["finish_reason"],
                             "usage": end["usage"]})

    # ------------------------------------------------------------------------ OpenAI-compatible
    @api.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model_id, "object": "model", "created": self.created,
                                            "owned_by": "rayapp"}]}

    def _chat_payload(self, req: ChatCompletionRequest) -> dict[str, Any]:
        if req.model != self.model_id:
            raise HTTPException(404, {"type": "model_not_found", "field": "model",
                                      "message": f"model: {req.model!r} is not served here (serving {self.model_id!r})"})
        if req.max_tokens is not None and req.max_completion_tokens is not None:
            raise HTTPException(422, {"type": "invalid_request", "field": "max_tokens",
                                      "message": "max_tokens: give max_tokens or max_completion_tokens, not both"})
        max_tokens = req.max_tokens or req.max_completion_tokens
        _limit("max_tokens", max_tokens, self.limits.max_new_tokens)
        chars = sum(len(m.content) for m in req.messages)
        _limit("messages", chars, self.limits.max_prompt_chars, " characters in all")
        stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
        if len(stop) > 4 or any(not s for s in stop):
            raise HTTPException(422, {"type": "invalid_request", "field": "stop",
                                      "message": "stop: at most 4 non-empty strings"})
        payload: dict[str, Any] = {
            "messages": [m.model_dump() for m in req.messages],
            "sampling": {"max_tokens": max_tokens or self.gen_cfg.max_new_tokens, "temperature": req.temperature,
                         "top_p": req.top_p, "seed": req.seed, "stop": stop}}
        if req.pica is not None:
            p = req.pica
            where = None
            if self.gen_cfg.backend != "hf":
                where = ("pica", f"pica: needs generator.backend 'hf' (it hooks the model's layers); this app's "
                                 f"generator runs {self.gen_cfg.backend!r}")
            elif req.stream:
                where = ("stream", "stream: PICA answers are not streamed; send stream: false")
            elif req.messages[-1].role != "user":
                where = ("messages", "messages: PICA answers the last message, which must be the user's")
            elif (p.task is None) == (p.demos is None):
                where = ("pica", "pica: give exactly one of task or demos")
            elif p.task is not None and p.task not in self.gen_cfg.pica_tasks:
                where = ("pica.task", f"pica.task: unknown task {p.task!r} "
                                      f"(configured: {sorted(self.gen_cfg.pica_tasks)})")
            elif (p.mode or self.gen_cfg.pica.mode) == "task" and p.task is None:
                where = ("pica.mode", "pica.mode: 'task' needs a configured task (its vector is cached per task)")
            elif req.temperature > 0:
                where = ("temperature", "temperature: PICA decodes greedily; send temperature 0")
            if where:
                raise HTTPException(422, {"type": "invalid_request", "field": where[0], "message": where[1]})
            payload["pica"] = p.model_dump(mode="json")
        return payload

    def _completion(self, out: dict[str, Any]) -> dict[str, Any]:
        body = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": self.model_id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out["text"]},
                             "finish_reason": out["finish_reason"]}],
                "usage": {"prompt_tokens": out["prompt_tokens"], "completion_tokens": out["completion_tokens"],
                          "total_tokens": out["prompt_tokens"] + out["completion_tokens"]}}
        if "pica" in out:
            body["pica"] = out["pica"]
        return body

    @api.post("/v1/chat/completions")
    async def chat_completions(self, req: ChatCompletionRequest):
        payload = self._chat_payload(req)
        if "pica" in payload:
            return self._completion(await self._call("generator", self.generator.pica, payload))
        if not req.stream:
            return self._completion(await self._call("generator", self.generator.chat, payload))
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        usage_wanted = bool((req.stream_options or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: Optional[str], usage: Optional[dict] = None) -> str:
            body: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created,
                                    "model": self.model_id,
                                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage is not None:
                body["usage"] = usage
            return f"data: {json.dumps(body)}\n\n"

        async def events():
            yield chunk({"role": "assistant", "content": ""}, None)
            try:
                async for piece in self.generator.options(stream=True).chat_stream.remote(payload):
                    if "delta" in piece:
                        yield chunk({"content": piece["delta"]}, None)
                    else:
                        u = piece["usage"]
                        usage = {**u, "total_tokens": u["prompt_tokens"] + u["completion_tokens"]}
                        yield chunk({}, piece["finish_reason"], usage if usage_wanted else None)
            except Exception as e:  # the stream has started: report in-band, as OpenAI does
                log.exception("generator stream failed")
                yield f"data: {json.dumps({'error': {'type': 'stage_unavailable', 'stage': 'generator', 'message': f'generator failed: {type(e).__name__}'}})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
