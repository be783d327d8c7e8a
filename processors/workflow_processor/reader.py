"""The workflow processor's consumer of `commands`: made and subscribed, read in batches,
rewound to the committed offsets, and made again when a partition stalls.

The processor owns the partitions the group gives it (its `on_assign` and `on_revoke`
callbacks); this module owns the Kafka consumer behind them. A partition that has records
waiting and is not read for `stall_seconds` (see `streams.kafka.stall`: a fetcher librdkafka
left stuck after leaders flipped) is logged with where it stands, and the consumer is closed
and made anew: closing revokes every partition (the processor settles its transaction in
flight first, as on any rebalance), and the new consumer's assignment restores them from
their committed offsets on fresh fetchers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from streams import kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.stall import Stall, StallWatch, consumer_watch

log = logging.getLogger("everflow.processor")

Callback = Callable[[object, list[TopicPartition]], None]


class CommandReader:
    """One processor's consumer of the `commands` topic (group `<prefix>workflow-processor`).

    `committed(p)` is the processor's own note of partition p's committed offset (-1:
    none); `stall_seconds` 0 turns the stall check off."""

    def __init__(
        self,
        config: KafkaConfig,
        topic: str,
        settings: dict[str, object],
        on_assign: Callback,
        on_revoke: Callback,
        committed: Callable[[int], int],
        stall_seconds: float,
    ) -> None:
        self.config, self.topic, self.settings = config, topic, settings
        self.on_assign, self.on_revoke, self.committed = on_assign, on_revoke, committed
        self.stall_seconds = stall_seconds
        self.renewals = 0  # consumers made again because a partition stalled
        # partition -> its end when it was assigned, until it is read that far: its overdue
        # timers wait, since a command that came while nobody owned it (an activity's
        # result, say) must win against its timeout
        self.catching_up: dict[int, int] = {}
        self.consumer = self._open()
        self._watch = self._new_watch()

    def _open(self) -> Consumer:
        consumer = kafka.consumer(
            self.config, f"{self.config.topic_prefix}workflow-processor", dict(self.settings)
        )
        consumer.subscribe(
            [self.topic],
            on_assign=self.on_assign,
            on_revoke=self.on_revoke,
            on_lost=self.on_revoke,
        )
        return consumer

    def _new_watch(self) -> StallWatch | None:
        if not self.stall_seconds:
            return None
        return consumer_watch(self.consumer, self.topic, self.stall_seconds, self.committed)

    def read(self, size: int, wait: float) -> list[Any]:
        return kafka.consume_batch(self.consumer, size, wait)

    def committed_offsets(self, partitions: Iterable[int]) -> list[TopicPartition]:
        """The group's committed offsets of `partitions` (asked again while the group
        coordinator is briefly unreachable)."""
        owned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        return kafka.patiently(
            lambda: self.consumer.committed(owned, 30), "committed offsets not read yet"
        )

    def end(self, partition: int) -> int:
        return kafka.end_offset(self.consumer, self.topic, partition)

    def expect(self, partition: int, committed: int, end: int) -> None:
        """`partition` was assigned, committed at `committed`: catching up until it is read
        to its present `end`."""
        if committed < end:
            self.catching_up[partition] = end
        else:
            self.catching_up.pop(partition, None)

    def caught_up(self, messages: list[Any]) -> None:
        """Notes how far a batch read the partitions still catching up."""
        if not self.catching_up:
            return
        seen = set()
        for msg in messages:
            partition, offset = msg.partition(), msg.offset()
            seen.add(partition)
            if partition in self.catching_up and offset is not None:
                if offset + 1 >= self.catching_up[partition]:
                    del self.catching_up[partition]
        # the end may be a transaction marker (processors write child-workflow commands in
        # their transactions), which no message ever reaches: one short of it, with nothing
        # more to read, is caught up too
        idle = [p for p in self.catching_up if p not in seen]
        if idle:
            for tp in self.consumer.position([TopicPartition(self.topic, p) for p in idle]):
                if tp.offset >= 0 and tp.offset >= self.catching_up[tp.partition] - 1:
                    del self.catching_up[tp.partition]

    def revoked(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.catching_up.pop(p, None)

    def rewind(self, partitions: Iterable[int]) -> None:
        """Every one of `partitions`' read position back to its committed offset."""
        for tp in self.committed_offsets(partitions):
            if tp.offset < 0:
                # nothing committed yet: back to where the group starts reading a partition
                # (auto.offset.reset=earliest); staying put would skip the commands of the
                # failed transaction, which nobody would ever read again
                tp.offset = OFFSET_BEGINNING
            try:
                self.consumer.seek(tp)
            except KafkaException as e:  # not fetching yet: it starts there anyway
                log.debug("seek %s: %s", tp, e)
        if self._watch is not None:
            self._watch.forget()

    def stalled(self, owned: Iterable[int]) -> list[Stall]:
        """The owned partitions not read for `stall_seconds` while records wait in them."""
        return [] if self._watch is None else self._watch.check(owned)

    def renew(self, stalls: list[Stall]) -> None:
        """Closes the consumer (every partition is revoked) and makes a new one, which
        joins the group again: the stalled partitions start over on fresh fetchers."""
        log.warning(
            "commands not read: %s; closing the consumer and joining the group again",
            "; ".join(str(s) for s in stalls),
        )
        self.renewals += 1
        self.consumer.close()
        self.consumer = self._open()
        self._watch = self._new_watch()

    def freeze(self, partition: int) -> None:
        """Testing hook (`faults.stall_after_commit`): the consumer stops fetching
        `partition`, with no error, as a stuck fetcher does."""
        log.warning("fault hook: commands partition %d no longer fetched", partition)
        self.consumer.pause([TopicPartition(self.topic, partition)])

    def close(self) -> None:
        self.consumer.close()
