"""The embedder: bidirectional decoders, pooling, Matryoshka truncation, sentence-transformers folders."""

import numpy as np
import pytest
import torch

from rayapp.embed import Embedder, format_query


def token_outputs(model, ids):
    with torch.no_grad():
        return model.backbone(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state


@pytest.mark.parametrize("padded", [False, True])
def test_bidirectional_decoder_sees_later_tokens(tiny_lm_dir, padded):
    causal = Embedder.from_pretrained(tiny_lm_dir, bidirectional=False)
    bidir = Embedder.from_pretrained(tiny_lm_dir)  # default for decoders
    a = torch.tensor([[5, 6, 7, 8]])
    b = torch.tensor([[5, 6, 7, 99]])  # only the last token differs
    if padded:  # a padded batch goes through transformers' mask builder, an unpadded one through is_causal
        a, b = torch.cat([a, torch.tensor([[5, 6, 0, 0]])]), torch.cat([b, torch.tensor([[5, 6, 0, 0]])])
        mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
        run = lambda m, x: m.backbone(input_ids=x, attention_mask=mask).last_hidden_state.detach()  # noqa: E731
    else:
        run = token_outputs
    assert torch.allclose(run(causal, a)[0, 0], run(causal, b)[0, 0])  # causal: token 0 ignores token 3
    assert not torch.allclose(run(bidir, a)[0, 0], run(bidir, b)[0, 0], atol=1e-6)
    assert bidir.pooling == "lasttoken" and bidir.backbone.config.is_causal is False


def test_pooling_modes_and_matryoshka(tiny_lm_dir):
    m = Embedder.from_pretrained(tiny_lm_dir, pooling="mean")
    enc = m.tokenize(["a b c d e", "a b"], 16)
    hidden = m.backbone(**enc).last_hidden_state.detach()
    mask = enc["attention_mask"]
    vec = m(enc["input_ids"], mask).detach()
    want = hidden[1, : int(mask[1].sum())].mean(0)
    assert torch.allclose(vec[1], want / want.norm(), atol=1e-5)
    m.pooling = "lasttoken"
    last = int(mask[1].sum()) - 1
    assert torch.allclose(m(enc["input_ids"], mask).detach()[1], hidden[1, last] / hidden[1, last].norm(), atol=1e-5)
    m.pooling = "cls"
    assert torch.allclose(m(enc["input_ids"], mask).detach()[0], hidden[0, 0] / hidden[0, 0].norm(), atol=1e-5)
    full, cut = m.encode(["x y z", "hello"], dim=None), m.encode(["x y z", "hello"], dim=16)
    assert cut.shape == (2, 16) and np.allclose(np.linalg.norm(cut, axis=1), 1, atol=1e-5)
    assert np.allclose(cut, full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True), atol=1e-5)
    with pytest.raises(ValueError, match="pooling must be mean, cls or lasttoken"):
        Embedder(m.backbone, m.tokenizer, pooling="max")


def test_query_format():
    assert format_query("what is ray", "Given a question, retrieve passages") == (
        "Instruct: Given a question, retrieve passages \n Query: what is ray")
    assert format_query("plain") == "plain"


def test_minilm_round_trip_is_a_sentence_transformers_folder(minilm, tmp_path):
    from sentence_transformers import SentenceTransformer

    from rayapp.models import resolve_embedder

    m = Embedder.from_pretrained(resolve_embedder("minilm"))
    assert m.pooling == "mean"
    texts = ["The tempfile module makes temporary directories.", "Ray Data streams blocks.", "short"]
    ours = m.encode(texts)
    assert (ours * minilm.encode(texts, normalize_embeddings=True)).sum(1).min() > 0.9999
    out = m.save(tmp_path / "st")
    assert (out / "model.safetensors").is_file() or list(out.rglob("*.safetensors"))
    st = SentenceTransformer(str(out), device="cpu")
    assert (st.encode(texts, normalize_embeddings=True) * ours).sum(1).min() > 0.9999
    again = Embedder.from_pretrained(str(out))
    assert again.pooling == "mean" and np.allclose(again.encode(texts), ours, atol=1e-5)


def test_bidirectional_decoder_round_trip(tiny_lm_dir, tmp_path):
    from rayapp.models import load_sentence_transformer

    m = Embedder.from_pretrained(tiny_lm_dir)
    out = m.save(tmp_path / "dec")
    st = load_sentence_transformer(str(out))  # rayapp's loader restores the bidirectional flags
    texts = ["one two three", "four five six seven"]
    assert np.allclose(st.encode(texts, normalize_embeddings=True), m.encode(texts), atol=1e-4)
    assert Embedder.from_pretrained(str(out)).pooling == "lasttoken"


def test_lora_and_gradient_checkpointing_train_and_save(tiny_lm_dir, tmp_path):
    from rayapp.train.config import LoraConfig
    from rayapp.train._policy import apply_lora
    from rayapp.train.losses import info_nce_loss

    m = Embedder.from_pretrained(tiny_lm_dir, gradient_checkpointing=True)
    m.backbone = apply_lora(m.backbone, LoraConfig(r=4, alpha=8))
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    m.train()
    q, p = m.tokenize(["q one", "q two"], 16), m.tokenize(["p one", "p two"], 16)
    loss = info_nce_loss(m(**q), m(**p), None, tau=0.05, gather=False)
    loss.backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if p.requires_grad)
    m.backbone = m.backbone.merge_and_unload()
    out = m.save(tmp_path / "merged")
    assert Embedder.from_pretrained(str(out)).encode(["q one"]).shape == (1, 32)
    with pytest.raises(ValueError, match="none of .* is a module of this model"):
        apply_lora(Embedder.from_pretrained(tiny_lm_dir).backbone, LoraConfig(target_modules=["nope"]))
