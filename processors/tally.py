"""Plain aggregates the engine keeps for its metrics: histograms and counts by label.

They are updated by the thread that owns them, once per batch, per close or per activity
attempt (never per history event), and read by the metrics endpoint at scrape time from
another thread. Reads copy a list or a dict (one step under the GIL), so a scrape never
sees a container change size under it; a scrape may see a histogram's sum one observation
ahead of its buckets, which no reader of a monotonic counter minds.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

# seconds: a Kafka round trip up to a slow activity
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0,
)  # fmt: skip
# seconds: a run's life, 0.1 s to a day
RUN_BUCKETS = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0,
    24 * 3600.0,
)  # fmt: skip
# commands and timers in one transaction
BATCH_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)


class Histogram:
    """Counts of observations per bucket (upper bounds, `le`) and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        """The buckets as Prometheus exposes them, (le, observations <= le), and the sum."""
        counts, total = list(self.counts), self.sum
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(_le, self.bounds), "+Inf"), counts, strict=True):
            running += count
            out.append((bound, running))
        return out, total

    @property
    def count(self) -> int:
        return sum(self.counts)


class Histograms(Generic[K]):
    """A histogram per label key (a workflow type, an activity type and outcome...)."""

    __slots__ = ("bounds", "by_key")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.by_key: dict[K, Histogram] = {}

    def observe(self, key: K, value: float) -> None:
        histogram = self.by_key.get(key)
        if histogram is None:
            histogram = self.by_key[key] = Histogram(self.bounds)
        histogram.observe(value)

    def items(self) -> list[tuple[K, Histogram]]:
        return list(self.by_key.copy().items())


class Counts(Generic[K]):
    """A count per label key."""

    __slots__ = ("by_key",)

    def __init__(self) -> None:
        self.by_key: dict[K, int] = {}

    def add(self, key: K, n: int = 1) -> None:
        self.by_key[key] = self.by_key.get(key, 0) + n

    def items(self) -> list[tuple[K, int]]:
        return list(self.by_key.copy().items())

    def get(self, key: K) -> int:
        return self.by_key.get(key, 0)


def _le(bound: float) -> str:
    return repr(float(bound))


def consumer_lag(statistics: str) -> dict[tuple[str, int], int]:
    """Records behind per (topic, partition), from a librdkafka statistics report (the JSON
    `stats_cb` receives every `statistics.interval.ms`): the partition's end (its last
    stable offset, as a read_committed consumer sees it) minus the consumer's position.

    librdkafka's own `consumer_lag` counts from the consumer's committed offset, which a
    processor committing in its transactions never learns; so the position is the offset
    after the last message handed to the application, else the committed one. Partitions
    whose end or position is not known yet, and the internal partition -1, are left out.
    """
    report = json.loads(statistics)
    lag: dict[tuple[str, int], int] = {}
    for topic, entry in report.get("topics", {}).items():
        for key, partition in entry.get("partitions", {}).items():
            if int(key) < 0:
                continue
            end = partition.get("ls_offset", -1)
            if end < 0:
                end = partition.get("hi_offset", -1)
            position = max(partition.get("app_offset", -1), partition.get("committed_offset", -1))
            if end >= 0 and position >= 0:
                lag[(topic, int(key))] = max(0, end - position)
            elif partition.get("consumer_lag", -1) >= 0:
                lag[(topic, int(key))] = partition["consumer_lag"]
    return lag
