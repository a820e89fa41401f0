import numpy as np
import pytest
import torch

from rayapp.embed import Embedder
from rayapp.train.soup import SoupError, model_soup


@pytest.fixture(scope="module")
def two_decoders(tiny_lm_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("soup")
    a = Embedder.from_pretrained(tiny_lm_dir)
    pa = a.save(root / "a")
    b = Embedder.from_pretrained(tiny_lm_dir)
    with torch.no_grad():
        for p in b.backbone.parameters():
            p.add_(0.5)
    pb = b.save(root / "b")
    return str(pa), str(pb), root


def test_uniform_and_weighted_soup(two_decoders):
    pa, pb, root = two_decoders
    sa = Embedder.from_pretrained(pa).backbone.state_dict()
    sb = Embedder.from_pretrained(pb).backbone.state_dict()
    for name, weights, wa in [("u", None, 0.5), ("w", [3, 1], 0.75)]:
        out = model_soup([pa, pb], root / name, weights)
        soup = Embedder.from_pretrained(str(out))
        ss = soup.backbone.state_dict()
        k = "layers.0.self_attn.q_proj.weight"
        assert torch.allclose(ss[k], wa * sa[k] + (1 - wa) * sb[k], atol=1e-6)
        v = soup.encode(["the soup loads and scores", "second text"])
        assert v.shape[0] == 2 and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


def test_soup_errors(two_decoders, minilm):
    pa, pb, root = two_decoders
    with pytest.raises(SoupError, match="at least two"):
        model_soup([pa], root / "x")
    with pytest.raises(SoupError, match="do not fit 2 models"):
        model_soup([pa, pb], root / "x", [1.0])
    with pytest.raises(SoupError, match="parameters differ"):
        model_soup([pa, "minilm"], root / "x")
