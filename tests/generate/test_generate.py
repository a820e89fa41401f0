import pytest

from rayapp.config import GeneratorConfig
from rayapp.generate import Generator, build_messages, parse_citations
from rayapp.models import ModelNotFoundError, check_generator, resolve_generator
from rayapp.types import Hit


def hits(*texts):
    return [Hit(id=f"p{i}", kind="passage", score=1.0 / (i + 1), stage="t", text=t) for i, t in enumerate(texts)]


def test_messages_number_passages_within_budget():
    cfg = GeneratorConfig(max_context_words=20)
    msgs, used = build_messages("What?", hits("a " * 10, "b " * 8, "c " * 5), cfg)
    assert [h.id for h in used] == ["p0", "p1"]
    user = msgs[1]["content"]
    assert "[1] a a" in user and "[2] b b" in user and "[3]" not in user and user.endswith("Question: What?")
    assert msgs[0] == {"role": "system", "content": cfg.system_prompt}


def test_first_passage_always_used():
    _, used = build_messages("q", hits("x " * 100), GeneratorConfig(max_context_words=16))
    assert len(used) == 1


def test_parse_citations():
    used = hits("a", "b", "c")
    assert parse_citations("See [2] and [1, 3]; again [2].", used) == ["p1", "p0", "p2"]
    assert parse_citations("No [0] or [4] or [x] markers", used) == []


def test_generator_mechanics_on_tiny_model(tiny_lm_dir):
    cfg = GeneratorConfig(model=tiny_lm_dir, max_new_tokens=5)
    out = Generator(cfg).generate("What is json?", hits("json encodes objects", "csv reads rows"))
    assert out["text"].startswith(cfg.answer_prefix.strip())
    assert 1 <= out["n_new_tokens"] <= 5 and out["context_ids"] == ["p0", "p1"]
    assert set(out["citations"]) <= {"p0", "p1"}


def test_missing_model_is_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"generator.model: model '.*/nope' not found"):
        check_generator(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve_generator("./relative/missing")


def test_real_smollm2_answers_and_cites(smollm2_dir):
    gen = Generator(GeneratorConfig(model=smollm2_dir, max_new_tokens=24))
    ev = hits("tempfile.TemporaryDirectory creates a temporary directory that is removed when the context ends.",
              "csv.reader reads rows from a CSV file.")
    out = gen.generate("How do I get a temporary directory that is deleted automatically?", ev)
    assert out["citations"] and out["citations"][0] in {"p0", "p1"}
    assert len(out["text"]) > len(GeneratorConfig().answer_prefix)


def test_first_citation_is_constrained_to_a_source_number(tiny_lm_dir):
    """Even a random model opens its answer on a valid source number when constrained."""
    gen = Generator(GeneratorConfig(model=tiny_lm_dir, max_new_tokens=3))
    out = gen.generate("q?", hits("one", "two", "three"))
    assert out["text"][len("According to ["):][0] in "123"
