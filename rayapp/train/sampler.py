"""Semi-homogeneous task batches (KaLM-Embedding V1, ``DistributedInTaskSampler``).

In-batch negatives are most useful when they come from the same task (a retrieval query's
in-batch negatives should be passages, not labels of a classification set), yet fully
homogeneous batches overfit the batch composition. The plan, for one epoch:

1. shuffle each task's rows; cut each task into global batches of ``batch_size`` rows;
2. a task's leftover rows (fewer than a batch) go to a common pool, cut into mixed batches;
3. from every batch, a ``1 - homogeneous_ratio`` share of its rows is taken out to a pool, the pool
   is shuffled and dealt back into the freed slots (so a batch keeps about ``homogeneous_ratio`` of
   its own task);
4. the batch order is shuffled. A final incomplete batch is dropped (every worker must get the
   same number of rows per step) and counted.

The plan is a pure function of (tasks, sizes, seed): every Ray Train worker computes the same plan
and takes its own slice of each global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BatchPlan", "plan_batches", "homogeneity"]


@dataclass
class BatchPlan:
    batches: list[np.ndarray]  # global batches of row indices
    dropped: int  # rows left out of this epoch (a final incomplete batch)

    def shard(self, step: int, rank: int, world_size: int) -> np.ndarray:
        """The rows of global batch ``step`` that worker ``rank`` trains on."""
        b = self.batches[step]
        per = len(b) // world_size
        return b[rank * per : (rank + 1) * per]


def plan_batches(tasks: list[str], batch_size: int, homogeneous_ratio: float = 1.0, seed: int = 0) -> BatchPlan:
    """Global batches of ``batch_size`` row indices for rows labelled ``tasks`` (see module doc)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not 0.0 <= homogeneous_ratio <= 1.0:
        raise ValueError(f"homogeneous_ratio must be in [0, 1], got {homogeneous_ratio}")
    rng = np.random.default_rng(seed)
    tasks_arr = np.asarray(tasks, dtype=object)
    batches: list[np.ndarray] = []
    leftovers = []
    for task in sorted(set(tasks)):
        rows = rng.permutation(np.flatnonzero(tasks_arr == task))
        n_full = len(rows) // batch_size
        batches += [rows[i * batch_size : (i + 1) * batch_size] for i in range(n_full)]
        leftovers.append(rows[n_full * batch_size :])
    pool = rng.permutation(np.concatenate(leftovers)) if leftovers else np.zeros(0, dtype=np.int64)
    n_mixed = len(pool) // batch_size
    batches += [pool[i * batch_size : (i + 1) * batch_size] for i in range(n_mixed)]
    dropped = len(pool) - n_mixed * batch_size
    n_out = int(round(batch_size * (1 - homogeneous_ratio)))
    if n_out and len(batches) > 1:
        batches = [rng.permutation(b) for b in batches]
        moved = rng.permutation(np.concatenate([b[:n_out] for b in batches]))
        batches = [np.concatenate([moved[i * n_out : (i + 1) * n_out], b[n_out:]]) for i, b in enumerate(batches)]
    order = rng.permutation(len(batches))
    return BatchPlan([np.asarray(batches[i], dtype=np.int64) for i in order], dropped)


def homogeneity(plan: BatchPlan, tasks: list[str]) -> float:
    """Mean share of each batch's most frequent task."""
    if not plan.batches:
        return 0.0
    shares = []
    for b in plan.batches:
        _, counts = np.unique(np.asarray(tasks, dtype=object)[b], return_counts=True)
        shares.append(counts.max() / len(b))
    return float(np.mean(shares))
