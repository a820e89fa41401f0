"""Benchmark: PICA vs vanilla ICL vs zero-shot on PubMedQA long answers (same demonstrations).

    python -m jobs.bench_pica --config configs/bench_pica.yaml
Needs ../shared/data (or $RAYAPP_DATA_DIR). Writes JSON and a Markdown table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rayapp._internal.jobs import run_job
from rayapp.generate.bench import BenchPicaConfig


def _run(cfg: BenchPicaConfig, _path) -> None:
    from rayapp.eval import write_report
    from rayapp.generate.bench import bench_pica

    r = bench_pica(cfg)
    cols = ["s_per_answer", "tokens_per_answer", "tokens_per_s", "speedup_vs_icl", "rouge_l_vs_icl",
            "first32_agreement_vs_icl", "rouge_l_vs_reference", "prompt_tokens", "kv_cache_len"]
    rows = [[name] + [round(m[c], 3) for c in cols] for name, m in r["modes"].items()]
    write_report(cfg.results_dir, "bench_pica", {**r, "config": cfg.model_dump(mode="json")},
                 ["mode", "s/answer", "tokens/answer", "tokens/s", "speedup vs ICL", "ROUGE-L vs ICL",
                  "first-32 agreement vs ICL", "ROUGE-L vs reference", "prompt tokens", "KV cache"], rows,
                 notes=f"{r['queries']} PubMedQA test questions with their abstracts ({cfg.context_words} words), "
                       f"{r['demos']} train demonstrations, greedy, max {cfg.max_new_tokens} new tokens, "
                       f"PICA prior tokens {cfg.pica.prior_tokens}, layers {r['layers']}; "
                       f"{r['modes']['pica']['finished_in_few_shot']} answers finished in the few-shot stage"
                       + (f"; the task-level vector took {r['task_vector_s']:.1f} s once" if r["task_vector_s"] else "")
                       + (". Fixed length: stop strings ignored." if cfg.fixed_length else "."))
    print((Path(cfg.results_dir) / "bench_pica.md").read_text())
    print(f"PICA vs ICL: {r['modes']['pica']['speedup_vs_icl']:.2f}x faster, "
          f"ROUGE-L to ICL {r['modes']['pica']['rouge_l_vs_icl']:.3f}")


def main(argv=None) -> int:
    return run_job("rayapp bench-pica", BenchPicaConfig, "configs/bench_pica.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
