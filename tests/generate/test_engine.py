"""The chat engine: batched completions, stop strings, streaming, seeds, backend registry."""

import pytest

from rayapp.config import GeneratorConfig
from rayapp.generate import BACKENDS, BackendUnavailableError, ChatMessage, HFBackend, Sampling, make_backend


@pytest.fixture(scope="module")
def engine(tiny_lm_dir):
    return HFBackend(GeneratorConfig(model=tiny_lm_dir, repetition_penalty=1.0))


def msgs(text):
    return [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content=text)]


def test_batch_matches_one_at_a_time_and_keeps_order(engine):
    s = Sampling(max_tokens=6)
    questions = ["What is json?", "Name a prime number larger than ten, please.", "Hi"]
    alone = [engine.complete([(msgs(q), s)])[0] for q in questions]
    batched = engine.complete([(msgs(q), s) for q in questions])
    assert [c.prompt_tokens for c in batched] == [len(engine.prompt_ids(msgs(q))) for q in questions]
    # left padding with an attention mask: the same greedy tokens as unpadded decoding
    assert [c.text for c in batched] == [c.text for c in alone]
    assert all(c.completion_tokens == 6 and c.finish_reason == "length" for c in batched)


def test_mixed_settings_in_one_batch(engine):
    out = engine.complete([(msgs("a"), Sampling(max_tokens=3)), (msgs("b"), Sampling(max_tokens=5)),
                           (msgs("c"), Sampling(max_tokens=4, temperature=0.8, seed=1))])
    assert [c.completion_tokens for c in out] == [3, 5, 4]


def test_stop_string_cuts_the_text(engine):
    full = engine.complete([(msgs("json?"), Sampling(max_tokens=8))])[0].text
    stop = full[len(full) // 2: len(full) // 2 + 2]
    assert stop.strip(), full
    cut = engine.complete([(msgs("json?"), Sampling(max_tokens=8, stop=[stop]))])[0]
    assert cut.finish_reason == "stop" and stop not in cut.text and full.startswith(cut.text)


def test_seeded_sampling_is_reproducible(engine):
    s = Sampling(max_tokens=8, temperature=1.5, seed=7)
    a, b = (engine.complete([(msgs("tell me"), s)])[0].text for _ in range(2))
    assert a == b
    others = {engine.complete([(msgs("tell me"), Sampling(max_tokens=8, temperature=1.5, seed=k))])[0].text
              for k in range(4)}
    assert len(others) > 1


def test_stream_joins_to_the_completion(engine):
    s = Sampling(max_tokens=7)
    chunks = list(engine.stream(msgs("What is csv?"), s))
    assert "finish_reason" in chunks[-1] and chunks[-1]["usage"]["completion_tokens"] == 7
    text = "".join(c.get("delta", "") for c in chunks)
    assert text == engine.complete([(msgs("What is csv?"), s)])[0].text
    full = text
    stop = full[3:5]
    chunks = list(engine.stream(msgs("What is csv?"), Sampling(max_tokens=7, stop=[stop])))
    streamed = "".join(c.get("delta", "") for c in chunks)
    assert stop not in streamed and full.startswith(streamed) and chunks[-1]["finish_reason"] == "stop"


def test_backend_registry_and_vllm_error(tiny_lm_dir):
    assert {"hf", "vllm"} <= set(BACKENDS)
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    with pytest.raises(BackendUnavailableError, match="'vllm' needs the vllm package"):
        make_backend(GeneratorConfig(model=tiny_lm_dir, backend="vllm"))


def test_non_string_content_is_refused():
    with pytest.raises(ValueError, match="content"):
        ChatMessage(role="user", content=["a", "list"])
    with pytest.raises(ValueError, match="role"):
        ChatMessage(role="robot", content="hi")
