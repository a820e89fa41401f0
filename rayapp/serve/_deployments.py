"""The Serve deployments. Stages do not know they are served: each deployment wraps a stage class.

Ingress (FastAPI) validates every request and maps every failure to a JSON error body:
``{"error": {"type", "message", "field"?}}``. Bad input is 4xx, a failing stage is 503 naming the
stage; no response carries a stack trace.
"""


import logging
import time
from typing import Any, Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from ray import serve
from ray.serve.handle import DeploymentHandle

from rayapp.config import GeneratorConfig, LimitsConfig, RetrieverConfig
from rayapp.types import Hit

log = logging.getLogger("rayapp.serve")


class Retriever:
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


class FunnelRetriever:
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


class Generator:
    """The answer generator (a causal LM) behind a deployment."""

    def __init__(self, cfg: GeneratorConfig):
        from rayapp.generate import Generator as _Generator

        self.gen = _Generator(cfg)

    def generate(self, question: str, hits: list[dict[str, Any]], max_new_tokens: Optional[int]) -> dict[str, Any]:
        return self.gen.generate(question, [Hit(**h) for h in hits], max_new_tokens)


# ------------------------------------------------------------------------------------------ ingress
class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetrieveRequest(_Request):
    question: str = Field(min_length=1)
    top_k: Optional[int] = Field(default=None, ge=1)


class QueryRequest(RetrieveRequest):
    max_new_tokens: Optional[int] = Field(default=None, ge=1)


def _error(status: int, type_: str, message: str, field: Optional[str] = None) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "message": message}
    if field:
        body["field"] = field
    return JSONResponse(status_code=status, content={"error": body})


api = FastAPI(title="rayapp", version="0.1.0", description="Retrieval-augmented generation on Ray Serve.")


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
    """HTTP face of the app: ``/healthz``, ``/v1/retrieve``, ``/v1/query``."""

    def __init__(self, retriever: DeploymentHandle, generator: DeploymentHandle, limits: LimitsConfig,
                 default_top_k: int):
        self.retriever, self.generator = retriever, generator
        self.limits, self.default_top_k = limits, default_top_k

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

    @api.post("/v1/retrieve")
    async def retrieve(self, req: RetrieveRequest) -> dict[str, Any]:
        top_k = self._check(req)
        t0 = time.perf_counter()
        out = await self._call("retriever", self.retriever.retrieve, req.question, top_k)
        out["timings"].append({"stage": "retrieve_total", "seconds": round(time.perf_counter() - t0, 6),
                               "n_in": 0, "n_out": len(out["hits"])})
        return out

    @api.post("/v1/query")
    async def query(self, req: QueryRequest) -> dict[str, Any]:
        top_k = self._check(req)
        _limit("max_new_tokens", req.max_new_tokens, self.limits.max_new_tokens)
        t0 = time.perf_counter()
        ret = await self._call("retriever", self.retriever.retrieve, req.question, top_k)
        t1 = time.perf_counter()
        gen = await self._call("generator", self.generator.generate, req.question, ret["hits"], req.max_new_tokens)
        t2 = time.perf_counter()
        by_id = {h["id"]: h for h in ret["hits"]}
        timings = ret["timings"] + [
            {"stage": "retrieve_total", "seconds": round(t1 - t0, 6), "n_in": 0, "n_out": len(ret["hits"])},
            {"stage": "generate", "seconds": round(t2 - t1, 6), "n_in": len(gen["context_ids"]),
             "n_out": gen["n_new_tokens"]},
            {"stage": "total", "seconds": round(t2 - t0, 6), "n_in": 0, "n_out": 0},
        ]
        return {
            "question": req.question,
            "answer": gen["text"],
            "citations": [by_id[c] for c in gen["citations"]],
            "passages": ret["hits"],
            "context_ids": gen["context_ids"],
            "timings": timings,
        }
