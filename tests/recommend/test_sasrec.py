"""Sequential-recommendation data, metrics and the SASRec / DuoRec pieces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rayapp.recommend.data import InteractionDataError, k_core, pad_right, read_atomic_inter, read_sequence_file
from rayapp.recommend.metrics import full_ranking_metrics, target_ranks
from rayapp.recommend.sasrec import SASRec, duorec_contrastive_loss, next_item_loss


def test_sequence_file_split_and_bad_lines(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("u1 10 11 12 13\nu2 11 12\nlonely\nu1 9 9\nu3 12 10 11\n")
    d = read_sequence_file(p)
    assert d.users == ["u1", "u2", "u3"] and d.item_ids == ["<pad>", "10", "11", "12", "13"]
    assert d.seqs == [[1, 2, 3, 4], [2, 3], [3, 1, 2]]
    assert [b["line"] for b in d.bad] == [3, 4]
    hist, tgt = d.split("test")
    assert hist == [[1, 2, 3], [3, 1]] and tgt.tolist() == [4, 2]
    hist, tgt = d.split("valid")
    assert hist == [[1, 2], [3]] and tgt.tolist() == [3, 1]
    assert d.train_seqs() == [[1, 2], [3]]
    with pytest.raises(InteractionDataError, match="not found"):
        read_sequence_file(tmp_path / "none.txt")


def test_k_core_is_iterative():
    ui = {"a": ["x", "y"], "b": ["x", "y"], "c": ["x", "z"]}
    # z has 1 interaction -> c drops to 1 item -> c goes -> x has 2
    assert k_core(ui, 2) == {"a": ["x", "y"], "b": ["x", "y"]}


def test_atomic_inter_orders_by_timestamp(tmp_path):
    p = tmp_path / "d.inter"
    p.write_text("user_id:token\titem_id:token\ttimestamp:float\nu\tb\t2\nu\ta\t1\nu\tc\tx\nv\ta\t5\n")
    d = read_atomic_inter(p, k=None)
    assert d.seqs[0] == [1, 2] and d.item_ids[1:] == ["a", "b"] and d.bad[0]["line"] == 4


def test_full_ranking_metrics_by_hand():
    scores = np.array([[0, 0.9, 0.1, 0.5, 0.3],    # target 3 -> rank 1
                       [9, 0.1, 0.2, 0.3, 0.4]])   # target 1 -> rank 3 (padding column ignored)
    r = target_ranks(scores, np.array([3, 1]))
    assert r.tolist() == [1, 3]
    m = full_ranking_metrics(r, ks=(1, 2, 5))
    assert m["hr@1"] == 0.0 and m["hr@2"] == 0.5 and m["hr@5"] == 1.0
    assert m["ndcg@2"] == pytest.approx(0.5 / math.log2(3))
    assert m["ndcg@5"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / 2)
    # a tie ranks against the target
    assert target_ranks(np.array([[0, 1.0, 1.0]]), np.array([2])).tolist() == [1]


def test_sasrec_is_causal_and_ignores_padding():
    torch.manual_seed(0)
    m = SASRec(n_items=20, hidden=16, inner=32, dropout=0.0, max_len=6).eval()
    ids, lens = pad_right([[1, 2, 3], [1, 2, 3, 4, 5, 6, 7]], 6)
    assert ids.tolist()[1] == [2, 3, 4, 5, 6, 7]
    ids, lens = torch.from_numpy(ids), torch.from_numpy(lens)
    h = m(ids, lens)
    alone = m(ids[:1, :3], lens[:1])  # the same sequence without padding columns
    assert torch.allclose(h[0], alone[0], atol=1e-5)
    other = ids.clone()
    other[0, 3:] = 9  # what follows the last item (padding) cannot change it
    assert torch.allclose(m(other, lens)[0], h[0], atol=1e-5)
    assert m.scores(h).shape == (2, 21)


def test_losses():
    logits = torch.tensor([[5.0, 0.0, 2.0], [5.0, 1.0, 0.0]])
    expect = -(torch.log_softmax(torch.tensor([0.0, 2.0]), 0)[1] + torch.log_softmax(torch.tensor([1.0, 0.0]), 0)[0]) / 2
    assert float(next_item_loss(logits, torch.tensor([2, 1]))) == pytest.approx(float(expect))
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = duorec_contrastive_loss(z1, z2, tau=1.0)
    # anchor z1_0: positive z2_0 (sim 1), negatives z1_1 (0), z2_1 (0)
    assert float(loss) == pytest.approx(-math.log(math.e / (math.e + 2)))
    assert float(duorec_contrastive_loss(z1, z2.flip(0))) > float(loss)


def test_feed_forward_has_no_dropout_between_its_linear_layers():
    """As RecBole's FeedForward (DuoRec / RaSeRec): linear2 sees GELU(linear1(x)) unchanged, even in
    training mode with dropout 0.5 (torch's TransformerEncoderLayer drops out there by default)."""
    torch.manual_seed(0)
    m = SASRec(n_items=20, hidden=16, inner=32, dropout=0.5, max_len=6).train()
    seen = {}
    for i, layer in enumerate(m.encoder.layers):
        assert layer.norm1.eps == layer.norm2.eps == 1e-12
        layer.linear1.register_forward_hook(lambda mod, inp, out, i=i: seen.__setitem__(("l1", i), out))
        layer.linear2.register_forward_hook(lambda mod, inp, out, i=i: seen.__setitem__(("l2", i), inp[0]))
    m(torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]]), torch.tensor([3, 4]))
    for i in range(len(m.encoder.layers)):
        assert torch.equal(seen[("l2", i)], torch.nn.functional.gelu(seen[("l1", i)]))
    # the other dropouts are still active: two training passes differ
    x = torch.tensor([[1, 2, 3, 4]])
    assert not torch.equal(m(x, torch.tensor([4])), m(x, torch.tensor([4])))
