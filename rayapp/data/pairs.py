"""Embedder training data: ``{query, pos, negs, task, domain, instruction}`` rows (KaLM-Embedding V1).

Rules, all from KaLM-Embedding V1 (Hu et al., 2025) unless said otherwise:

- **Pairs** come from labelled sets ((question, answer passage)), from a corpus as weak pairs
  (title -> body, first sentence -> rest) or from persona-based synthetic queries.
- **Hard negatives** (FlagEmbedding ``hn_mine`` as used by KaLM): search the corpus with the query
  (faiss inner product over L2-normalised vectors), take the results at ranks
  ``[rank_lo, rank_hi)`` (**0-based**: rank 0 is the best hit), drop any text equal to a positive
  or to the query, sample ``k`` at random (seeded); when fewer than ``k`` remain, fill from random
  corpus texts that are neither a positive nor the query.
- **Ranking-consistency filtering**: a sample is dropped when its best positive's rank for the
  query (0-based, among corpus texts other than its positives and the query) is ``>= filter_topk``,
  i.e. the embedder does not place any positive in its top ``filter_topk``.
- **Task labels**: every row carries ``task`` (task type) and ``domain`` for semi-homogeneous
  batching, and the KaLM instruction ``"Instruct: {task description} \\n Query: "``.

Encoding is kept apart from mining and filtering (they take vectors) so that tests can use
hand-built vectors; :func:`build_training_rows` encodes with :func:`rayapp.data.embed_texts`.
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import numpy as np
import ray
from pydantic import Field, field_validator, model_validator

from rayapp.config import CorpusConfig, EmbedConfig, RayConfig, StrictModel, default_home

__all__ = [
    "SyntheticConfig", "PairsConfig", "BuildPairsConfig", "BenchPairsConfig",
    "instruction_for", "weak_pairs", "qa_pairs", "synthetic_pairs",
    "mine_hard_negatives", "positive_ranks", "filter_by_rank_consistency",
    "encode_texts", "training_rows_from_vectors", "build_training_rows",
    "build_prompt", "clean_query", "QueryWriter", "synthesize_queries", "run_build_pairs",
]

DEFAULT_INSTRUCTIONS = {
    "question-abstract": "Given a biomedical research question, retrieve the PubMed abstract that answers it",
    "question-sentence": "Given a factoid question, retrieve sentences that answer it",
    "title-body": "Given a title, retrieve the document it heads",
    "summary-body": "Given the first sentence of a document, retrieve the rest of the document",
    "question": "Given a question, retrieve passages that answer it",
    "keywords": "Given a web search query, retrieve relevant passages that answer the query",
    "how-to": "Given a how-to question, retrieve passages that explain how to do it",
}
DEFAULT_PERSONAS = [
    "a nurse checking a treatment guideline",
    "a high-school student writing a report",
    "a software engineer debugging a program",
    "a journalist verifying a fact",
    "a retired teacher curious about history",
]
DEFAULT_TASK_TYPES = {
    "question": "a short question",
    "keywords": "a web search query of a few keywords",
    "how-to": "a how-to question",
}


# ------------------------------------------------------------------------------------------ config
class SyntheticConfig(StrictModel):
    """Persona-based synthetic queries: a causal LM (``smollm2`` on CPU, any HF causal LM folder or
    hub id on GPU) run as one Ray Data actor, greedy decoding."""

    enabled: bool = False
    model: str = "smollm2"
    max_new_tokens: int = Field(default=32, ge=1, le=512)
    passages_limit: int = Field(default=64, ge=1)
    max_passage_words: int = Field(default=200, ge=8)
    batch_size: int = Field(default=8, ge=1)
    torch_threads: int = Field(default=1, ge=1)
    num_gpus: float = Field(default=0.0, ge=0)


class PairsConfig(StrictModel):
    """Hard-negative mining, ranking-consistency filtering, instructions and synthetic queries.

    Ranks are 0-based. ``instructions`` maps a task label to its description; a task without one
    gets ``default_instruction``. ``task_types`` maps a synthetic task label to the phrase the
    prompt asks for."""

    k: int = Field(default=7, ge=1)
    rank_lo: int = Field(default=50, ge=0)
    rank_hi: int = Field(default=100, ge=1)
    filter_topk: int = Field(default=50, ge=1)
    seed: int = 0
    instruction_format: str = "Instruct: {task} \n Query: "
    instructions: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_INSTRUCTIONS))
    default_instruction: str = "Given a query, retrieve relevant passages"
    personas: list[str] = Field(default_factory=lambda: list(DEFAULT_PERSONAS), min_length=1)
    task_types: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TASK_TYPES), min_length=1)
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)

    @field_validator("instruction_format")
    @classmethod
    def _has_task(cls, v: str) -> str:
        if "{task}" not in v:
            raise ValueError("must contain '{task}'")
        return v

    @model_validator(mode="after")
    def _window(self) -> "PairsConfig":
        if self.rank_hi <= self.rank_lo:
            raise ValueError(f"rank_hi ({self.rank_hi}) must be greater than rank_lo ({self.rank_lo})")
        return self


_SPLITS = {"trecqa": ("train", "dev", "test"), "pubmedqa": ("all", "train", "test")}


class BuildPairsConfig(StrictModel):
    """The build-pairs job: a labelled set (``trecqa``, ``pubmedqa``) or a corpus (weak pairs) ->
    training rows (JSONL) + a report (JSON) in ``output_dir``."""

    source: Literal["trecqa", "pubmedqa", "corpus"] = "trecqa"
    data_dir: Optional[Path] = None
    split: Optional[str] = None
    home: Path = Field(default_factory=default_home)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    weak_tasks: list[Literal["title-body", "summary-body"]] = Field(
        default_factory=lambda: ["title-body", "summary-body"])
    #: ``doc_labels.jsonl`` from the label-corpus job: each document's best label becomes its pairs'
    #: ``domain`` (for ``StageConfig.batch_by: domain``); corpus source only
    doc_labels: Optional[Path] = None
    output_dir: Path = Path("results/build_pairs")
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="after")
    def _split_fits_source(self) -> "BuildPairsConfig":
        if self.source != "corpus" and self.doc_labels is not None:
            raise ValueError("doc_labels: only used when source is 'corpus'")
        if self.source == "corpus":
            if self.split is not None:
                raise ValueError("split: not used when source is 'corpus'")
        elif self.split is not None and self.split not in _SPLITS[self.source]:
            raise ValueError(f"split: {self.source} has splits {list(_SPLITS[self.source])}, not {self.split!r}")
        return self


class BenchPairsConfig(StrictModel):
    """Benchmark: mining + filtering on PubMedQA and TREC-QA train pairs vs random negatives."""

    data_dir: Optional[Path] = None
    results_dir: Path = Path("results/bench_pairs")
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    ray: RayConfig = Field(default_factory=RayConfig)


# ------------------------------------------------------------------------------------------- pairs
def instruction_for(task: str, cfg: PairsConfig) -> str:
    """KaLM-Embedding V1 query instruction: ``"Instruct: {task description} \\n Query: "``."""
    return cfg.instruction_format.format(task=cfg.instructions.get(task, cfg.default_instruction))


_FIRST_SENTENCE = re.compile(r"(.+?[.!?])\s+(\S.*)", re.S)


def _domain_of(doc: dict[str, Any]) -> str:
    """The document's own ``domain`` (e.g. from :func:`rayapp.select.label.label_corpus`), else its
    source kind (``stdlib:json`` -> ``stdlib``)."""
    return doc.get("domain") or (doc.get("source") or "general").split(":")[0]


def weak_pairs(docs: Sequence[dict[str, Any]], task: Literal["title-body", "summary-body"] = "title-body", *,
               domain: Optional[str] = None, min_words: int = 3) -> list[dict[str, Any]]:
    """Weak (query, positive) pairs from document rows (KaLM-Embedding V1's title -> body and
    summary -> rest pairs): ``title-body`` uses the title as query and the text as positive;
    ``summary-body`` uses the first sentence as query and the rest of the text as positive.

    Rows with an ``error``, an empty query, a positive under ``min_words`` words, or a query equal
    to its positive are skipped. ``domain`` defaults to the document's ``domain`` field when it has
    one (labels from :func:`rayapp.select.label.label_corpus`), else its source kind (``stdlib:json``
    -> ``stdlib``)."""
    if task not in ("title-body", "summary-body"):
        raise ValueError(f"weak_pairs: task must be 'title-body' or 'summary-body', not {task!r}")
    out = []
    for d in docs:
        if d.get("error"):
            continue
        text = (d.get("text") or "").strip()
        if task == "title-body":
            query, pos = (d.get("title") or "").strip(), text
        else:
            m = _FIRST_SENTENCE.fullmatch(text)
            if m is None:
                continue
            query, pos = m.group(1).strip(), m.group(2).strip()
        if not query or len(pos.split()) < min_words or query == pos:
            continue
        out.append({"query": query, "pos": [pos], "task": task, "domain": domain or _domain_of(d),
                    "doc_id": d.get("doc_id", "")})
    return out


def qa_pairs(qa, task: str, domain: str) -> list[dict[str, Any]]:
    """A :class:`rayapp.data.sets.QASet`'s pairs as ``{query, pos, task, domain, qid}`` (given
    negatives are not used: negatives are mined)."""
    return [{"query": p["query"], "pos": list(p["pos"]), "task": task, "domain": domain, "qid": p["qid"]}
            for p in qa.pairs]


def synthetic_pairs(rows: Sequence[dict[str, Any]], domain: str = "general") -> list[dict[str, Any]]:
    """:func:`synthesize_queries` rows as pairs (query -> its passage); empty queries are dropped.
    The task label is the synthetic task type; persona and passage_id are kept."""
    return [{"query": r["query"], "pos": [r["passage"]], "task": r["task"], "domain": r.get("domain") or domain,
             "persona": r["persona"], "passage_id": r["passage_id"]}
            for r in rows if r["query"].strip()]


# ---------------------------------------------------------------------------------- hard negatives
def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def _search(query_vecs: np.ndarray, corpus_vecs: np.ndarray, depth: int) -> np.ndarray:
    """Corpus row ids of each query's top ``depth`` hits (faiss IndexFlatIP), best first."""
    import faiss

    index = faiss.IndexFlatIP(corpus_vecs.shape[1])
    index.add(_as_f32(corpus_vecs))
    _, ids = index.search(_as_f32(query_vecs), depth)
    return ids


def _random_fill(corpus: Sequence[str], banned: set[str], n: int, rng: random.Random) -> list[str]:
    """Up to ``n`` distinct random corpus texts not in ``banned`` (hn_mine's fill rule)."""
    out: list[str] = []
    seen = set(banned)
    for _ in range(20 * n + 100):  # rejection sampling first: cheap on a large corpus
        if len(out) == n:
            return out
        t = corpus[rng.randrange(len(corpus))]
        if t not in seen:
            seen.add(t)
            out.append(t)
    rest = [t for t in dict.fromkeys(corpus) if t not in seen]  # small or crowded corpus: scan it
    return out + rng.sample(rest, min(n - len(out), len(rest)))


def mine_hard_negatives(queries: Sequence[str], positives: Sequence[Sequence[str]], corpus: Sequence[str],
                        query_vecs: np.ndarray, corpus_vecs: np.ndarray, *, k: int = 7, rank_lo: int = 50,
                        rank_hi: int = 100, seed: int = 0,
                        stats: Optional[dict[str, int]] = None) -> list[list[str]]:
    """``k`` hard negatives per query (KaLM-Embedding V1 / FlagEmbedding hn_mine).

    Candidates are the corpus hits at 0-based ranks ``[rank_lo, rank_hi)`` of a faiss IndexFlatIP
    search, minus any text equal to one of the query's positives or to the query (and duplicates);
    ``k`` are sampled at random (``seed``). When fewer than ``k`` remain, the rest are random corpus
    texts that are neither a positive nor the query; a corpus too small for that gives fewer.
    ``stats`` (if given) gets ``from_window`` and ``from_random`` counts added.
    """
    if not (len(queries) == len(positives) == len(query_vecs)):
        raise ValueError(f"mine_hard_negatives: {len(queries)} queries, {len(positives)} positive lists, "
                         f"{len(query_vecs)} query vectors: they must match")
    if len(corpus) != len(corpus_vecs) or not corpus:
        raise ValueError(f"mine_hard_negatives: corpus has {len(corpus)} texts and {len(corpus_vecs)} vectors")
    if k < 1 or not 0 <= rank_lo < rank_hi:
        raise ValueError(f"mine_hard_negatives: need k >= 1 and 0 <= rank_lo < rank_hi (k={k}, "
                         f"rank_lo={rank_lo}, rank_hi={rank_hi})")
    if not queries:
        return []
    rng = random.Random(seed)
    ids = _search(query_vecs, corpus_vecs, min(rank_hi, len(corpus)))
    out = []
    for i, (query, pos) in enumerate(zip(queries, positives)):
        banned = set(pos) | {query}
        window = list(dict.fromkeys(corpus[j] for j in ids[i, rank_lo:rank_hi] if j >= 0 and corpus[j] not in banned))
        negs = rng.sample(window, min(k, len(window)))
        n_window = len(negs)
        if len(negs) < k:
            negs += _random_fill(corpus, banned | set(negs), k - len(negs), rng)
        if stats is not None:
            stats["from_window"] = stats.get("from_window", 0) + n_window
            stats["from_random"] = stats.get("from_random", 0) + len(negs) - n_window
        out.append(negs)
    return out


# ----------------------------------------------------------------------------------------- filter
def positive_ranks(queries: Sequence[str], positives: Sequence[Sequence[str]], corpus: Sequence[str],
                   query_vecs: np.ndarray, pos_vecs: Sequence[np.ndarray], corpus_vecs: np.ndarray) -> list[int]:
    """0-based rank of each query's best positive (KaLM-Embedding V1 ranking consistency): the
    number of corpus texts, other than the query's positives and the query itself, whose inner
    product with the query is strictly greater than the best positive's. Exact (brute force)."""
    if not (len(queries) == len(positives) == len(query_vecs) == len(pos_vecs)):
        raise ValueError("positive_ranks: queries, positives, query vectors and positive vectors must match")
    where: dict[str, list[int]] = {}
    for j, t in enumerate(corpus):
        where.setdefault(t, []).append(j)
    cv = _as_f32(corpus_vecs)
    qv = _as_f32(query_vecs)
    chunk = max(1, (1 << 24) // max(1, len(corpus)))  # about 64 MB of scores at a time
    ranks: list[int] = []
    for s in range(0, len(queries), chunk):
        scores = qv[s:s + chunk] @ cv.T
        for r, i in enumerate(range(s, min(s + chunk, len(queries)))):
            best = float(np.max(_as_f32(pos_vecs[i]).reshape(-1, cv.shape[1]) @ qv[i]))
            banned = [j for t in {*positives[i], queries[i]} for j in where.get(t, [])]
            ranks.append(int(np.sum(scores[r] > best)) - int(np.sum(scores[r, banned] > best)))
    return ranks


def filter_by_rank_consistency(rows: Sequence[dict[str, Any]], query_vecs: np.ndarray,
                               pos_vecs: Sequence[np.ndarray], corpus: Sequence[str], corpus_vecs: np.ndarray,
                               *, filter_topk: int = 50) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Ranking-consistency filtering (KaLM-Embedding V1): a row ``{query, pos, task, ...}`` is
    dropped exactly when its best positive's 0-based rank (:func:`positive_ranks`) is
    ``>= filter_topk``. Returns the kept rows (in order) and the dropped count per task (every
    task seen, zero included)."""
    if filter_topk < 1:
        raise ValueError(f"filter_by_rank_consistency: filter_topk must be >= 1, not {filter_topk}")
    ranks = positive_ranks([r["query"] for r in rows], [r["pos"] for r in rows], corpus,
                           query_vecs, pos_vecs, corpus_vecs)
    kept, dropped = [], {}
    for row, rank in zip(rows, ranks):
        task = row.get("task", "")
        dropped.setdefault(task, 0)
        if rank >= filter_topk:
            dropped[task] += 1
        else:
            kept.append(row)
    return kept, dropped


# ------------------------------------------------------------------------------------ training rows
def encode_texts(texts: Sequence[str], embed_cfg: EmbedConfig) -> tuple[dict[str, int], np.ndarray]:
    """Each distinct text encoded once with :func:`rayapp.data.embed_texts` (Ray Data): returns
    ``(text -> row, vectors)``."""
    from rayapp.data.embed import embed_texts

    unique = list(dict.fromkeys(texts))
    return {t: i for i, t in enumerate(unique)}, embed_texts(unique, embed_cfg)


def _usable(pairs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pairs if p["query"].strip() and any(t.strip() for t in p["pos"])]


def _needed_texts(pairs: Sequence[dict[str, Any]], corpus: Sequence[str]) -> list[str]:
    return [p["query"] for p in pairs] + list(corpus) + [t for p in pairs for t in p["pos"]]


def training_rows_from_vectors(pairs: Sequence[dict[str, Any]], corpus: Sequence[str], lookup: dict[str, int],
                               vectors: np.ndarray, cfg: PairsConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Filter (rank consistency), then mine ``cfg.k`` hard negatives, then label (KaLM-Embedding V1).

    ``lookup`` maps every query, positive and corpus text to its row of ``vectors``. Returns rows
    ``{query, pos, negs, task, domain, instruction}`` and a report with per-task kept and dropped
    counts, where negatives came from, and the seconds of each step."""
    pairs = _usable(pairs)
    corpus = list(dict.fromkeys(corpus))
    cvecs = vectors[[lookup[t] for t in corpus]]
    t0 = time.perf_counter()
    kept, dropped = filter_by_rank_consistency(
        pairs, vectors[[lookup[p["query"]] for p in pairs]], [vectors[[lookup[t] for t in p["pos"]]] for p in pairs],
        corpus, cvecs, filter_topk=cfg.filter_topk)
    t1 = time.perf_counter()
    neg_stats: dict[str, int] = {}
    negs = mine_hard_negatives([p["query"] for p in kept], [p["pos"] for p in kept], corpus,
                               vectors[[lookup[p["query"]] for p in kept]].reshape(len(kept), -1), cvecs,
                               k=cfg.k, rank_lo=cfg.rank_lo, rank_hi=cfg.rank_hi, seed=cfg.seed, stats=neg_stats)
    t2 = time.perf_counter()
    rows = [{"query": p["query"], "pos": list(p["pos"]), "negs": n, "task": p["task"], "domain": p["domain"],
             "instruction": instruction_for(p["task"], cfg)} for p, n in zip(kept, negs)]
    kept_by_task: dict[str, int] = {t: 0 for t in dropped}
    for r in rows:
        kept_by_task[r["task"]] += 1
    report = {
        "pairs_in": len(pairs), "kept": len(rows), "dropped": sum(dropped.values()),
        "kept_by_task": kept_by_task, "dropped_by_task": dropped, "corpus_size": len(corpus),
        "negatives": {"from_window": neg_stats.get("from_window", 0), "from_random": neg_stats.get("from_random", 0)},
        "settings": {"k": cfg.k, "rank_lo": cfg.rank_lo, "rank_hi": cfg.rank_hi, "filter_topk": cfg.filter_topk,
                     "seed": cfg.seed, "ranks": "0-based"},
        "seconds": {"filter": round(t1 - t0, 4), "mine": round(t2 - t1, 4)},
    }
    return rows, report


def build_training_rows(pairs: Sequence[dict[str, Any]], corpus: Sequence[str], embed_cfg: EmbedConfig,
                        pairs_cfg: PairsConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Encode queries, positives and corpus once on Ray Data, then
    :func:`training_rows_from_vectors` (KaLM-Embedding V1 filtering and hard-negative mining).
    Ray must be initialised."""
    pairs = _usable(pairs)
    if not pairs:
        raise ValueError("build_training_rows: no usable pair (every query or positive is empty)")
    t0 = time.perf_counter()
    lookup, vectors = encode_texts(_needed_texts(pairs, corpus), embed_cfg)
    encode_s = round(time.perf_counter() - t0, 4)
    rows, report = training_rows_from_vectors(pairs, corpus, lookup, vectors, pairs_cfg)
    report["seconds"] = {"encode": encode_s, **report["seconds"]}
    report["encoded_texts"] = len(lookup)
    return rows, report


# -------------------------------------------------------------------------------- synthetic queries
def build_prompt(passage: str, persona: str, task_phrase: str, max_words: int = 200) -> str:
    """The persona prompt (KaLM-Embedding V1, persona-based synthesis): as ``persona``, write
    ``task_phrase`` that the passage (cut to ``max_words`` words) answers; the query only."""
    words = passage.split()
    text = " ".join(words[:max_words]) + (" ..." if len(words) > max_words else "")
    return (f"You are {persona}. Read the passage below and write {task_phrase} that the passage answers. "
            f"Reply with the query only, on one line.\n\nPassage: {text}")


_QUERY_PREFIX = re.compile(r"^(?:query|question|search query)\s*:\s*", re.I)


def clean_query(text: str) -> str:
    """The first non-empty line of a generation, without a ``Query:`` label or wrapping quotes."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return _QUERY_PREFIX.sub("", line).strip().strip('"\'').strip()


def _assign(passages: Sequence[dict[str, Any]], cfg: PairsConfig) -> list[dict[str, Any]]:
    """One (persona, task type) per passage, drawn at random with ``cfg.seed``."""
    rng = random.Random(cfg.seed)
    tasks = list(cfg.task_types)
    out = []
    for i, p in enumerate(passages[: cfg.synthetic.passages_limit]):
        persona, task = rng.choice(cfg.personas), rng.choice(tasks)
        out.append({"row": i, "passage_id": str(p["passage_id"]), "passage": p["text"], "persona": persona,
                    "task": task, "domain": p.get("domain", ""),
                    "prompt": build_prompt(p["text"], persona, cfg.task_types[task], cfg.synthetic.max_passage_words)})
    return out


class QueryWriter:
    """Ray Data ``map_batches`` callable: loads the causal LM once per actor; ``prompt`` -> ``query``
    by batched greedy decoding (left padding)."""

    def __init__(self, model: str, max_new_tokens: int, torch_threads: int):
        import torch

        from rayapp.models import load_causal_lm

        torch.set_num_threads(torch_threads)
        self.tok, self.model = load_causal_lm(model)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device)
        self.max_new_tokens = max_new_tokens

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        prompts = [self.tok.apply_chat_template([{"role": "user", "content": str(p)}], add_generation_prompt=True,
                                                tokenize=False) for p in batch["prompt"]]
        enc = self.tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tok.pad_token_id)
        texts = self.tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        batch = {k: v for k, v in batch.items() if k != "prompt"}
        batch["query"] = np.array([clean_query(t) for t in texts], dtype=object)
        return batch


def synthesize_queries(passages: Sequence[dict[str, Any]], cfg: PairsConfig) -> list[dict[str, Any]]:
    """Persona-based synthetic queries (KaLM-Embedding V1) for the first
    ``cfg.synthetic.passages_limit`` passages ``{passage_id, text[, domain]}``, by batch inference on
    Ray Data: one actor (``num_cpus=1``, so a read task always has a CPU) holding the causal LM.

    Returns rows ``{passage_id, passage, persona, task, domain, query}`` in passage order; a query
    may be empty when the model wrote nothing usable. Ray must be initialised."""
    items = _assign(passages, cfg)
    if not items:
        raise ValueError("synthesize_queries: no passages")
    s = cfg.synthetic
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(8, len(items) // s.batch_size)))
    out = ds.map_batches(
        QueryWriter,
        fn_constructor_kwargs={"model": s.model, "max_new_tokens": s.max_new_tokens, "torch_threads": s.torch_threads},
        batch_size=s.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=1,
        num_gpus=s.num_gpus or None,
    )
    rows = sorted(out.take_all(), key=lambda r: int(r["row"]))
    return [{k: (str(v) if k != "row" else v) for k, v in r.items() if k != "row"} for r in rows]


# --------------------------------------------------------------------------------------------- job
_QA_LABELS = {"trecqa": ("question-sentence", "news"), "pubmedqa": ("question-abstract", "biomedical")}


def _source_pairs(cfg: BuildPairsConfig) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
    """(pairs, corpus texts, passages for synthesis) of the configured source."""
    if cfg.source == "corpus":
        import pyarrow.parquet as pq

        from rayapp.data.corpus import build_corpus, load_passages

        info = build_corpus(cfg.corpus, cfg.home)
        docs = pq.read_table(info.path / "documents").to_pylist()
        if cfg.doc_labels is not None:
            from rayapp.select.label import read_doc_labels

            domains = read_doc_labels(cfg.doc_labels)
            docs = [{**d, "domain": domains.get(d["doc_id"])} for d in docs]
        pairs = [p for task in cfg.weak_tasks for p in weak_pairs(docs, task)]
        passages = [{**p, "domain": "corpus"} for p in load_passages(info.path, ["passage_id", "text"]).to_pylist()]
        return pairs, [t for p in pairs for t in p["pos"]], passages
    from rayapp.data.sets import load_pubmedqa, load_trecqa

    loader = load_trecqa if cfg.source == "trecqa" else load_pubmedqa
    qa = loader(cfg.data_dir, cfg.split or "train")
    task, domain = _QA_LABELS[cfg.source]
    passages = [{"passage_id": d["doc_id"], "text": d["text"], "domain": domain} for d in qa.docs]
    return qa_pairs(qa, task, domain), [d["text"] for d in qa.docs], passages


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


def run_build_pairs(cfg: BuildPairsConfig) -> dict[str, Any]:
    """The build-pairs job: source pairs (+ synthetic queries if enabled) -> filtered rows with mined
    negatives (KaLM-Embedding V1) in ``<output_dir>/rows.jsonl`` and ``report.json``."""
    from rayapp._internal.artifacts import write_json_atomic
    from rayapp._internal.ray_utils import init_ray

    started = init_ray(cfg.ray)
    try:
        pairs, corpus, passages = _source_pairs(cfg)
        synth: list[dict[str, Any]] = []
        if cfg.pairs.synthetic.enabled:
            synth = synthesize_queries(passages, cfg.pairs)
            pairs = pairs + synthetic_pairs(synth)
            corpus = corpus + [r["passage"] for r in synth]
        rows, report = build_training_rows(pairs, corpus, cfg.embed, cfg.pairs)
    finally:
        if started:
            ray.shutdown()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / "rows.jsonl", rows)
    if synth:
        _write_jsonl(out / "synthetic.jsonl", synth)
    report = {"source": cfg.source, "split": cfg.split, "synthetic_queries": len(synth), **report,
              "rows_file": str(out / "rows.jsonl"), "config": cfg.model_dump(mode="json")}
    write_json_atomic(out / "report.json", report)
    return report
