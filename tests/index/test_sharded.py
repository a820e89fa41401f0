"""Scatter-gather over Ray actors: a sharded flat index returns what the unsharded one does."""

import numpy as np
import pytest

from rayapp.index import LoadedIndex
from rayapp.index.sharded import ShardedIndex, merge_topk


def test_merge_topk_orders_by_score_then_row_and_drops_missing():
    a = (np.array([[0.9, 0.5]], dtype=np.float32), np.array([[3, 7]]))
    b = (np.array([[0.9, 0.1]], dtype=np.float32), np.array([[1, -1]]))
    s, r = merge_topk([a, b], 3)
    assert r.tolist() == [[1, 3, 7]] and s.tolist()[0] == pytest.approx([0.9, 0.9, 0.5])


def test_sharded_equals_unsharded(ray_session, small_index, minilm):
    ix = LoadedIndex(small_index.path)
    queries = minilm.encode(["write rows to a CSV file", "parse JSON", "temporary directory cleanup",
                             "dialect quoting"], normalize_embeddings=True)
    k = 10
    want_s, want_r = ix.dense.search(np.asarray(queries, dtype=np.float32), k)
    sharded = ShardedIndex(small_index.path, shards=3)
    try:
        assert sharded.ntotal == len(ix) and len(sharded.bounds) == 4
        got_s, got_r = sharded.search(queries, k)
    finally:
        sharded.close()
    np.testing.assert_allclose(got_s, want_s, atol=1e-5)
    for q in range(len(queries)):  # equal rows, up to the order of exactly tied scores
        assert sorted(zip(np.round(got_s[q], 5), got_r[q])) == sorted(zip(np.round(want_s[q], 5), want_r[q]))


def test_shard_count_is_checked(small_index):
    with pytest.raises(ValueError, match="shards: 0 must be between 1"):
        ShardedIndex(small_index.path, shards=0)
