"""RaSeRec's memory bank (no future leakage, online appends), module and fusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rayapp.recommend.raserec import MemoryBank, RetrievalAugmentedModule, fuse


def bank(n=200, d=8, seed=0):
    rng = np.random.default_rng(seed)
    keys = rng.normal(size=(n, d)).astype(np.float32)
    values = rng.normal(size=(n, d)).astype(np.float32)
    users = np.arange(n) % 10
    prefix = np.arange(n) // 10 + 1
    return MemoryBank(d, nlist=4).build(keys, values, users, prefix, nprobe=4), keys


def test_search_never_returns_the_same_users_future():
    b, keys = bank()
    q = keys[[15, 57]]  # user 5 at prefix 2, user 7 at prefix 6
    users, prefix = np.array([5, 7]), np.array([2, 6])
    k_out, _ = b.search(q, users, prefix, k=20, candidates=200)
    for r in range(2):
        rows = [int(np.argmax((b.keys == kk).all(axis=1))) for kk in k_out[r]]
        assert all(b.users[i] != users[r] or b.prefix_lens[i] < prefix[r] for i in rows)
    # without the filter the query's own memory (itself) is the best match
    own, _ = b.search(q[:1], None, None, k=1)
    assert np.allclose(own[0, 0], b.keys[15])


def test_appended_memories_are_retrieved_at_once():
    b, _ = bank()
    new_key = np.full((1, 8), 3.0, dtype=np.float32)
    before, _ = b.search(new_key, None, None, k=1)
    b.append(new_key, np.ones((1, 8), dtype=np.float32), np.array([99]), np.array([1]))
    after_k, after_v = b.search(new_key, None, None, k=1)
    assert not np.allclose(before[0, 0], after_k[0, 0]) and np.allclose(after_v[0, 0], 1.0)


def test_alpha_one_is_the_backbone_and_module_shapes():
    torch.manual_seed(0)
    m = RetrievalAugmentedModule(hidden=8, heads=2, inner=16, dropout=0.0)
    h, ks, vs = torch.randn(3, 8), torch.randn(3, 5, 8), torch.randn(3, 5, 8)
    h_s, h_t = m(h, ks, vs)
    assert h_s.shape == h_t.shape == (3, 8)
    assert torch.equal(fuse(h, h_s, h_t, alpha=1.0), h)
    assert torch.allclose(fuse(h, h_s, h_t, 0.5, 1.0), 0.5 * h + 0.5 * h_s)
    assert torch.allclose(fuse(h, h_s, h_t, 0.0, 0.0), h_t)


def test_a_saved_bank_loads_as_the_same_index(tmp_path):
    b, keys = bank()
    b.save(tmp_path)
    c = MemoryBank.load(tmp_path)
    assert len(c) == len(b) and c.index.nprobe == b.index.nprobe and c.index.nlist == b.index.nlist
    q, users, prefix = keys[[3, 15, 57]], np.array([3, 5, 7]), np.array([1, 2, 6])
    for got, want in zip(c.search(q, users, prefix, k=5), b.search(q, users, prefix, k=5)):
        assert np.array_equal(got, want)
    c.append(np.full((1, 8), 3.0, dtype=np.float32), np.ones((1, 8), dtype=np.float32), np.array([99]), np.array([1]))
    assert len(c) == len(b) + 1 and len(MemoryBank.load(tmp_path)) == len(b)  # the file is unchanged
    np.savez(tmp_path / "bank.npz", keys=keys[:10], values=keys[:10], users=np.zeros(10), prefix_lens=np.zeros(10))
    with pytest.raises(ValueError, match="200 indexed memories but 10 stored"):
        MemoryBank.load(tmp_path)
