"""Which offsets of `commands` the processor's next transaction commits.

A batch commits the offsets it consumed. A batch whose commands changed nothing (a report
already recorded in process, a late result) writes no transaction of its own: its offsets
are deferred and ride on the next one, or go alone once they are `MAX_AGE` old. A
transaction that consumed nothing (timers, in-process outcomes) commits the partitions'
committed offsets again, as a fence (see `fencing`).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable

# how long the offsets of commands that changed nothing (the `commands` copy of a report
# already recorded in process, say) may wait to ride on a transaction with something to write
MAX_AGE = 0.1


class ConsumedOffsets:
    """Per owned partition: the offset last committed, and one deferred (if any)."""

    def __init__(self) -> None:
        self._deferred: dict[int, int] = {}
        self._deferred_since = 0.0
        # the last offset committed (or found committed at restore), per owned partition
        self._committed: dict[int, int] = {}

    def defer(self, offsets: dict[int, int]) -> None:
        """Offsets of a batch that wrote nothing, for the next transaction to commit."""
        if offsets and not self._deferred:
            self._deferred_since = time.monotonic()
        self._deferred.update(offsets)

    @property
    def deferred(self) -> bool:
        return bool(self._deferred)

    def overdue(self) -> bool:
        """Deferred offsets older than `MAX_AGE`: they go in a transaction of their own."""
        return bool(self._deferred) and time.monotonic() - self._deferred_since > MAX_AGE

    def found(self, partition: int, offset: int) -> None:
        """`partition` was assigned with `offset` committed."""
        self._committed[partition] = offset

    def committed(self, partition: int) -> int:
        """The offset last committed for `partition` (-1: none known)."""
        return self._committed.get(partition, -1)

    def take(
        self, consumed: dict[int, int], owned: Collection[int], written: Iterable[int]
    ) -> dict[int, int]:
        """The offsets a transaction commits: the deferred ones of owned partitions and
        `consumed` (the batch's own). When that is nothing, the committed offsets of the
        partitions it writes, committed again: offsets in a transaction carry the consumer
        group's generation, which the coordinator checks, so a processor that lost its
        partitions while paused (a zombie, whose transactional ID nobody else fences) fails
        to commit instead of writing history for runs that are no longer its own."""
        offsets = {p: o for p, o in self._deferred.items() if p in owned}
        offsets.update(consumed)
        self._deferred.clear()
        if not offsets:
            written = set(written)
            offsets = {p: o for p, o in self._committed.items() if p in written}
        self._committed.update(offsets)
        return offsets

    def drop_deferred(self) -> None:
        """The deferred offsets are forgotten: what they covered is read again."""
        self._deferred.clear()

    def revoked(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._deferred.pop(p, None)  # the next owner reads those commands again
            self._committed.pop(p, None)
