"""The recommender service behind /v1/recommend: top-k, clear errors, online memory appends."""

from __future__ import annotations

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
