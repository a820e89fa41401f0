"""The generate benchmarks' mechanics at a tiny size (a random Llama; the figures mean nothing)."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.shared_data
def test_bench_pica_small(tiny_lm_dir, tmp_path):
    if not (SHARED_DATA / "pubmedqa_labeled").is_dir():
        pytest.skip("../shared/data absent")
    from rayapp.config import PicaConfig
    from rayapp.generate.bench import BenchPicaConfig, bench_pica

    r = bench_pica(BenchPicaConfig(data_dir=SHARED_DATA, model=tiny_lm_dir, demos=2, queries=2, context_words=20,
                                   max_new_tokens=6, pica=PicaConfig(prior_tokens=2, stop=["<never>"]),
                                   results_dir=tmp_path))
    m = r["modes"]
    assert set(m) == {"icl", "pica", "pica (task)", "zero-shot"} and r["queries"] == 2 and r["task_vector_s"] > 0
    assert m["icl"]["rouge_l_vs_icl"] == 1.0 and m["icl"]["first32_agreement_vs_icl"] == 1.0
    assert m["icl"]["speedup_vs_icl"] == 1.0 and all(v["tokens_per_answer"] == 6 for v in m.values())
    # the zero-shot stage's cache never holds the demonstrations
    assert m["pica"]["kv_cache_len"] < m["icl"]["kv_cache_len"] and m["zero-shot"]["prompt_tokens"] < m["icl"]["prompt_tokens"]
    # task mode decodes the same prior tokens, so with the same cut it writes as many tokens
    assert m["pica (task)"]["tokens_per_answer"] == 6 and m["pica (task)"]["kv_cache_len"] == m["pica"]["kv_cache_len"]
    assert set(m["icl"]["seconds"]) == {"prefill", "decode"} and {"few_shot", "zero_shot"} <= set(m["pica"]["seconds"])
