"""The ``onnx`` chat engine (ONNX Runtime GenAI) against the ``hf`` one on the real SmolLM2-135M."""

import json
import subprocess
import sys

import pytest

from rayapp.config import GeneratorConfig
from rayapp.generate import BackendUnavailableError, ChatMessage, Generator, HFBackend, OnnxBackend, Sampling
from rayapp.types import Hit

pytest.importorskip("onnxruntime_genai")


@pytest.fixture(scope="module")
def onnx_engine(smollm2_dir):
    return OnnxBackend(GeneratorConfig(backend="onnx"))


@pytest.fixture(scope="module")
def hf_engine(smollm2_dir):
    return HFBackend(GeneratorConfig())


def msgs(text, system="Be brief."):
    return ([ChatMessage(role="system", content=system)] if system else []) + [ChatMessage(role="user", content=text)]


QUESTIONS = [msgs("What is json?"), msgs("Name a prime number larger than ten, please."), msgs("Hi", system=None)]


def test_greedy_completions_equal_hf_batched_or_not(onnx_engine, hf_engine):
    s = Sampling(max_tokens=12)
    hf = hf_engine.complete([(m, s) for m in QUESTIONS])
    alone = [onnx_engine.complete([(m, s)])[0] for m in QUESTIONS]
    batched = onnx_engine.complete([(m, s) for m in QUESTIONS])
    assert [c.text for c in alone] == [c.text for c in hf], [c.text for c in alone]
    assert [c.to_dict() for c in batched] == [c.to_dict() for c in alone]
    assert [c.prompt_tokens for c in batched] == [len(hf_engine.prompt_ids(m)) for m in QUESTIONS]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in hf]


def test_mixed_limits_in_one_batch(onnx_engine):
    out = onnx_engine.complete([(msgs("a"), Sampling(max_tokens=3)), (msgs("b"), Sampling(max_tokens=5)),
                                (msgs("c"), Sampling(max_tokens=4, temperature=0.8, seed=1))])
    assert [c.completion_tokens for c in out] == [3, 5, 4]
    assert all(c.finish_reason == "length" for c in out)


def test_rag_answer_equals_the_hf_generator(onnx_engine, hf_engine):
    hits = [Hit(id="a", kind="passage", score=1.0, stage="t", text="Paris is the capital and largest city of France."),
            Hit(id="b", kind="passage", score=0.5, stage="t", text="Berlin is the capital of Germany.")]
    cfg = GeneratorConfig()
    ref = Generator(cfg, hf_engine.tok, hf_engine.model).generate("What is the capital of France?", hits, 20)
    got = onnx_engine.answer("What is the capital of France?", hits, 20)
    keys = ("text", "citations", "context_ids", "n_prompt_tokens", "n_new_tokens")
    assert {k: got[k] for k in keys} == {k: ref[k] for k in keys}
    assert got["text"].startswith(cfg.answer_prefix + "1]") and got["citations"][0] == "a"


def test_first_citation_is_constrained_to_a_source_number(onnx_engine):
    """With an answer prefix ending in "[", the first token is a source number even when the model
    would rather write something else after "According to [" (here: a one-passage prompt whose
    passage is unrelated)."""
    hits = [Hit(id="x", kind="passage", score=1.0, stage="t", text="Bananas are yellow.")]
    out = onnx_engine.answer("Who wrote Hamlet?", hits, 3)
    assert out["text"].startswith("According to [1") and out["citations"] == ["x"]


def test_stop_string_and_stream(onnx_engine):
    s = Sampling(max_tokens=10)
    full = onnx_engine.complete([(msgs("What is csv?"), s)])[0]
    chunks = list(onnx_engine.stream(msgs("What is csv?"), s))
    assert "".join(c.get("delta", "") for c in chunks) == full.text
    assert chunks[-1] == {"finish_reason": full.finish_reason,
                          "usage": {"prompt_tokens": full.prompt_tokens, "completion_tokens": full.completion_tokens}}
    stop = full.text[len(full.text) // 2: len(full.text) // 2 + 2]
    assert stop.strip(), full.text
    cut = onnx_engine.complete([(msgs("What is csv?"), Sampling(max_tokens=10, stop=[stop]))])[0]
    assert cut.finish_reason == "stop" and stop not in cut.text and full.text.startswith(cut.text)
    streamed = list(onnx_engine.stream(msgs("What is csv?"), Sampling(max_tokens=10, stop=[stop])))
    assert "".join(c.get("delta", "") for c in streamed) == cut.text and streamed[-1]["finish_reason"] == "stop"


def test_seeded_sampling_is_reproducible(onnx_engine):
    s = Sampling(max_tokens=8, temperature=1.5, seed=7)
    a, b = (onnx_engine.complete([(msgs("tell me"), s)])[0].text for _ in range(2))
    assert a == b
    others = {onnx_engine.complete([(msgs("tell me"), Sampling(max_tokens=8, temperature=1.5, seed=k))])[0].text
              for k in range(4)}
    assert len(others) > 1


def test_export_is_cached_and_loading_imports_no_torch(onnx_engine):
    from rayapp.generate.engine import onnx_model_dir

    path = onnx_model_dir(GeneratorConfig(backend="onnx"))
    assert json.loads((path / "manifest.json").read_text())["kind"] == "onnx-genai"
    assert (path / "genai_config.json").is_file() and not (path / "_builder_cache").exists()
    code = ("import sys; from rayapp.config import GeneratorConfig; from rayapp.generate import OnnxBackend; "
            "OnnxBackend(GeneratorConfig(backend='onnx')); "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_clear_errors(tmp_path):
    with pytest.raises(BackendUnavailableError, match="'onnx' runs on CPU"):
        OnnxBackend(GeneratorConfig(backend="onnx", device="cuda"))
    with pytest.raises(ValueError, match="cannot share a torch one"):
        OnnxBackend(GeneratorConfig(backend="onnx"), tokenizer=object(), model=object())
    with pytest.raises(ValueError, match="onnx_precision"):
        GeneratorConfig(backend="onnx", onnx_precision="int3")
    from rayapp.models._onnx import export_genai

    bad = tmp_path / "not-a-model"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"architectures": ["NoSuchForCausalLM"], "model_type": "nope"}))
    with pytest.raises(RuntimeError, match="the model builder failed on"):
        export_genai(bad, "fp32", tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("genai-*"))  # nothing half-written is left as a cache hit
