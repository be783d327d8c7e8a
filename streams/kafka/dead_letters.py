"""The `dead-letters` topic read back, and a dead letter re-published once its cause is fixed.

`clients.dead_letter` writes each poison record unchanged (value, key, headers) to the same
partition number of `dead-letters`, with `everflow.reason` and `everflow.source`
(`topic/partition/offset`) in front of its own headers.

Re-publishing produces the original key, value and headers (without the two above) to the
source topic and partition, with `everflow.republished-from` (`dead-letters/partition/offset`)
added. It is then recorded durably in `dead-letters` itself: a marker record (no value, key
`everflow.republished`) in the same partition, after the dead letter, whose
`everflow.republished` header names the dead letter (`partition/offset`) and
`everflow.republished-to` the new record (`topic/partition/offset`). Readers show markers as
"re-published at …" on their dead letter, never as dead letters; a second re-publish is
refused unless forced; in one process, re-publishes of the same dead letter take turns,
so two at once cannot both pass that check. A dead letter goes back only to one of this
deployment's topics (`commands`, `history`, `completions`, `tasks.*` under its prefix),
whatever its source header says. Blocking: call these from a thread in async code.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from streams.errors import BrokerError, EverflowError
from streams.kafka.clients import consumer as kafka_consumer
from streams.kafka.clients import producer as kafka_producer
from streams.kafka.clients import read_to_end
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics

REASON = "everflow.reason"
SOURCE = "everflow.source"
REPUBLISHED = "everflow.republished"
REPUBLISHED_TO = "everflow.republished-to"
REPUBLISHED_FROM = "everflow.republished-from"
MARKER_KEY = REPUBLISHED.encode()
DEAD_LETTER_HEADERS = (REASON, SOURCE)
SCAN_LIMIT = 10_000
"""At most this many latest records of each partition are read for the page."""


_turns: dict[tuple[str, int, int], threading.Lock] = {}
_turns_lock = threading.Lock()


def _turn(topic: str, partition: int, offset: int) -> threading.Lock:
    """The lock re-publishes of one dead letter take turns on (in this process)."""
    with _turns_lock:
        return _turns.setdefault((topic, partition, offset), threading.Lock())


def republish_targets(topics: Topics) -> str:
    """Where a dead letter may go back to, as people read it."""
    return f"{topics.commands}, {topics.history}, {topics.completions} or {topics.prefix}tasks.*"


def may_republish_to(topics: Topics, topic: str) -> bool:
    """Whether `topic` is one of this deployment's topics a dead letter comes from."""
    if topic in (topics.commands, topics.history, topics.completions):
        return True
    queue = topic.removeprefix(topics.prefix + "tasks.")
    return queue != topic and bool(queue)


class DeadLetterError(EverflowError):
    """A dead letter that cannot be re-published (missing, re-published already, no source)."""


@dataclass(frozen=True, slots=True)
class Republished:
    """That a dead letter was re-published: when, and as which record."""

    time: datetime
    to: str  # topic/partition/offset of the new record


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One poison record as `dead-letters` holds it."""

    partition: int
    offset: int
    time: datetime
    reason: str
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    republished: tuple[Republished, ...] = ()

    @property
    def other_headers(self) -> tuple[tuple[str, bytes | None], ...]:
        """The record's own headers (what the re-published record carries)."""
        return tuple((k, v) for k, v in self.headers if k not in DEAD_LETTER_HEADERS)


@dataclass
class DeadLetterPage:
    """Newest first: `letters` from position `start` of `total` dead letters."""

    letters: list[DeadLetter]
    start: int
    total: int
    partitions: int
    capped: bool = False  # some partition had more than SCAN_LIMIT records
    errors: list[str] = field(default_factory=list)


def read_dead_letters(config: KafkaConfig, start: int = 0, size: int = 50) -> DeadLetterPage:
    """The dead letters, newest first, `size` of them from position `start`, each with its
    re-publications. Reads the latest SCAN_LIMIT records of each partition."""
    topic = Topics(config.topic_prefix).dead_letters
    reader = kafka_consumer(config, settings={"enable.partition.eof": True})
    try:
        meta = reader.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise BrokerError(f"cannot read topic {topic}: it does not exist (yet)")
        assignment, capped = [], False
        for p in sorted(meta.partitions):
            low, high = reader.get_watermark_offsets(TopicPartition(topic, p), 10, False)
            if high > low:
                capped = capped or high - low > SCAN_LIMIT
                assignment.append(TopicPartition(topic, p, max(low, high - SCAN_LIMIT)))
        letters: dict[tuple[int, int], DeadLetter] = {}
        marks: dict[tuple[int, int], list[Republished]] = {}
        if assignment:
            for msg in read_to_end(reader, assignment, time.monotonic() + 20):
                _take(msg, letters, marks)
    finally:
        reader.close()
    ordered = sorted(letters.values(), key=lambda d: (d.time, d.partition, d.offset), reverse=True)
    shown = [_with_marks(d, marks) for d in ordered[start : start + size]]
    return DeadLetterPage(shown, start, len(ordered), len(meta.partitions), capped)


def republish(config: KafkaConfig, partition: int, offset: int, *, force: bool = False) -> str:
    """Produces the dead letter at `partition`/`offset` again to where it came from and
    records that it did; returns the new record's `topic/partition/offset`.

    DeadLetterError if there is no such dead letter, it names no source or one that is not
    this deployment's (see `may_republish_to`), or it was re-published already (unless
    `force`; re-publishes of one dead letter in this process take turns).
    """
    topics = Topics(config.topic_prefix)
    with _turn(topics.dead_letters, partition, offset):
        return _republish(config, topics, partition, offset, force=force)


def _republish(
    config: KafkaConfig, topics: Topics, partition: int, offset: int, *, force: bool
) -> str:
    topic = topics.dead_letters
    letter, marks = _find(config, topic, partition, offset)
    if letter is None:
        raise DeadLetterError(f"there is no dead letter at {topic} partition {partition} "
                              f"offset {offset}")  # fmt: skip
    if marks and not force:
        raise DeadLetterError(
            f"dead letter {partition}/{offset} was re-published already (to {marks[-1].to}, "
            f"{marks[-1].time:%Y-%m-%d %H:%M:%S} UTC); re-publish it again only if you mean to"
        )
    if letter.source_partition is None or not letter.source_topic:
        raise DeadLetterError(
            f"dead letter {partition}/{offset} does not say where it came from "
            f"({SOURCE} header missing): it cannot be re-published"
        )
    if not may_republish_to(topics, letter.source_topic):
        raise DeadLetterError(
            f"dead letter {partition}/{offset} names {letter.source_topic!r} as its source, "
            f"which is not one of this deployment's topics ({republish_targets(topics)}): "
            "it is not re-published there"
        )
    producer = kafka_producer(config, **{"linger.ms": 0})
    delivered: list[Any] = []

    def on_delivery(err: Any, msg: Any) -> None:
        delivered.append(err or msg)

    headers: list[tuple[str, str | bytes | None]] = [
        *letter.other_headers,
        (REPUBLISHED_FROM, f"{topic}/{partition}/{offset}".encode()),
    ]
    producer.produce(letter.source_topic, letter.value, letter.key,
                     partition=letter.source_partition, headers=headers,
                     on_delivery=on_delivery)  # fmt: skip
    producer.flush(30)
    if not delivered or not hasattr(delivered[0], "offset"):
        raise BrokerError(f"re-publishing {partition}/{offset} to {letter.source_topic} failed: "
                          f"{delivered[0] if delivered else 'no answer within 30 s'}")  # fmt: skip
    new = delivered[0]
    to = f"{new.topic()}/{new.partition()}/{new.offset()}"
    producer.produce(topic, None, MARKER_KEY, partition=partition,
                     headers=[(REPUBLISHED, f"{partition}/{offset}".encode()),
                              (REPUBLISHED_TO, to.encode())])  # fmt: skip
    if producer.flush(30):
        raise BrokerError(f"re-published {partition}/{offset} as {to}, but recording it failed")
    return to


def _find(
    config: KafkaConfig, topic: str, partition: int, offset: int
) -> tuple[DeadLetter | None, list[Republished]]:
    """The dead letter at `offset`, and the markers after it (read to the partition's end)."""
    reader = kafka_consumer(config, settings={"enable.partition.eof": True})
    letters: dict[tuple[int, int], DeadLetter] = {}
    marks: dict[tuple[int, int], list[Republished]] = {}
    try:
        try:
            high = reader.get_watermark_offsets(TopicPartition(topic, partition), 10, False)[1]
        except KafkaException as e:
            raise DeadLetterError(f"{topic} has no partition {partition}: {e}") from e
        if offset < 0 or offset >= high:
            return None, []
        for msg in read_to_end(reader, [TopicPartition(topic, partition, offset)],
                               time.monotonic() + 20):  # fmt: skip
            _take(msg, letters, marks)
    finally:
        reader.close()
    return letters.get((partition, offset)), marks.get((partition, offset), [])


def _take(
    msg: Any,
    letters: dict[tuple[int, int], DeadLetter],
    marks: dict[tuple[int, int], list[Republished]],
) -> None:
    headers: list[tuple[str, bytes | None]] = list(msg.headers() or [])
    named = dict(headers)
    when = datetime.fromtimestamp(msg.timestamp()[1] / 1000, UTC)
    marked = named.get(REPUBLISHED)
    if msg.key() == MARKER_KEY and msg.value() is None and marked is not None:
        p, _, o = marked.decode(errors="replace").partition("/")
        if p.isdigit() and o.isdigit():
            to = (named.get(REPUBLISHED_TO) or b"").decode(errors="replace")
            marks.setdefault((int(p), int(o)), []).append(Republished(when, to))
        return
    source = (named.get(SOURCE) or b"").decode(errors="replace")
    source_topic, source_partition, source_offset = _source(source)
    letters[(msg.partition(), msg.offset())] = DeadLetter(
        msg.partition(),
        msg.offset(),
        when,
        (named.get(REASON) or b"").decode(errors="replace") or "(no reason recorded)",
        source_topic,
        source_partition,
        source_offset,
        msg.key(),
        msg.value(),
        tuple(headers),
    )


def _source(source: str) -> tuple[str, int | None, int | None]:
    topic, _, rest = source.rpartition("/")
    topic, _, partition = topic.rpartition("/")
    if not (topic and partition.isdigit() and rest.isdigit()):
        return source, None, None
    return topic, int(partition), int(rest)


def _with_marks(letter: DeadLetter, marks: dict[tuple[int, int], list[Republished]]) -> DeadLetter:
    found = marks.get((letter.partition, letter.offset))
    if not found:
        return letter
    return DeadLetter(
        letter.partition, letter.offset, letter.time, letter.reason, letter.source_topic,
        letter.source_partition, letter.source_offset, letter.key, letter.value, letter.headers,
        tuple(found),
    )  # fmt: skip
