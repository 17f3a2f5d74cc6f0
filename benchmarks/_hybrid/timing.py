"""Single-query timing: every query once per pass, one at a time, after a warm-up pass.

A query's latency is the fastest of its passes (on a shared 2-core machine the slower ones
measure the other processes, timeit's rule); the table reports the median and the 95th
percentile over the queries. QPS is the number of queries over the fastest whole pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import _report as R
import numpy as np


@dataclass(frozen=True)
class Latency:
    median_s: float
    p95_s: float
    qps: float
    n: int

    def row(self) -> list[str]:
        return [R.fmt_ms(self.median_s), R.fmt_ms(self.p95_s), R.fmt_rate(self.qps)]


def latency(fn: Callable[[int], Any], n: int, passes: int = 2, before: Callable[[int], Any] | None = None
            ) -> Latency:
    """Time ``fn(i)`` for ``i < n``, one call at a time: a warm-up pass, then ``passes`` timed passes.

    ``before(i)``, if given, runs untimed just before each ``fn(i)`` (to time a step in the state the
    step before it leaves the caches in).
    """
    for i in range(min(n, 20)):
        fn(i)
    per = np.full(n, np.inf)
    best_pass = np.inf
    for _ in range(passes):
        R.quiet_gc()
        start = time.perf_counter()
        for i in range(n):
            if before is not None:
                before(i)
            t0 = time.perf_counter()
            fn(i)
            per[i] = min(per[i], time.perf_counter() - t0)
        best_pass = min(best_pass, time.perf_counter() - start)
    if before is not None:
        best_pass = float(per.sum())  # the pass also ran the untimed calls: QPS from the timed ones alone
    return Latency(float(np.median(per)), float(np.percentile(per, 95)), n / best_pass, n)


def paired(fa: Callable[[int], Any], fb: Callable[[int], Any], n: int, passes: int = 4) -> tuple[Latency, Latency]:
    """Time ``fa(i)`` and ``fb(i)`` back to back for every query, the order alternating by pass.

    Measured one after the other, two modes see different moments of a machine whose speed drifts
    (on these VMs by 20-30 % over minutes) and different cache states (a mode timed alone keeps its
    own data warm). Paired, each query's two timings share both; per query the best of ``passes``.
    """
    for i in range(min(n, 20)):
        fa(i)
        fb(i)
    per = np.full((2, n), np.inf)
    for p in range(passes):
        R.quiet_gc()
        order = ((0, fa), (1, fb)) if p % 2 == 0 else ((1, fb), (0, fa))
        for i in range(n):
            for j, fn in order:
                t0 = time.perf_counter()
                fn(i)
                per[j, i] = min(per[j, i], time.perf_counter() - t0)
    return tuple(Latency(float(np.median(row)), float(np.percentile(row, 95)), n / float(row.sum()), n)
                 for row in per)  # type: ignore[return-value]


__all__ = ["Latency", "latency", "paired"]
