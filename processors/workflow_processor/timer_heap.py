"""The pending timers of a processor's owned partitions, earliest first."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Collection, Container
from typing import NamedTuple

from streams.wire.records import Timer


class _Entry(NamedTuple):
    fire_at: int  # epoch milliseconds
    seq: int  # insertion order: ties fire in the order they were set, timers never compare
    partition: int
    timer: Timer


class TimerHeap:
    """Timers by the time they fire, each with the partition it belongs to.

    A timer is only a reminder: the processor checks it against the run's state when it
    fires, so a stale one (fired, cancelled, superseded) may stay here harmlessly.
    """

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, partition: int, timer: Timer) -> None:
        heapq.heappush(self._heap, _Entry(timer.fire_at, next(self._seq), partition, timer))

    def next_due(self) -> int | None:
        """When the earliest timer fires (epoch ms), or None when there is none."""
        return self._heap[0].fire_at if self._heap else None

    def due(self, now: int, limit: int, held: Container[int] = ()) -> list[tuple[int, Timer]]:
        """Takes out up to `limit` timers due at `now` (epoch ms), earliest first, as
        (partition, timer). Timers of `held` partitions stay, due, for a later call."""
        due: list[tuple[int, Timer]] = []
        kept: list[_Entry] = []
        while self._heap and self._heap[0].fire_at <= now and len(due) < limit:
            entry = heapq.heappop(self._heap)
            if entry.partition in held:
                kept.append(entry)
            else:
                due.append((entry.partition, entry.timer))
        for entry in kept:
            heapq.heappush(self._heap, entry)
        return due

    def discard(self, partitions: Collection[int]) -> None:
        """Drops every timer of `partitions` (revoked, or about to be restored)."""
        if not partitions:
            return
        self._heap = [e for e in self._heap if e.partition not in partitions]
        heapq.heapify(self._heap)
