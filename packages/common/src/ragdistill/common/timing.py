"""Latency and throughput, measured the same way for teacher and student: p50/p95 and items/s."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class LatencyStats:
    """Per-call latency percentiles (ms) and overall throughput (items/s)."""

    p50_ms: float
    p95_ms: float
    mean_ms: float
    items_per_s: float
    n_items: int
    n_calls: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def measure(fn: Callable[[Sequence[Any]], Any], items: Sequence[Any], batch_size: int = 1, warmup: int = 1) -> LatencyStats:
    """Call ``fn`` on consecutive batches of ``items``; latency is per call (per batch)."""
    if not items:
        raise ValueError("measure() needs at least one item")
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    for b in batches[:warmup]:
        fn(b)
    lat = []
    t0 = time.perf_counter()
    for b in batches:
        s = time.perf_counter()
        fn(b)
        lat.append(time.perf_counter() - s)
    total = time.perf_counter() - t0
    return stats_from_latencies(lat, len(items), total)


def stats_from_latencies(latencies_s: Sequence[float], n_items: int, total_s: float | None = None) -> LatencyStats:
    lat = np.asarray(latencies_s, dtype=float) * 1000
    total = float(total_s if total_s is not None else lat.sum() / 1000)
    return LatencyStats(
        p50_ms=float(np.percentile(lat, 50)),
        p95_ms=float(np.percentile(lat, 95)),
        mean_ms=float(lat.mean()),
        items_per_s=float(n_items / total) if total > 0 else float("inf"),
        n_items=n_items,
        n_calls=len(lat),
    )


class Stopwatch:
    """``with Stopwatch() as sw: ...; sw.seconds``"""

    def __enter__(self) -> Stopwatch:
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t
