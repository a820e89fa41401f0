"""The ONNX Runtime embedder path against SentenceTransformer.encode on the same MiniLM."""

import numpy as np
import pytest

from rayapp.config import EmbedConfig

TEXTS = [("token%d " % i) * (1 + (7 * i) % 60) + "and a closing sentence." for i in range(40)] + [
    "short", "A question about the temporary directory module?", "ünïcödé text — with dashes."]


@pytest.fixture(scope="module")
def onnx_encoder(tmp_path_factory, monkeypatch_module):
    from rayapp.models._onnx import OnnxEncoder

    monkeypatch_module.setenv("RAYAPP_MODEL_CACHE", str(tmp_path_factory.mktemp("models")))
    return OnnxEncoder("minilm", 256, threads=2)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_onnx_vectors_match_sentence_transformers(onnx_encoder, minilm):
    want = minilm.encode(TEXTS, batch_size=16, normalize_embeddings=True)
    got = onnx_encoder.encode(TEXTS, batch_size=16)
    assert got.shape == want.shape and got.dtype == np.float32
    assert (got * want).sum(axis=1).min() >= 0.9999
    # batch size and order do not change a text's vector
    again = onnx_encoder.encode(TEXTS[::-1], batch_size=5)[::-1]
    assert np.abs(again - got).max() < 1e-5


def test_export_is_cached_and_fused(onnx_encoder):
    import json
    import os
    from pathlib import Path

    (folder,) = [p for p in Path(os.environ["RAYAPP_MODEL_CACHE"]).iterdir() if p.name.startswith("onnx-")]
    fused = json.loads((folder / "manifest.json").read_text())["fusions"]
    assert fused["Attention"] == 6 and fused["SkipLayerNormalization"] == 12  # 6 layers of MiniLM


def test_unsupported_pooling_is_refused(minilm, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling

    from rayapp.models._onnx import OnnxEncoder, UnsupportedForOnnx

    cls_model = SentenceTransformer(modules=[minilm[0], Pooling(384, pooling_mode="cls")], device="cpu")
    cls_model.save(str(tmp_path / "cls"))
    with pytest.raises(UnsupportedForOnnx, match="mean Pooling.*'cls'.*use backend: torch"):
        OnnxEncoder(str(tmp_path / "cls"), 256, threads=1)
    with pytest.raises(UnsupportedForOnnx, match="needs a local model folder"):
        OnnxEncoder("someorg/somemodel", 256, threads=1)


def test_decoder_embedder_is_refused(tmp_path):
    """A KaLM-style decoder (mean pooled) is left to torch: the export and fusions are BERT-only."""
    import json

    from rayapp.models._onnx import OnnxEncoder, UnsupportedForOnnx

    mods = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (tmp_path / "modules.json").write_text(json.dumps(mods))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2", "architectures": ["Qwen2Model"]}))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "mean"}))
    with pytest.raises(UnsupportedForOnnx, match="is a decoder \\(qwen2\\): use backend: torch"):
        OnnxEncoder(str(tmp_path), 256, threads=1)


def test_embed_texts_onnx_backend_on_ray(ray_session, minilm, monkeypatch_module, onnx_encoder):
    from rayapp.data.embed import embed_texts

    vecs = embed_texts(TEXTS, EmbedConfig(backend="onnx", actors=1, num_cpus_per_actor=1, torch_threads=1, batch_size=8))
    want = minilm.encode(TEXTS, normalize_embeddings=True)
    assert (vecs * want).sum(axis=1).min() >= 0.9999


def test_text_encoder_backends_agree(onnx_encoder, minilm):
    """``load_text_encoder``: the same normalised vectors, token counts and width from both
    runtimes; ``onnx`` refuses a model it cannot run, ``auto`` falls back to torch."""
    from rayapp.models._onnx import UnsupportedForOnnx, load_text_encoder

    onnx, torch_ = load_text_encoder("minilm", 256, "auto", threads=2), load_text_encoder("minilm", 256, "torch")
    assert (onnx.backend, torch_.backend, onnx.dim, torch_.dim) == ("onnx", "torch", 384, 384)
    a, b = onnx.encode(TEXTS[:8]), torch_.encode(TEXTS[:8])
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5) and (a * b).sum(axis=1).min() >= 0.9999
    assert onnx.encode(TEXTS[0]).shape == (384,)
    assert onnx.count_tokens(TEXTS[:8]) == torch_.count_tokens(TEXTS[:8])
    assert onnx.count_tokens(["word " * 1000])[0] == 256  # truncated as the model sees it
    with pytest.raises(ValueError, match="'auto', 'onnx' or 'torch', not 'tf'"):
        load_text_encoder("minilm", 256, "tf")
    with pytest.raises(UnsupportedForOnnx, match="local model folder"):
        load_text_encoder("no/such-model", 256, "onnx")
