"""A small stopwatch that records :class:`rayapp.types.StageTiming` rows."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

from rayapp.types import StageTiming


class Timings:
    def __init__(self) -> None:
        self.rows: list[StageTiming] = []

    @contextlib.contextmanager
    def stage(self, name: str, n_in: int = 0) -> Iterator[StageTiming]:
        row = StageTiming(stage=name, seconds=0.0, n_in=n_in)
        t0 = time.perf_counter()
        try:
            yield row
        finally:
            row.seconds = round(time.perf_counter() - t0, 6)
            self.rows.append(row)
