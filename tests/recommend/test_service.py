"""The recommender service behind /v1/recommend: top-k, clear errors, online memory appends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rayapp.recommend.service import RecommendRequestError, RecommenderService
from tests.recommend.test_train import small_cfg


def build_model_dir(tmp_path):
    """A recommender folder as train_rec writes it, with seeded untrained weights (mechanics)."""
    from rayapp.recommend.raserec import RetrievalAugmentedModule
    from rayapp.recommend.sasrec import SASRec
    from rayapp.recommend.train import _write_serving_files, load_interactions

    cfg = small_cfg(tmp_path)
    data = load_interactions(cfg)
    out = tmp_path / "out"
    out.mkdir()
    torch.manual_seed(0)
    torch.save(SASRec(data.n_items, 16, 2, 2, 32, 0.1, 8).state_dict(), tmp_path / "s1.pt")
    _write_serving_files(out, cfg, data, str(tmp_path / "s1.pt"))
    torch.save(RetrievalAugmentedModule(16, 2, 32, 0.1).state_dict(), out / "stage2.pt")
    return out


@pytest.fixture()
def model_dir(tmp_path):
    return build_model_dir(tmp_path)


def test_recommend_and_errors(model_dir):
    svc = RecommenderService(model_dir, max_history=5)
    out = svc.recommend(items=["i1", "i2"], k=3)
    assert len(out["items"]) == 3 and out["mode"] == "raserec"
    assert not {"i1", "i2"} & {x["item"] for x in out["items"]}  # seen items are excluded
    assert [x["score"] for x in out["items"]] == sorted((x["score"] for x in out["items"]), reverse=True)
    assert svc.recommend(user="u3", k=2)["history_length"] == 8
    for kw, field, needle in [({"items": ["nope", "i1"]}, "items", r"unknown item ids \['nope'\]"),
                              ({"items": []}, "items", "must not be empty"),
                              ({"items": ["i1"] * 6}, "items", "at most 5 items"),
                              ({"user": "ghost"}, "user", "unknown user 'ghost'"),
                              ({}, "items", "give the recent item ids")]:
        with pytest.raises(RecommendRequestError, match=needle) as e:
            svc.recommend(**kw)
        assert e.value.field == field


def test_append_adds_memories_visible_to_the_next_request(model_dir):
    svc = RecommenderService(model_dir)
    n = svc.recommend(items=["i1"])["memories"]
    out = svc.append("newbie", ["i5", "i6", "i7"])
    assert out["memories_added"] == 2 and out["memories"] == n + 2 and out["history_length"] == 3
    assert svc.recommend(user="newbie")["history_length"] == 3
    more = svc.append("newbie", ["i8"])
    assert more["memories_added"] == 1  # the prefix i5 i6 i7 -> i8
    with pytest.raises(RecommendRequestError, match="unknown item ids"):
        svc.append("newbie", ["zzz"])


def test_an_append_log_shares_appends_between_services_and_survives_a_restart(model_dir, tmp_path):
    """Two replicas on one log: an append taken by one is seen by the other's next request, and a
    new replica replays it; lines that cannot be applied are skipped and counted, not fatal."""
    log = tmp_path / "appends.jsonl"
    a, b = RecommenderService(model_dir, append_log=log), RecommenderService(model_dir, append_log=log)
    n = b.recommend(items=["i1"])["memories"]
    assert a.append("newbie", ["i5", "i6", "i7"])["memories_added"] == 2
    seen = b.recommend(user="newbie")
    assert seen["history_length"] == 3 and seen["memories"] == n + 2
    with pytest.raises(RecommendRequestError, match="unknown item ids"):
        a.append("newbie", ["zzz"])  # refused before it reaches the log
    with open(log, "a") as f:
        f.write('not json\n{"user": "x", "items": ["nope"]}\n{"user": "newbie", "items": ["i8"]}\n{"user": "half')
    out = b.append("newbie", ["i9"])  # ends the torn last line before writing its own
    assert out["history_length"] == 5 and out["memories_added"] == 1
    assert b.log_skipped == 3
    c = RecommenderService(model_dir, append_log=log)
    assert c.recommend(user="newbie")["history_length"] == 5 and c.log_skipped == 3
    assert c.histories[c.users["newbie"]] == b.histories[b.users["newbie"]]
    assert c.recommend(user="newbie", k=5)["items"] == b.recommend(user="newbie", k=5)["items"]
    assert a.recommend(user="newbie")["memories"] == c.recommend(user="newbie")["memories"] == n + 4


def _all_scores(svc, **kw):
    out = svc.recommend(k=1000, exclude_seen=False, **kw)
    return {x["item"]: x["score"] for x in out["items"]}, out


def test_the_onnx_backend_scores_as_torch_does(model_dir):
    """Same models, two runtimes: every item's score agrees to float rounding, before and after an
    append (whose new memories the ONNX SASRec encodes)."""
    t, o = RecommenderService(model_dir), RecommenderService(model_dir, backend="onnx")
    for kw in ({"items": ["i1", "i2", "i3"]}, {"user": "u3"}, {"items": ["i5"]}):
        (a, ma), (b, mb) = _all_scores(t, **kw), _all_scores(o, **kw)
        assert ma["mode"] == mb["mode"] == "raserec" and a.keys() == b.keys()
        assert np.allclose([a[i] for i in a], [b[i] for i in a], rtol=1e-4, atol=1e-5)
    assert t.append("newbie", ["i5", "i6", "i7"]) == o.append("newbie", ["i5", "i6", "i7"])
    assert np.allclose(t.bank.keys, o.bank.keys, atol=1e-5)
    a, b = _all_scores(t, user="newbie")[0], _all_scores(o, user="newbie")[0]
    assert np.allclose([a[i] for i in a], [b[i] for i in a], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="'torch' or 'onnx', not 'tf'"):
        RecommenderService(model_dir, backend="tf")


def test_serving_files_are_built_once_and_follow_the_trained_files(model_dir, monkeypatch):
    import json

    from rayapp._internal.artifacts import read_manifest
    from rayapp.recommend import _serving, train

    first = _serving.prepare_serving(model_dir)
    assert {p.name for p in first.iterdir()} == {"manifest.json", "item_emb.npy", "sasrec.onnx", "ra.onnx",
                                                 "bank.faiss", "bank.npz"}
    hist = json.loads((model_dir / "histories.json").read_text())
    assert read_manifest(first)["memories"] == sum(len(s) - 1 for s in hist.values())  # every prefix

    def no_rebuild(*a, **k):
        raise AssertionError("the bank was encoded again")

    monkeypatch.setattr(train, "_memory_bank", no_rebuild)
    assert RecommenderService(model_dir, backend="onnx").recommend(items=["i1"])["memories"] == len(hist) * 7
    monkeypatch.undo()
    from rayapp.recommend.raserec import RetrievalAugmentedModule

    torch.manual_seed(1)
    torch.save(RetrievalAugmentedModule(16, 2, 32, 0.1).state_dict(), model_dir / "stage2.pt")  # retrained
    assert _serving.prepare_serving(model_dir) != first
    (model_dir / "stage2.pt").unlink()  # SASRec alone: no bank, no retrieval module
    sasrec_only = _serving.prepare_serving(model_dir)
    assert not (sasrec_only / "bank.faiss").exists() and not (sasrec_only / "ra.onnx").exists()
    out = RecommenderService(model_dir, backend="onnx").recommend(items=["i1"], k=3)
    assert out["mode"] == "sasrec" and out["memories"] == 0 and len(out["items"]) == 3


def test_a_read_only_model_dir_gets_its_serving_files_in_the_model_cache(model_dir, tmp_path, monkeypatch):
    from rayapp.recommend import _serving

    monkeypatch.setenv("RAYAPP_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_serving.os, "access", lambda path, mode: False)  # root may write anywhere
    folder = _serving.prepare_serving(model_dir)
    assert folder.parent == tmp_path / "cache" and not list(model_dir.glob("serving-*"))
    assert RecommenderService(model_dir, backend="onnx").recommend(items=["i1"])["mode"] == "raserec"


def test_an_onnx_service_never_imports_torch(model_dir):
    import subprocess
    import sys

    from rayapp.recommend._serving import prepare_serving

    prepare_serving(model_dir)  # what training leaves behind
    code = ("import sys; from rayapp.recommend.service import RecommenderService; "
            f"s = RecommenderService({str(model_dir)!r}, backend='onnx'); "
            "assert s.recommend(items=['i1'])['mode'] == 'raserec'; s.append('n', ['i1', 'i2', 'i3']); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'sentence_transformers'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
