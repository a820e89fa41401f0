"""Data and benchmarks of the extract stage.

- :func:`build_extract_data`: PubMedQA PQA-L as extraction rows (train and held-out test splits).
- :func:`bench_extract`: every extractor (full passages, top sentences, SEER, LEAR, ...) on the same
  held-out rows, answered by the same generator with the same prompt (only the evidence differs):
  compression ratio, answer EM/F1, extract and answer time per query. The extractors are
  interleaved per question, so a slower machine moment hits them all alike.
- :func:`bench_lear`: a short LEAR GRPO run; mean reward, format reward and compression per step
  (JSON, Markdown, PNG curves) and whether each rose (last third vs first third of the steps).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field

from rayapp.config import ExtractorConfig, RayConfig, StrictModel
from rayapp.train.config import TrainLearConfig

__all__ = ["BuildExtractDataConfig", "build_extract_data", "BenchExtractConfig", "bench_extract",
           "BenchLearConfig", "bench_lear", "read_step_metrics"]


class BuildExtractDataConfig(StrictModel):
    source: Literal["pubmedqa"] = "pubmedqa"
    data_dir: Optional[Path] = None
    #: split -> output JSONL; PubMedQA's official test split is the held-out one
    splits: dict[Literal["train", "test"], Path] = {"train": Path("results/extract_data/train.jsonl"),
                                                      "test": Path("results/extract_data/test.jsonl")}
    limit: Optional[int] = Field(default=None, ge=1, description="rows per split")
    max_passage_words: Optional[int] = Field(default=None, ge=8)


def build_extract_data(cfg: BuildExtractDataConfig) -> dict[str, Any]:
    from rayapp.extract.data import ExtractDataError, pubmedqa_extract_rows, write_extract_rows

    out = {}
    for split, path in cfg.splits.items():
        try:
            rows = pubmedqa_extract_rows(split, cfg.data_dir, cfg.limit, cfg.max_passage_words)
        except FileNotFoundError as e:
            raise ExtractDataError(str(e)) from None
        write_extract_rows(rows, path)
        out[split] = {"path": str(path), "rows": len(rows),
                      "mean_passage_words": float(np.mean([sum(len(p.split()) for p in r["passages"]) for r in rows]))}
    return out


class NamedExtractor(ExtractorConfig):
    name: str


class BenchExtractConfig(StrictModel):
    data: Path = Path("results/extract_data/test.jsonl")
    limit: Optional[int] = Field(default=50, ge=1)
    generator: str = "smollm2"
    max_answer_tokens: int = Field(default=12, ge=2)
    extractors: list[NamedExtractor] = Field(min_length=1)
    torch_threads: int = Field(default=2, ge=1)
    results_dir: Path = Path("results/bench_extract")


def bench_extract(cfg: BenchExtractConfig) -> dict[str, Any]:
    from rayapp.extract.data import read_extract_rows
    from rayapp.extract.lear import ANSWER_PREFIX, ANSWER_STOP, answer_text
    from rayapp.extract.model import make_extractor
    from rayapp.extract.prompts import answer_prompt
    from rayapp.extract.rewards import exact_match, unigram_f1
    from rayapp.models import resolve_generator
    from rayapp.train.rollout import RolloutWorker

    rows, bad = read_extract_rows(cfg.data)
    rows = rows[: cfg.limit]
    names = [e.name for e in cfg.extractors]
    if len(set(names)) != len(names):
        raise ValueError(f"extractors: names must be unique, got {names}")
    extractors = {e.name: make_extractor(e) for e in cfg.extractors}
    gen = RolloutWorker(resolve_generator(cfg.generator), cfg.torch_threads)  # greedy, as in LEAR's answers
    per: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in rows:
        for name, ex in extractors.items():
            t0 = time.perf_counter()
            ev = ex(r["question"], r["passages"])
            t1 = time.perf_counter()
            prompt = answer_prompt(r["question"], evidence=ev.evidence or " ", answer_format=r["answer_format"])
            out = gen.generate([prompt], cfg.max_answer_tokens, temperature=0.0, stop=[ANSWER_STOP],
                               prefix=ANSWER_PREFIX)[0]
            t2 = time.perf_counter()
            a = answer_text(out["text"])
            per[name].append({"id": r["id"], "answer": a, "em": max(exact_match(a, g) for g in r["answers"]),
                              "f1": max(unigram_f1(a, g) for g in r["answers"]), "compression": ev.compression,
                              "evidence_words": len(ev.evidence.split()), "extract_s": t1 - t0, "answer_s": t2 - t1,
                              "fallback": ev.rationale.startswith("no evidence extracted")})
    summary = {}
    for name, items in per.items():
        comp = [x["compression"] for x in items if np.isfinite(x["compression"])]
        summary[name] = {"em": float(np.mean([x["em"] for x in items])), "f1": float(np.mean([x["f1"] for x in items])),
                         "compression": float(np.mean(comp)) if comp else None,
                         "evidence_words": float(np.mean([x["evidence_words"] for x in items])),
                         "extract_s": float(np.mean([x["extract_s"] for x in items])),
                         "answer_s": float(np.mean([x["answer_s"] for x in items])),
                         "fallbacks": int(sum(x["fallback"] for x in items))}
    return {"rows": len(rows), "bad_rows": len(bad), "summary": summary, "per_query": per}


class BenchLearConfig(StrictModel):
    train: TrainLearConfig
    ray: RayConfig = RayConfig()
    results_dir: Path = Path("results/bench_lear")


def read_step_metrics(path: Path) -> list[dict[str, Any]]:
    """Per-step metrics from ``metrics.jsonl``, the last record of each step (steps replayed after a
    resume are written again)."""
    by_step: dict[int, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                m = json.loads(line)
                by_step[m["step"]] = m
    return [by_step[k] for k in sorted(by_step)]


def bench_lear(cfg: BenchLearConfig) -> dict[str, Any]:
    from rayapp.train.grpo import train_lear

    t0 = time.perf_counter()
    out = train_lear(cfg.train)
    steps = read_step_metrics(Path(out["metrics_file"]))
    third = max(1, len(steps) // 3)
    trend = {}
    for key in ("mean_reward", "mean_format", "mean_compression", "mean_answer", "mean_length"):
        vals = [s[key] for s in steps if s.get(key) is not None]
        if len(vals) >= 2:
            first, last = float(np.mean(vals[:third])), float(np.mean(vals[-third:]))
            trend[key] = {"first_third": first, "last_third": last, "rose": last > first}
    phases = {k: float(np.mean([s[k] for s in steps])) for k in ("sync_s", "rollout_s", "reward_s", "update_s", "step_s")}
    _plot(steps, Path(cfg.results_dir) / "bench_lear.png")
    cold = None
    if cfg.train.cold_start:  # the supervised format stage before GRPO: its loss curve
        sft = read_step_metrics(Path(cfg.train.output_dir).resolve() / "cold_start" / "metrics.jsonl")
        cold = {"steps": sft, "first_loss": sft[0]["loss"] if sft else None, "last_loss": sft[-1]["loss"] if sft else None,
                "seconds": round(sum(s["step_s"] for s in sft), 1)}
    return {"train": {k: v for k, v in out.items() if k != "metrics"}, "cold_start": cold, "steps": steps, "trend": trend,
            "phase_seconds_mean": phases, "seconds": round(time.perf_counter() - t0, 1)}


def _plot(steps: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    x = [s["step"] for s in steps]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, title in zip(axes, ("mean_reward", "mean_format", "mean_compression"),
                              ("mean reward R", "format reward R_fmt", "compression (passage / evidence words)")):
        y = [s.get(key) if s.get(key) is not None else np.nan for s in steps]
        ax.plot(x, y, marker=".", alpha=0.5, label="per step")
        if len(y) >= 5:
            k = 5
            smooth = np.convolve(np.nan_to_num(y, nan=np.nanmean(y)), np.ones(k) / k, mode="valid")
            ax.plot(x[k - 1:], smooth, linewidth=2, label="5-step mean")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
