import numpy as np
import pytest

from rayapp.train.sampler import homogeneity, plan_batches

TASKS = ["retrieval"] * 70 + ["sts"] * 45 + ["classification"] * 33


def test_fully_homogeneous_batches_and_leftovers():
    plan = plan_batches(TASKS, batch_size=16, homogeneous_ratio=1.0, seed=3)
    rows = np.concatenate(plan.batches)
    assert len(rows) == len(set(rows.tolist())) and len(rows) + plan.dropped == len(TASKS)
    # 4 + 2 + 2 homogeneous batches; leftovers 6 + 13 + 1 = 20 -> one mixed batch, 4 dropped
    assert len(plan.batches) == 9 and plan.dropped == 4
    pure = sum(len({TASKS[i] for i in b}) == 1 for b in plan.batches)
    assert pure == 8


@pytest.mark.parametrize("ratio", [0.5, 0.75])
def test_homogeneous_ratio_is_kept(ratio):
    tasks = ["a"] * 320 + ["b"] * 320 + ["c"] * 320 + ["d"] * 320
    plan = plan_batches(tasks, batch_size=32, homogeneous_ratio=ratio, seed=1)
    assert all(len(b) == 32 for b in plan.batches)
    # each batch keeps its own 32 * ratio rows; the pooled rest are mostly from other tasks
    own = [max(np.unique(np.asarray(tasks, dtype=object)[b], return_counts=True)[1]) for b in plan.batches]
    assert min(own) >= 32 * ratio
    assert ratio <= homogeneity(plan, tasks) < ratio + (1 - ratio) / 2


def test_plan_is_deterministic_shards_are_disjoint_and_order_shuffled():
    a, b = plan_batches(TASKS, 16, 0.5, seed=7), plan_batches(TASKS, 16, 0.5, seed=7)
    assert all((x == y).all() for x, y in zip(a.batches, b.batches))
    s0, s1 = a.shard(0, 0, 2), a.shard(0, 1, 2)
    assert len(s0) == len(s1) == 8 and not set(s0.tolist()) & set(s1.tolist())
    firsts = [TASKS[bt[-1]] for bt in plan_batches(TASKS, 16, 1.0, seed=0).batches]
    assert firsts != sorted(firsts)


def test_bad_arguments():
    with pytest.raises(ValueError, match="homogeneous_ratio must be in"):
        plan_batches(TASKS, 16, 1.5)
