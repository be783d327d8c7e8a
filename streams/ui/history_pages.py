"""Pages of a run's history read from Kafka without reading the whole run.

The run index keeps where every `PAGE_EVENTS`-th event of a run was written
(`Store.history_page`); a page is read by seeking the run's `history` partition there
(read_committed) and reading until it holds the page's events of that run. A run the index
has no page of yet starts at the offset its processor reports (`RunDescription.first_offset`),
else at the first offset written since the run's start (`offset_at`), and a tail not yet
indexed is read on from the last page the index has.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streams import kafka
from streams.errors import BrokerError, EverflowError
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, partition_count
from streams.wire import wire
from streams.wire.events import HistoryEvent

READ_TIMEOUT = 20.0  # seconds: a page that does not come by then is an error, not a hang


@dataclass(frozen=True, slots=True)
class Start:
    """Where to begin reading a run: its partition, an offset at or before the wanted event,
    and that offset's event ID (1 when it is the run's start)."""

    partition: int
    offset: int
    first_event_id: int


class HistoryReader:
    """Reads runs' history records from Kafka, one request at a time per consumer (a small
    pool of consumers, reused: making one costs a connection). `executor` has one thread per
    consumer: run the blocking calls there."""

    def __init__(
        self, config: KafkaConfig, pool_size: int = 4, metadata_timeout: float = 10.0
    ) -> None:
        self.config = config
        self.metadata_timeout = metadata_timeout
        self.topic = Topics(config.topic_prefix).history
        self._free: list[Consumer] = []
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(pool_size)
        self._partitions: int | None = None
        self.executor = ThreadPoolExecutor(pool_size, thread_name_prefix="ui-history")

    def partition_of(self, workflow_id: str) -> int:
        if self._partitions is None:
            try:
                admin = kafka.admin(self.config)
                self._partitions = partition_count(admin, self.topic, self.metadata_timeout)
            except KafkaException as e:
                raise BrokerError(f"cannot read the partitions of {self.topic}: {e}") from e
        return kafka.partition_for(workflow_id, self._partitions)

    def offset_at(self, partition: int, epoch_ms: int) -> int:
        """The first offset of `partition` written at or after `epoch_ms` (the partition's
        end when none is); raises EverflowError when the broker does not say."""
        with self._consumer() as consumer:
            try:
                (found,) = consumer.offsets_for_times(
                    [TopicPartition(self.topic, partition, max(0, epoch_ms))], timeout=10.0
                )
            except KafkaException as e:
                raise EverflowError(
                    f"cannot find where the run starts in partition {partition} of"
                    f" {self.topic}: {e}"
                ) from e
            if found.error is not None:
                raise EverflowError(
                    f"cannot find where the run starts in partition {partition} of"
                    f" {self.topic}: {found.error}"
                )
            if found.offset >= 0:
                return int(found.offset)
            try:
                return kafka.end_offset(consumer, self.topic, partition)
            except KafkaException as e:
                raise BrokerError(f"cannot read the end of {self.topic}: {e}") from e

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            free, self._free = self._free, []
        for consumer in free:
            consumer.close()

    def read(
        self,
        workflow_id: str,
        run_id: str,
        start: Start,
        first: int,
        size: int,
        last: int | None = None,
    ) -> list[tuple[int, bytes]]:
        """The run's records (offset, raw) with event IDs first..first+size-1 (fewer at the
        end of what is written; `last`, the run's last event ID if known, stops the read
        there), reading from `start`."""
        wanted_last = first + size - 1 if last is None else min(first + size - 1, last)
        try:
            return list(self._records(workflow_id, run_id, start, first, wanted_last))
        except KafkaException as e:  # the broker is away: an EverflowError the page can say
            raise BrokerError(f"cannot read {self.topic}: {e}") from e

    def _records(
        self, workflow_id: str, run_id: str, start: Start, first: int, last: int
    ) -> Iterator[tuple[int, bytes]]:
        if last < first:
            return
        with self._consumer() as consumer:
            end = kafka.end_offset(consumer, self.topic, start.partition)
            if start.offset >= end:
                return
            consumer.assign([TopicPartition(self.topic, start.partition, start.offset)])
            key, decode = workflow_id.encode(), wire().event.decode
            deadline = time.monotonic() + READ_TIMEOUT
            while True:
                if time.monotonic() > deadline:
                    raise EverflowError(
                        f"reading the history of {workflow_id!r} from offset {start.offset}"
                        f" of partition {start.partition} timed out"
                    )
                # poll, not consume(n, timeout): a batch call waits out its timeout when
                # fewer than n records are left, as near a partition's end
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return
                    continue
                offset = msg.offset() or 0
                if msg.key() == key:
                    event = decode(msg.value() or b"")
                    if event.run_id == run_id and first <= event.event_id:
                        yield offset, msg.value() or b""
                        if event.event_id >= last:
                            return
                if offset >= end - 1:
                    return

    @contextmanager
    def _consumer(self) -> Iterator[Consumer]:
        """A consumer of the pool for one read (made on first need, given back after)."""
        with self._slots:
            with self._lock:
                consumer = self._free.pop() if self._free else None
            if consumer is None:
                consumer = kafka.consumer(self.config, settings={"enable.partition.eof": True})
            try:
                yield consumer
            finally:
                consumer.unassign()
                with self._lock:
                    self._free.append(consumer)


def decode_records(records: list[tuple[int, bytes]]) -> list[HistoryEvent]:
    decode = wire().event.decode
    return [decode(raw) for _, raw in records]
