"""Kafka clients as Everflow uses them: settings in one place, errors made plain.

- producers are idempotent and use the Java-compatible `murmur2_random` partitioner, so any
  Kafka client that publishes commands keyed by workflow ID lands on the same partition;
- the transactional producer has a stable `transactional.id` per worker instance, so a
  restarted instance fences its predecessor and aborts its open transaction at once;
- consumers read committed data only and never auto-commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from streams.kafka.config import KafkaConfig
from streams.kafka.statistics import with_statistics

log = logging.getLogger(__name__)
T = TypeVar("T")

_PRODUCER = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
    "linger.ms": 1,
    # most records are small and latency-bound: compressing them costs CPU on both sides and
    # saves little (measured: +20% throughput without); users can pass their own setting
    "compression.type": "none",
}


def producer(config: KafkaConfig, **settings: Any) -> Producer:
    """An idempotent producer (acks=all, murmur2_random)."""
    return Producer(config.client_settings(**with_statistics({**_PRODUCER, **settings})))


def transactional_producer(config: KafkaConfig, transactional_id: str, **settings: Any) -> Producer:
    """A transactional producer; call `init_transactions()` before the first transaction."""
    base = {
        **_PRODUCER,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": 60000,
        "message.timeout.ms": 55000,
        # after a commit the coordinator answers CONCURRENT_TRANSACTIONS until its markers are
        # written; the default 100 ms backoff would cap us at ~10 transactions per second
        "retry.backoff.ms": 2,
        "retry.backoff.max.ms": 20,
    }
    return Producer(config.client_settings(**with_statistics({**base, **settings})))


def consumer(
    config: KafkaConfig, group_id: str | None = None, settings: Mapping[str, Any] | None = None
) -> Consumer:
    """A read_committed consumer that never commits on its own.

    Without `group_id` it is for `assign()` only (a throwaway group ID is set because
    librdkafka requires one).
    """
    base = {
        "group.id": group_id or "everflow-reader",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        # a fetch returns as soon as data arrives; a long wait only spares the broker from
        # answering empty fetches (measured: no latency change between 5 and 100 ms)
        "fetch.wait.max.ms": 100,
    }
    return Consumer(config.client_settings(**with_statistics({**base, **(settings or {})})))


def admin(config: KafkaConfig, **settings: Any) -> AdminClient:
    return AdminClient(config.client_settings(**settings))


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (as the Java client and librdkafka's murmur2 partitioner)."""
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    length = len(data)
    h = (seed ^ length) & 0xFFFFFFFF
    end = length - (length % 4)
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(key: str, partitions: int) -> int:
    """The partition a key lands on with the murmur2 partitioner."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def where(msg: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed message (never None for a fetched one)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


class Produces(Protocol):
    """A producer, or a wrapper of one with the same `produce`."""

    def produce(self, *args: Any, **kwargs: Any) -> None: ...


def dead_letter(
    producer: Produces,
    topic: str,
    msg: Message,
    reason: str,
    max_bytes: int | None = None,
    **kw: Any,
) -> None:
    """Produces `msg` unchanged to the dead-letter `topic`, with why and where it came from.

    The value, key and headers are kept; `everflow.reason` says why it could not be used and
    `everflow.source` where it was (`topic/partition/offset`). It goes to the same partition
    number, so poison from one partition stays together. A value that would make the dead
    letter larger than `max_bytes` is left out (the reason says so; the original stays in
    its source topic until retention). `kw` passes on (`on_delivery`).
    """
    source_topic, partition, offset = where(msg)
    original = msg.headers() or []
    value, key = msg.value(), msg.key()
    size = len(value or b"") + len(key or b"") + len(reason) + 1024
    if max_bytes is not None and value is not None and size > max_bytes:
        reason = f"{reason} (its {len(value)}-byte value is not kept here: over the record limit)"
        value = None
    headers: list[tuple[str, str | bytes | None]] = [
        ("everflow.reason", reason.encode()),
        ("everflow.source", f"{source_topic}/{partition}/{offset}".encode()),
        *(original.items() if isinstance(original, dict) else original),
    ]
    producer.produce(topic, value, key, partition=partition, headers=headers, **kw)


def consume_batch(consumer: Consumer, max_messages: int, timeout: float) -> list[Any]:
    """Up to `max_messages`, returning as soon as at least one is there (or at timeout).

    librdkafka's `consume(n, timeout)` waits for all n or the whole timeout; here the wait
    ends at the first message, and what else is already fetched comes with it.
    """
    messages = consumer.consume(max_messages, 0)
    if messages or timeout <= 0:
        return messages
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, 0)] if max_messages > 1 else [first]


def read_to_end(
    consumer: Consumer, assignment: list[TopicPartition], deadline: float | None = None
) -> Iterator[Message]:
    """Assigns `assignment` and yields its messages until every partition reached its end.

    The consumer must have `enable.partition.eof`. Raises BrokerError on a read error, or
    when `deadline` (time.monotonic()) passes first.
    """
    from streams.errors import BrokerError

    consumer.assign(assignment)
    pending = {(tp.topic, tp.partition) for tp in assignment}
    while pending:
        if deadline is not None and time.monotonic() > deadline:
            raise BrokerError(f"reading {sorted(pending)} to the end did not finish in time")
        for msg in consumer.consume(5000, 0.05):
            err = msg.error()
            if err is None:
                yield msg
            elif err.code() == KafkaError._PARTITION_EOF:
                pending.discard((msg.topic(), msg.partition()))
            else:
                raise BrokerError(f"reading {msg.topic()} failed: {err.str()}")


# errors of a cluster that is briefly unreachable or busy: a coordinator, controller or
# leader moving, a node down or cut off
_TRANSIENT = {
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError.NOT_CONTROLLER,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.UNKNOWN_TOPIC_OR_PART,  # a topic just made, not yet known to every broker
}


def transient(error: object) -> bool:
    """Whether a KafkaException (or a KafkaError) says the cluster is briefly unreachable
    or busy, so that asking again later may succeed."""
    if isinstance(error, KafkaException):
        error = error.args[0] if error.args else None
    return isinstance(error, KafkaError) and (error.retriable() or error.code() in _TRANSIENT)


def patiently(call: Callable[[], T], what: str, patience: float = 120.0) -> T:
    """`call()`, asked again while the cluster is briefly unreachable (see `transient`):
    with a warning each time, backing off up to 5 s, for up to `patience` seconds; then,
    or on any other error, the error is raised."""
    deadline = time.monotonic() + patience
    delay = 0.5
    while True:
        try:
            return call()
        except KafkaException as e:
            if not transient(e) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: %s; asking again in %.1f s", what, e.args[0].str(), delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def end_offset(consumer: Consumer, topic: str, partition: int, timeout: float = 30.0) -> int:
    """The partition's current end, retrying while a new topic's leader is not yet known."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout
            )
            return int(high)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
