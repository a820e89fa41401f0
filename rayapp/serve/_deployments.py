"""The Serve deployments. Stages do not know they are served: each deployment wraps a stage class.

Ingress (FastAPI) validates every request and maps every failure to a JSON error body:
``{"error": {"type", "message", "field"?}}``. Bad input is 4xx, a failing stage is 503 naming the
stage; no response carries a stack trace.
"""


import logging
import time
import json
import uuid
from typing import Any, Literal, Optional, Union

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from ray import serve
from ray.serve.handle import DeploymentHandle

from rayapp.config import AuthConfig, Demo, ExtractorConfig, GeneratorConfig, LimitsConfig, RecommenderConfig, RetrieverConfig
from rayapp.serve._auth import Guard, guard_dispatch
from rayapp.types import Hit

log = logging.getLogger("rayapp.serve")


class _Ready:
    """``ready()`` answers once the deployment's constructor has finished (models loaded): ``/readyz``."""

    def ready(self) -> bool:
        return True


class Retriever(_Ready):
    """Hybrid BM25 + dense retrieval over one index version, opened read-only."""

    def __init__(self, index_path: str, cfg: RetrieverConfig):
        from rayapp.index import LoadedIndex
        from rayapp.models import load_sentence_transformer
        from rayapp.retrieve import HybridRetriever

        index = LoadedIndex(index_path)
        emb = index.manifest["embedder"]
        model = load_sentence_transformer(emb["path"], emb["max_seq_length"])
        self.retriever = HybridRetriever(index, cfg, lambda q: model.encode(q, normalize_embeddings=True))
        self.n_passages = len(index)

    def retrieve(self, question: str, top_k: int) -> dict[str, Any]:
        hits, timings = self.retriever.retrieve(question, top_k)
        return {"hits": [h.to_dict() for h in hits], "timings": [t.to_dict() for t in timings]}

    def info(self) -> dict[str, Any]:
        return {"passages": self.n_passages}


class PostRanker:
    """The funnel's highest-capacity stage: a cross-encoder scoring (question, passage) pairs."""

    def __init__(self, reranker: str, max_length: int, batch_size: int):
        from rayapp.rerank import CrossEncoder

        self.cross, self.batch_size = CrossEncoder.from_pretrained(reranker, max_length), batch_size

    def score(self, question: str, texts: list[str]) -> list[float]:
        return self.cross.score(question, texts, self.batch_size).tolist() if texts else []


class FunnelRetriever(_Ready):
    """FunnelRAG over a funnel index: cluster BM25 and the document pre-ranker run here, the passage
    post-ranker in its own deployment (``post_ranker`` handle) when it is the cross-encoder."""

    def __init__(self, index_path: str, cfg: RetrieverConfig, post_ranker: Optional[DeploymentHandle] = None):
        from rayapp.index import LoadedIndex
        from rayapp.models import load_sentence_transformer
        from rayapp.retrieve.funnel import FunnelRetriever as _Funnel

        index = LoadedIndex(index_path)
        emb = index.manifest["embedder"]
        model = load_sentence_transformer(emb["path"], emb["max_seq_length"])
        self.post_ranker = post_ranker if cfg.funnel.post_ranker == "cross" else None
        self.funnel = _Funnel(index, cfg.funnel, lambda q: model.encode(q, normalize_embeddings=True),
                              remote_post=self.post_ranker is not None)
        self.n_passages = len(index)

    async def retrieve(self, question: str, top_k: int) -> dict[str, Any]:
        from rayapp.retrieve.funnel import passage_hits, top_rows
        from rayapp.types import StageTiming

        if self.post_ranker is None:
            hits, timings = self.funnel.retrieve(question, top_k)
        else:
            t, _, _, _, _, cand = self.funnel.coarse(question)
            t0 = time.perf_counter()
            texts = [self.funnel.index.texts[p] for p in cand]
            scores = await self.post_ranker.score.remote(question, texts)
            rows, kept = top_rows(cand, scores, top_k)
            t.rows.append(StageTiming("passages_cross", round(time.perf_counter() - t0, 6), len(cand), len(rows)))
            hits, timings = passage_hits(self.funnel.index, rows, kept, "funnel"), t.rows
        return {"hits": [h.to_dict() for h in hits], "timings": [t.to_dict() for t in timings]}

    def info(self) -> dict[str, Any]:
        return {"passages": self.n_passages}


class Extractor(_Ready):
    """The extract stage: passages + question -> evidence, rationale (for logs) and compression
    ratio; the generator then sees only the evidence, mapped back onto the passages it came from."""

    def __init__(self, cfg: ExtractorConfig):
        from rayapp.extract.model import make_extractor

        self.cfg, self.fn = cfg, make_extractor(cfg)

    def extract(self, question: str, hits: list[dict[str, Any]]) -> dict[str, Any]:
        import math

        from rayapp.extract.model import evidence_hits

        t0 = time.perf_counter()
        ev = self.fn(question, [h.get("text") or "" for h in hits])
        return {"method": self.cfg.method, "evidence": ev.evidence, "rationale": ev.rationale,
                "compression": ev.compression if math.isfinite(ev.compression) else None,
                "hits": evidence_hits(hits, ev.evidence), "seconds": round(time.perf_counter() - t0, 6)}


class Recommender(_Ready):
    """Sequential recommendation (SASRec, or RaSeRec with its memory bank): top-k items and online
    appends of interactions (one replica holds the bank, so an append is seen by the next request)."""

    def __init__(self, cfg: RecommenderConfig):
        from rayapp.recommend.service import RecommenderService

        self.svc = RecommenderService(cfg.model_dir, cfg.max_history)

    def recommend(self, items: Optional[list[str]], user: Optional[str], k: int) -> dict[str, Any]:
        from rayapp.recommend.service import RecommendRequestError

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
        self.rag = _Rag(cfg, self.engine.tok, self.engine.model) if self.is_hf else None
        self.chat.set_max_batch_size(cfg.max_batch_size)
        self.chat.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)
        self._pica = None
        self._task_vectors: dict[str, Any] = {}
        self.batch_sizes: list[int] = []

    def generate(self, question: str, hits: list[dict[str, Any]], max_new_tokens: Optional[int]) -> dict[str, Any]:
        if self.rag is not None:
            return self.rag.generate(question, [Hit(**h) for h in hits], max_new_tokens)
        from rayapp.generate import Sampling, build_messages, parse_citations

        t0 = time.perf_counter()
        messages, used = build_messages(question, [Hit(**h) for h in hits], self.cfg)
        c = self.engine.complete([(messages, Sampling(max_tokens=max_new_tokens or self.cfg.max_new_tokens))])[0]
        return {"text": c.text, "citations": parse_citations(c.text, used), "context_ids": [h.id for h in used],
                "n_prompt_tokens": c.prompt_tokens, "n_new_tokens": c.completion_tokens,
                "seconds": round(time.perf_counter() - t0, 6)}

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05)
    async def chat(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import asyncio

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
        import asyncio

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
    seed: Optional[int] = None
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


api = FastAPI(title="rayapp", version="0.1.0", description="Retrieval-augmented generation on Ray Serve.")
_GUARD: dict[str, Any] = {"guard": None}  # this replica's API-key guard, set by Ingress.__init__
api.middleware("http")(guard_dispatch(lambda: _GUARD["guard"]))


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


@serve.deployment
@serve.ingress(api)
class Ingress:
    """HTTP face of the app: ``/healthz``, ``/v1/retrieve``, ``/v1/query``, and the OpenAI-compatible
    ``/v1/models`` and ``/v1/chat/completions`` (SSE streaming with ``stream: true``)."""

    def __init__(self, retriever: DeploymentHandle, generator: DeploymentHandle, limits: LimitsConfig,
                 default_top_k: int, generator_cfg: Optional[GeneratorConfig] = None,
                 extractor: Optional[DeploymentHandle] = None, recommender: Optional[DeploymentHandle] = None,
                 recommender_cfg: Optional[RecommenderConfig] = None, auth: Optional[AuthConfig] = None):
        _GUARD["guard"] = Guard(auth) if auth is not None else None
        self.retriever, self.generator, self.extractor = retriever, generator, extractor
        self.recommender, self.rec_cfg = recommender, recommender_cfg or RecommenderConfig()
        self.limits, self.default_top_k = limits, default_top_k
        self.gen_cfg = generator_cfg or GeneratorConfig()
        self.model_id = self.gen_cfg.served_name or self.gen_cfg.model
        self.created = int(time.time())

    def _check(self, req: RetrieveRequest) -> int:
        if not req.question.strip():
            raise HTTPException(422, {"type": "invalid_request", "field": "question",
                                      "message": "question: must not be blank"})
        _limit("question", len(req.question), self.limits.max_question_chars, " characters")
        _limit("top_k", req.top_k, self.limits.max_top_k)
        return req.top_k or self.default_top_k

    async def _call(self, stage: str, method, *args) -> Any:
        try:
            return await method.remote(*args)
        except Exception as e:  # a stage failed: say which, without its stack trace
            log.exception("stage %s failed", stage)
            raise HTTPException(503, {"type": "stage_unavailable", "stage": stage,
                                      "message": f"{stage} failed: {type(e).__name__}"}) from None

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        """200 when every configured stage answers ``ready()`` within 5 s; else 503 naming the stage."""
        import asyncio

        stages = {"retriever": self.retriever, "generator": self.generator, "extractor": self.extractor,
                  "recommender": self.recommender}
        for name, handle in stages.items():
            if handle is None:
                continue
            try:
                await asyncio.wait_for(self._ask_ready(handle), timeout=5.0)
            except Exception as e:  # not deployed yet, failed, or too slow
                return JSONResponse(status_code=503, content={"status": "not_ready", "stage": name,
                                                              "reason": type(e).__name__})
        return JSONResponse(content={"status": "ready", "stages": [n for n, h in stages.items() if h is not None]})

    @staticmethod
    async def _ask_ready(handle: DeploymentHandle) -> bool:
        return await handle.ready.remote()

    @api.post("/v1/retrieve")
    async def retrieve(self, req: RetrieveRequest) -> dict[str, Any]:
        top_k = self._check(req)
        t0 = time.perf_counter()
        out = await self._call("retriever", self.retriever.retrieve, req.question, top_k)
        out["timings"].append({"stage": "retrieve_total", "seconds": round(time.perf_counter() - t0, 6),
                               "n_in": 0, "n_out": len(out["hits"])})
        return out

    def _recommender_or_404(self) -> DeploymentHandle:
        if self.recommender is None:
            raise HTTPException(404, {"type": "not_configured",
                                      "message": "no recommender in this app (set recommender.model_dir)"})
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
        return self._rec_result(await self._call("recommender", rec.append, req.user, req.items))

    @api.post("/v1/query")
    async def query(self, req: QueryRequest) -> dict[str, Any]:
        top_k = self._check(req)
        _limit("max_new_tokens", req.max_new_tokens, self.limits.max_new_tokens)
        t0 = time.perf_counter()
        ret = await self._call("retriever", self.retriever.retrieve, req.question, top_k)
        t1 = time.perf_counter()
        context, extra, stages = ret["hits"], {}, []
        if self.extractor is not None:
            ext = await self._call("extractor", self.extractor.extract, req.question, ret["hits"])
            context = ext.pop("hits")
            extra["evidence"] = ext
            stages.append({"stage": "extract", "seconds": ext["seconds"], "n_in": len(ret["hits"]),
                           "n_out": len(context)})
        t_gen = time.perf_counter()
        gen = await self._call("generator", self.generator.generate, req.question, context, req.max_new_tokens)
        t2 = time.perf_counter()
        by_id = {h["id"]: h for h in ret["hits"]}
        timings = ret["timings"] + [
            {"stage": "retrieve_total", "seconds": round(t1 - t0, 6), "n_in": 0, "n_out": len(ret["hits"])},
            *stages,
            {"stage": "generate", "seconds": round(t2 - t_gen, 6), "n_in": len(gen["context_ids"]),
             "n_out": gen["n_new_tokens"]},
            {"stage": "total", "seconds": round(t2 - t0, 6), "n_in": 0, "n_out": 0},
        ]
        return {**extra,
            "question": req.question,
            "answer": gen["text"],
            "citations": [by_id[c] for c in gen["citations"]],
            "passages": ret["hits"],
            "context_ids": gen["context_ids"],
            "timings": timings,
        }

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
            if req.stream:
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
