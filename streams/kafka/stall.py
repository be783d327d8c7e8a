"""Noticing a partition a consumer has silently stopped reading.

A consumer can own a partition, have records waiting in it and still never get them, with
no error: librdkafka has known ways to get stuck after leaders flip during broker restarts
(a fetcher left on a broker that is no longer the leader, refused with "not leader" on
every fetch, which the application never hears of). Everflow's fault suite saw it once in a
few broker-bounce loops: one partition's commands were not read again while the worker
went on with the others.

`StallWatch` is the check a consumer loop runs now and then. A partition is stalled when
its read position stood still for `seconds` while the partition had records past it; the
end it compares with is the last stable offset (the consumer reads `read_committed`, and
librdkafka's watermark query honours that), so a transaction still open on the partition,
which nobody can read past, is not a stall. The owner decides what to do; the processors
make a new consumer, which leaves the group and joins again (a rebalance), so the
partition starts over from its committed offset on a fresh fetcher.

Pure bookkeeping over two calls (`position` and `end` of a partition), so its rules have
unit tests; the consumers pass in their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

DEFAULT_STALL_SECONDS = 60.0
"""How long a partition's position may stand still while records wait past it."""


@dataclass(frozen=True, slots=True)
class Stall:
    """One stalled partition: where the consumer stands, what it could read, since when."""

    partition: int
    position: int  # the next offset the consumer would read (-1: none yet)
    end: int  # the partition's last stable offset when it was last asked
    seconds: float  # how long the position stood still

    def __str__(self) -> str:
        where = "no position" if self.position < 0 else f"position {self.position}"
        return (
            f"partition {self.partition}: {where}, records up to {self.end} waiting, "
            f"not read for {self.seconds:.0f} s"
        )


@dataclass(slots=True)
class _Seen:
    position: int
    since: float  # when the position last moved (or the watch first saw the partition)


class StallWatch:
    """Per owned partition, when its position last moved; `check` names the stalled ones.

    `position(p)` is the consumer's next offset for partition p (-1 when it has none, as
    before the first record of an assignment); `committed(p)` where p stands then (-1:
    nothing committed); `end(p)` the partition's last stable offset, or None when the broker
    could not be asked (then nothing is concluded). `check` asks `committed` and `end` only
    of partitions whose position stood still for `seconds`, at most once per `interval`.
    """

    def __init__(
        self,
        position: Callable[[int], int],
        end: Callable[[int], int | None],
        seconds: float = DEFAULT_STALL_SECONDS,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        committed: Callable[[int], int] = lambda p: -1,
    ) -> None:
        if seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        self.position, self.end, self.seconds, self.clock = position, end, seconds, clock
        self.committed = committed
        self.interval = min(10.0, seconds / 3) if interval is None else interval
        self._seen: dict[int, _Seen] = {}
        self._checked = clock()

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Drops what was seen of `partitions` (all when None): they were revoked or
        re-read, and start a fresh count when seen again."""
        if partitions is None:
            self._seen.clear()
            return
        for p in partitions:
            self._seen.pop(p, None)

    def check(self, owned: Iterable[int]) -> list[Stall]:
        """The owned partitions stalled for at least `seconds` (checked once per interval)."""
        now = self.clock()
        if now - self._checked < self.interval:
            return []
        self._checked = now
        owned = set(owned)
        for p in list(self._seen):
            if p not in owned:
                del self._seen[p]
        stalls = []
        for p in sorted(owned):
            position = self.position(p)
            seen = self._seen.get(p)
            if seen is None or seen.position != position:
                self._seen[p] = _Seen(position, now)
                continue
            still = now - seen.since
            if still < self.seconds:
                continue
            at = position if position >= 0 else self.committed(p)
            end = self.end(p)
            if end is None:
                continue  # the broker did not answer: nothing known
            if end > max(at, 0):
                stalls.append(Stall(p, at, end, still))
            else:
                seen.since = now  # nothing to read: standing still is right
        return stalls


def consumer_watch(
    consumer: Consumer,
    topic: str,
    seconds: float = DEFAULT_STALL_SECONDS,
    committed: Callable[[int], int] | None = None,
) -> StallWatch:
    """A `StallWatch` over `consumer`'s partitions of `topic`. `committed(p)`, when given,
    is the owner's own note of p's committed offset (-1: none); else the group coordinator
    is asked."""

    def position(p: int) -> int:
        # librdkafka's position moves past transaction markers and aborted records, so a
        # partition read to its end stands at its last stable offset
        try:
            (at,) = consumer.position([TopicPartition(topic, p)])
        except KafkaException:
            return -1
        return int(at.offset) if at.offset >= 0 else -1

    def asked(p: int) -> int:
        try:
            (at,) = consumer.committed([TopicPartition(topic, p)], timeout=2.0)
        except KafkaException:
            return -1
        return int(at.offset) if at.offset >= 0 else -1

    def end(p: int) -> int | None:
        try:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=2.0)
        except KafkaException:
            return None
        return int(high)

    return StallWatch(position, end, seconds, committed=committed or asked)
