"""Benchmarks of the generate stage.

- :func:`bench_pica`: PICA vs vanilla ICL vs zero-shot on PubMedQA long answers with the same
  demonstrations (train-split questions with their abstracts and long answers), one query at a
  time, the three modes interleaved per query. Time per answer, tokens/s, agreement with the ICL
  output (ROUGE-L and the share of identical tokens among the first 32) and ROUGE-L to the
  reference long answer.
- :func:`bench_batching`: chat completion throughput of one Generator deployment with 1 vs N
  concurrent requests (``@serve.batch`` sharing forward passes).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pydantic import Field

from rayapp.config import Demo, GeneratorConfig, PicaConfig, RayConfig, StrictModel

__all__ = ["BenchPicaConfig", "bench_pica", "pubmedqa_demos", "BenchBatchingConfig", "bench_batching"]


class BenchPicaConfig(StrictModel):
    data_dir: Optional[Path] = None
    model: str = "smollm2"
    demos: int = Field(default=3, ge=1)
    queries: int = Field(default=20, ge=1)
    context_words: int = Field(default=120, ge=10)
    max_new_tokens: int = Field(default=128, ge=1)
    #: Ignore stop strings (EOS still ends an answer): every mode writes up to max_new_tokens tokens,
    #: so the times compare equal work (answers that stop at different lengths otherwise dominate).
    fixed_length: bool = False
    pica: PicaConfig = PicaConfig()
    #: Also run PICA's task-level mode: one vector averaged over ``pica.dummy_queries`` (computed
    #: once, its time reported apart) in place of each query's own.
    task_mode: bool = True
    torch_threads: int = 2
    results_dir: Path = Path("results/bench_pica")


def _query(item: dict[str, Any], doc_text: str, words: int) -> str:
    return f"Context: {' '.join(doc_text.split()[:words])}\nQuestion: {item['text']}"


def pubmedqa_demos(data_dir, n: int, words: int) -> tuple[list[Demo], list[tuple[str, str]]]:
    """``n`` train-split demonstrations and the test split's (query, reference long answer)."""
    from rayapp.data.sets import load_pubmedqa

    out = []
    for split in ("train", "test"):
        qa = load_pubmedqa(data_dir, split)
        text = {d["title"]: d["text"] for d in qa.docs}
        out.append([(_query(q, text[f"PMID {q['qid']}"], words), q["answers"][1]) for q in qa.queries])
    return [Demo(query=q, answer=a) for q, a in out[0][:n]], out[1]


def bench_pica(cfg: BenchPicaConfig) -> dict[str, Any]:
    import torch

    from rayapp.eval.text import prefix_agreement, rouge_l
    from rayapp.generate.pica import Pica
    from rayapp.models import load_causal_lm

    torch.set_num_threads(cfg.torch_threads)
    tok, model = load_causal_lm(cfg.model)
    p = Pica(tok, model, cfg.pica.model_copy(update={"stop": ["\x00never\x00"]}) if cfg.fixed_length else cfg.pica)
    demos, test = pubmedqa_demos(cfg.data_dir, cfg.demos, cfg.context_words)
    test = test[: cfg.queries]
    p.icl(test[0][0], demos, max_new_tokens=4)  # warm up
    modes = {"icl": lambda q: p.icl(q, demos, cfg.max_new_tokens),
             "pica": lambda q: p.generate(q, demos, cfg.max_new_tokens),
             "zero-shot": lambda q: p.zero_shot(q, cfg.max_new_tokens)}
    task_vector_s = None
    if cfg.task_mode:
        t0 = time.perf_counter()
        task_vec = p.task_vector(demos)
        task_vector_s = time.perf_counter() - t0
        modes["pica (task)"] = lambda q: p.generate(q, demos, cfg.max_new_tokens, vector=task_vec)
    runs: dict[str, list[tuple[Any, float]]] = {m: [] for m in modes}
    for q, _ in test:
        for name, fn in modes.items():
            t0 = time.perf_counter()
            r = fn(q)
            runs[name].append((r, time.perf_counter() - t0))
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        secs = [s for _, s in rs]
        toks = [len(r.token_ids) for r, _ in rs]
        out[name] = {
            "s_per_answer": float(np.mean(secs)), "tokens_per_answer": float(np.mean(toks)),
            "tokens_per_s": float(sum(toks) / sum(secs)),
            "rouge_l_vs_icl": float(np.mean([rouge_l(r.text, i.text) for (r, _), (i, _) in zip(rs, runs["icl"])])),
            "first32_agreement_vs_icl": float(np.mean([prefix_agreement(r.token_ids, i.token_ids, 32)
                                                       for (r, _), (i, _) in zip(rs, runs["icl"])])),
            "rouge_l_vs_reference": float(np.mean([rouge_l(r.text, ref) for (r, _), (_, ref) in zip(rs, test)])),
            "kv_cache_len": float(np.mean([r.cache_len.get("zero_shot", r.cache_len.get("few_shot", 0))
                                           for r, _ in rs])),
            "prompt_tokens": float(np.mean([r.prompt_tokens for r, _ in rs])),
            # ICL / zero-shot: prefill and decode; PICA: its few-shot and zero-shot stages
            "seconds": {k: float(np.mean([r.seconds.get(k, 0.0) for r, _ in rs]))
                        for k in sorted({k for r, _ in rs for k in r.seconds})},
        }
    for r in out.values():
        r["speedup_vs_icl"] = out["icl"]["s_per_answer"] / r["s_per_answer"]
    for name in ("pica", "pica (task)"):
        if name in out:
            out[name]["finished_in_few_shot"] = sum(r.stage == "few_shot" for r, _ in runs[name])
    return {"queries": len(test), "demos": len(demos), "layers": p.n_layers, "modes": out, "task_vector_s": task_vector_s,
            "examples": [{"query": test[0][0][:300], "icl": runs["icl"][0][0].text, "pica": runs["pica"][0][0].text,
                          "zero_shot": runs["zero-shot"][0][0].text, "reference": test[0][1]}]}


class BenchBatchingConfig(StrictModel):
    generator: GeneratorConfig = GeneratorConfig(max_batch_size=8, batch_wait_timeout_s=0.05)
    #: generator settings compared in the same run, each over ``generator``: name -> overrides (for
    #: example ``{backend: onnx}``). The first is the baseline of the ratios; empty: ``generator`` alone.
    variants: dict[str, dict[str, Any]] = {}
    requests: int = Field(default=16, ge=1)
    concurrency: list[int] = [1, 8]
    max_tokens: int = Field(default=32, ge=1)
    num_cpus: float = 2.0
    ray: RayConfig = RayConfig()
    results_dir: Path = Path("results/bench_batching")

    def generators(self) -> dict[str, GeneratorConfig]:
        if not self.variants:
            return {self.generator.backend: self.generator}
        return {name: GeneratorConfig.model_validate({**self.generator.model_dump(), **over})
                for name, over in self.variants.items()}


_PROMPTS = ["What is the capital of France?", "Name three primary colours.", "Explain what a list is in Python.",
            "Why is the sky blue?", "Give me a tip for sleeping well.", "What is photosynthesis?",
            "How many legs does a spider have?", "What does a compiler do?"]


def _prepare(gen: GeneratorConfig) -> None:
    """Build what a replica would otherwise build on first start (the GGUF conversion, the ONNX
    export), so that deploy times compare loading, not one-off conversions."""
    from rayapp.generate.engine import onnx_model_dir
    from rayapp.models import resolve_generator

    if gen.backend == "onnx":
        onnx_model_dir(gen)
    else:
        resolve_generator(gen.model)


def _bench_one(gen: GeneratorConfig, cfg: BenchBatchingConfig) -> tuple[dict[str, Any], list[str]]:
    import asyncio

    from ray import serve

    from rayapp.serve._deployments import Generator

    _prepare(gen)
    t0 = time.perf_counter()
    handle = serve.run(serve.deployment(Generator).options(
        name="Generator", ray_actor_options={"num_cpus": cfg.num_cpus}, max_ongoing_requests=64).bind(gen),
        name="bench_batching", route_prefix=None)
    ready_s = time.perf_counter() - t0
    reqs = [{"messages": [{"role": "user", "content": _PROMPTS[i % len(_PROMPTS)]}],
             "sampling": {"max_tokens": cfg.max_tokens, "temperature": 0.0, "top_p": 1.0, "seed": None, "stop": []}}
            for i in range(cfg.requests)]
    t0 = time.perf_counter()
    handle.chat.remote(reqs[0]).result()  # warm up
    first_s = time.perf_counter() - t0

    async def drive(conc: int):
        sem = asyncio.Semaphore(conc)

        async def one(r):
            async with sem:
                return await handle.chat.remote(r)

        return await asyncio.gather(*(one(r) for r in reqs))

    out: dict[str, Any] = {}
    texts: list[str] = []
    try:
        for conc in cfg.concurrency:
            before = len(handle.stats.remote().result()["batch_sizes"])
            t0 = time.perf_counter()
            res = asyncio.run(drive(conc))
            secs = time.perf_counter() - t0
            sizes = handle.stats.remote().result()["batch_sizes"][before:]
            toks = sum(r["completion_tokens"] for r in res)
            out[str(conc)] = {"seconds": secs, "completion_tokens": toks, "tokens_per_s": toks / secs,
                              "requests_per_s": len(res) / secs, "mean_batch_size": float(np.mean(sizes))}
            texts = texts or [r["text"] for r in res]
    finally:
        serve.delete("bench_batching")
    base = out[str(cfg.concurrency[0])]["tokens_per_s"]
    for v in out.values():
        v["throughput_vs_first"] = v["tokens_per_s"] / base
    return {"backend": gen.backend, "onnx_precision": gen.onnx_precision if gen.backend == "onnx" else None,
            "deploy_to_ready_s": ready_s, "first_answer_s": first_s, "concurrency": out}, texts


def bench_batching(cfg: BenchBatchingConfig) -> dict[str, Any]:
    """Completion tokens per second of one Generator replica at each concurrency, for each generator
    variant one after the other (Ray must be up). Per variant also: seconds from ``serve.run`` to a
    ready replica, and the share of answers (greedy, first concurrency) equal to the first variant's."""
    variants: dict[str, Any] = {}
    first_texts: list[str] = []
    for name, gen in cfg.generators().items():
        r, texts = _bench_one(gen, cfg)
        first_texts = first_texts or texts
        r["same_answers_as_first"] = float(np.mean([a == b for a, b in zip(texts, first_texts)]))
        variants[name] = r
    first = next(iter(variants.values()))
    for r in variants.values():
        r["ready_vs_first"] = r["deploy_to_ready_s"] / first["deploy_to_ready_s"]
        for k, v in r["concurrency"].items():
            v["tokens_per_s_vs_first_variant"] = v["tokens_per_s"] / first["concurrency"][k]["tokens_per_s"]
    return {"requests": cfg.requests, "max_tokens": cfg.max_tokens, "concurrency": first["concurrency"],
            "variants": variants}
