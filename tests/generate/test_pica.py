"""PICA mechanics on a tiny random Llama (greedy), and the task vector store."""

import pytest
import torch

from rayapp.generate.pica import Demo, Pica, PicaConfig, TaskVectorStore

DEMOS = [Demo(query="What is json?", answer="json encodes objects as text."),
         Demo(query="What does csv read?", answer="csv reads rows of comma separated values.")]
Q = "How do I make a temporary directory?"


@pytest.fixture(scope="module")
def lm(tiny_lm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    return tok, model


def pica(lm, **kw):
    # a random model never writes the stop fence: decoding runs to max_new_tokens
    return Pica(*lm, PicaConfig(stop=["<never>"], **kw))


def test_prior_tokens_covering_the_answer_equal_icl(lm):
    p = pica(lm, prior_tokens=12)
    out, icl = p.generate(Q, DEMOS, max_new_tokens=8), p.icl(Q, DEMOS, max_new_tokens=8)
    assert out.token_ids == icl.token_ids and len(out.token_ids) == 8 and out.stage == "few_shot"


def test_no_prior_tokens_and_no_vector_equal_zero_shot(lm):
    p = pica(lm, prior_tokens=0)
    out, zs = p.generate(Q, DEMOS, max_new_tokens=8), p.zero_shot(Q, max_new_tokens=8)
    assert out.token_ids == zs.token_ids and out.stage == "zero_shot"
    # and the demonstrations do change a greedy answer (otherwise the tests above prove nothing)
    assert p.icl(Q, DEMOS, max_new_tokens=8).token_ids != zs.token_ids


def test_vector_shape_and_injected_activations(lm):
    p = pica(lm, layers=2)
    vec = p.icl_vector(Q, DEMOS)
    n_sep, hidden = len(p.sep_ids), lm[1].config.hidden_size
    assert vec.shape == (p.n_layers + 1, n_sep, hidden) == (3, n_sep, hidden)
    # read the o_proj / embedding outputs at the separator during the zero-shot prefill, after injection
    ids, pos = p.prompt(Q, [])
    seen = {}

    def look(i, out):
        if out.shape[1] > 1:  # the prefill pass
            seen.setdefault(i, out[0, pos].clone())

    hooks = [m.register_forward_hook(lambda _m, _i, out, i=i: look(i, out)) for i, m in enumerate(p.modules)]
    try:
        p.zero_shot(Q, max_new_tokens=2, vector=vec)
    finally:
        for h in hooks:
            h.remove()
    for i in range(len(p.modules)):
        assert torch.allclose(seen[i], vec[i])
    # the query's own vector differs from the zero-shot activations: the injection is not a no-op
    zs_vec = torch.stack([seen[i] for i in range(len(p.modules))])
    with torch.no_grad():
        plain = p.icl_vector(Q, [])
    assert not torch.allclose(plain[1:], vec[1:])
    assert torch.allclose(plain[0], vec[0])  # the separator's token embeddings are the same tokens
    assert torch.allclose(zs_vec, vec)


def test_injection_changes_the_zero_shot_answer_and_the_cache_is_shorter(lm):
    p = pica(lm, prior_tokens=3)
    out = p.generate(Q, DEMOS, max_new_tokens=8)
    assert out.stage == "zero_shot" and len(out.token_ids) == 8
    assert out.cache_len["zero_shot"] < out.cache_len["few_shot"]
    icl_prompt, _ = p.prompt(Q, DEMOS)
    zs_prompt, _ = p.prompt(Q, [])
    assert out.cache_len["zero_shot"] == len(zs_prompt) + 8 - 1 and out.cache_len["few_shot"] == len(icl_prompt) + 3 - 1
    # the first prior tokens come from the few-shot stage
    assert out.token_ids[:3] == p.icl(Q, DEMOS, max_new_tokens=3).token_ids
    plain = p.zero_shot(Q, max_new_tokens=8, prior=tuple(out.token_ids[:3]))
    assert plain.token_ids[:3] == out.token_ids[:3]


def test_stop_sequence_in_the_prior_tokens_returns_early(lm):
    tok, model = lm
    p = Pica(tok, model, PicaConfig(prior_tokens=6))
    first = p.icl(Q, DEMOS, max_new_tokens=1).token_ids
    p.cfg = PicaConfig(prior_tokens=6, stop=[tok.decode(first)])
    out = p.generate(Q, DEMOS, max_new_tokens=20)
    assert out.stage == "few_shot" and out.finish_reason == "stop" and len(out.token_ids) == 1


def test_bad_vector_shape_is_refused(lm):
    p = pica(lm)
    with pytest.raises(ValueError, match="PICA vector shape"):
        p.zero_shot(Q, max_new_tokens=2, vector=torch.zeros(1, 1, 4))


def test_task_vector_store_round_trip_and_key(lm, tmp_path):
    p = pica(lm, mode="task", dummy_queries=["a?", "b?"])
    vec = p.task_vector(DEMOS)
    assert torch.allclose(vec, (p.icl_vector("a?", DEMOS) + p.icl_vector("b?", DEMOS)) / 2, atol=1e-6)
    store = TaskVectorStore(tmp_path)
    key = p.task_key(DEMOS)
    store.save("qa", key, vec, {"demos": 2})
    assert torch.equal(store.load("qa", key), vec)
    assert store.load("qa", p.task_key(DEMOS[:1])) is None and store.load("other", key) is None
    out = p.generate(Q, DEMOS, max_new_tokens=6, vector=store.load("qa", key))
    assert len(out.token_ids) == 6


def test_model_without_o_proj_is_refused(tiny_bert_dir):
    from transformers import AutoModel, AutoTokenizer

    with pytest.raises(ValueError, match="self_attn.o_proj"):
        Pica(AutoTokenizer.from_pretrained(tiny_bert_dir), AutoModel.from_pretrained(tiny_bert_dir))


def test_pica_vectors_job_stores_and_reuses(tiny_lm_dir, tmp_path, capsys):
    from jobs.pica_vectors import main

    cfg = tmp_path / "pv.yaml"
    cfg.write_text(f"model: {tiny_lm_dir}\npica:\n  mode: task\n  dummy_queries: ['a?', 'b?']\nout_dir: {tmp_path / 'v'}\n"
                   "tasks:\n  qa:\n    - query: What is json?\n      answer: A text format.\n", encoding="utf-8")
    assert main(["--config", str(cfg)]) == 0
    assert "qa: vector (2, " in capsys.readouterr().out and (tmp_path / "v" / "qa.safetensors").is_file()
    assert main(["--config", str(cfg)]) == 0
    assert "qa: up to date" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model: {tiny_lm_dir}\ntasks:\n  qa:\n    - query: q\n      answr: a\n", encoding="utf-8")
    assert main(["--config", str(bad)]) != 0
    assert "tasks.qa.0.answr: unknown key" in capsys.readouterr().err
