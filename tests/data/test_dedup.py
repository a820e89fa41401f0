"""The distributed duplicate finder against the same rule run serially, and its edge cases."""

import numpy as np
import pytest
import ray
from ray.data.expressions import col

from rayapp.config import DedupConfig
from rayapp.data._dedup import SerialDeduper, add_signatures, find_duplicates


def _rows(n_docs=300, seed=0):
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n_docs):
        if i and i % 10 == 0:
            texts.append(texts[i - 1])  # exact copy of the previous row
        elif i and i % 10 == 5:
            w = texts[i - 1].split()
            texts.append(" ".join(w[:-1] + ["changed"]))  # near copy: last of 60 words changed
        else:
            texts.append(" ".join(f"w{j}" for j in rng.integers(0, 5000, 60)))
    return [{"doc_id": f"d{i}", "order": i, "text": t, "keep": i % 7 != 3} for i, t in enumerate(texts)]


@pytest.mark.parametrize("partitions", [1, 4])
def test_shuffle_agrees_with_the_serial_rule(ray_session, partitions):
    cfg = DedupConfig(threshold=0.8, num_perm=64)
    rows = _rows()
    ds = ray.data.from_items(rows, override_num_blocks=12).map_batches(
        add_signatures, fn_kwargs={"cfg": cfg}, batch_format="numpy")
    got = find_duplicates(ds, cfg, partitions=partitions)
    serial = SerialDeduper(cfg)
    want = {}
    batch = add_signatures({"text": np.array([r["text"] for r in rows], dtype=object)}, cfg)
    for i, r in enumerate(rows):
        hit = serial.check(i, batch["text_hash"][i], batch["bands"][i])
        if hit is not None:
            want[i] = hit[0]
    assert {o: reason for o, (reason, _) in got.items()} == want
    assert sum(r == "exact duplicate" for r in want.values()) == 29
    assert sum(r == "near duplicate" for r in want.values()) >= 25  # 30 planted; LSH may miss a few
    for o, (reason, partner) in got.items():
        assert partner < o
        if reason == "exact duplicate":
            assert rows[o]["text"] == rows[partner]["text"]


def test_empty_blocks_and_a_chain(ray_session):
    """Filters leave empty blocks with no columns; a row is dropped when close to any earlier row."""
    cfg = DedupConfig(threshold=0.5, num_perm=64, shingle=1)
    words = [f"t{i}" for i in range(40)]
    a, b, c = " ".join(words[:20]), " ".join(words[2:22]), " ".join(words[4:24])  # a~b, b~c
    rows = [{"doc_id": d, "order": i, "text": t, "keep": True} for i, (d, t) in enumerate(zip("abc", [a, b, c]))]
    rows += [{"doc_id": f"x{i}", "order": 10 + i, "text": "gone", "keep": False} for i in range(6)]
    ds = ray.data.from_items(rows, override_num_blocks=9).filter(expr=col("keep"))
    ds = ds.map_batches(add_signatures, fn_kwargs={"cfg": cfg}, batch_format="numpy")
    got = find_duplicates(ds, cfg, partitions=3)
    assert set(got) <= {1, 2} and 1 in got and got[1] == ("near duplicate", 0)
    nothing = ray.data.from_items(rows, override_num_blocks=3).filter(expr=col("doc_id") == "none")
    assert find_duplicates(nothing.map_batches(add_signatures, fn_kwargs={"cfg": cfg}, batch_format="numpy"), cfg) == {}


def test_switched_off_finds_nothing(ray_session):
    cfg = DedupConfig(exact=False, near=False)
    ds = ray.data.from_items([{"doc_id": "a", "order": 0, "text": "same"}, {"doc_id": "b", "order": 1, "text": "same"}])
    assert find_duplicates(ds.map_batches(add_signatures, fn_kwargs={"cfg": cfg}, batch_format="numpy"), cfg) == {}


def test_exact_only_ignores_near_copies(ray_session):
    cfg = DedupConfig(near=False)
    texts = ["one two three four five six", "one two three four five six", "one two three four five seven"]
    ds = ray.data.from_items([{"doc_id": str(i), "order": i, "text": t} for i, t in enumerate(texts)])
    got = find_duplicates(ds.map_batches(add_signatures, fn_kwargs={"cfg": cfg}, batch_format="numpy"), cfg)
    assert got == {1: ("exact duplicate", 0)}
