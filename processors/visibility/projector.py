"""The run index's projector: `history` in, the index's rows and consumed offsets out, in one
SQL transaction per batch — so the index is exactly-once and restarts where it stopped.

- SQLite (the embedded default): one projector per store, holding a lock file next to it,
  assigned every partition of `history`; a second one waits for the lock.
- PostgreSQL: any number of projectors in one consumer group (`<prefix>visibility`), each
  owning the partitions the group gives it. Kafka never holds their offsets: on assignment a
  projector seeks to the offsets stored in the index, and commits nothing to Kafka.

A batch is up to `batch_records` records or `batch_seconds` of waiting. A record that cannot
be decoded or folded goes to `dead-letters` with the reason, and its partition moves on. A
new (empty) index replays `history` from the start, showing its progress on stderr.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from processors.visibility.fold import attribute_types, fold, starts_page
from streams import kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, partition_count
from streams.settings import VisibilitySettings, visibility_url
from streams.visibility.records import HistoryPage, RunRow
from streams.visibility.store import Store, open_store
from streams.wire import wire
from streams.wire.events import HistoryEvent
from streams.wire.records import SearchAttributeType

log = logging.getLogger(__name__)

WATERMARK_INTERVAL = 1.0  # seconds between reads of the partitions' ends (for lag)


@dataclass(slots=True)
class _Partition:
    """What the projector knows of one assigned partition."""

    position: int  # next offset to apply
    high: int = 0  # end of the partition, last read
    applied_time: float = 0.0  # Kafka timestamp (s) of the last record applied


@dataclass(slots=True)
class Progress:
    """A rebuild's progress: how far each partition has come from where it started towards
    the end it had when the rebuild began (offsets: transaction markers count as done when
    passed). A bar on a terminal, else a log line per 10%."""

    starts: dict[int, int]
    ends: dict[int, int]
    out: IO[str] | None = None
    started: float = field(default_factory=time.monotonic)
    done: bool = False
    _shown: float = 0.0
    _decile: int = 0

    @property
    def total(self) -> int:
        return sum(max(0, self.ends[p] - self.starts[p]) for p in self.ends)

    def update(self, positions: dict[int, int]) -> None:
        """Shows the progress at these positions (next offset per partition)."""
        if self.done:
            return
        applied = sum(
            max(0, min(positions.get(p, start), self.ends[p]) - start)
            for p, start in self.starts.items()
        )
        total, now = self.total, time.monotonic()
        rate = applied / max(now - self.started, 1e-6)
        finished = applied >= total
        if self.out is not None and self.out.isatty():
            if finished or now - self._shown >= 0.2:
                self._shown = now
                bar = "#" * (30 * applied // max(total, 1))
                self.out.write(
                    f"\rindex rebuild [{bar:<30}] {applied:,}/{total:,} records {rate:,.0f}/s"
                )
                self.out.write("\n" if finished else "")
                self.out.flush()
        else:
            decile = 10 if finished else applied * 10 // max(total, 1)
            if decile > self._decile:
                self._decile = decile
                log.info(
                    "index rebuild %d%% records=%d total=%d rate=%.0f/s",
                    decile * 10,
                    applied,
                    total,
                    rate,
                )
        if finished:
            self.done = True
            log.info("index rebuilt records=%d seconds=%.1f", total, now - self.started)


class Projector:
    """Folds `history` into the run index at `url` (SQLite or PostgreSQL)."""

    def __init__(
        self,
        config: KafkaConfig,
        settings: VisibilitySettings | None = None,
        *,
        rebuild: bool = False,
        progress_out: IO[str] | None = None,
    ) -> None:
        self.config = config
        self.settings = settings or VisibilitySettings()
        self.url = visibility_url(config.topic_prefix, self.settings.url)
        self.topics = Topics(config.topic_prefix)
        self.rebuild = rebuild
        self.progress_out = progress_out if progress_out is not None else sys.stderr
        self._codec = wire().event
        self._partitions: dict[int, _Partition] = {}
        self._lock = threading.Lock()  # _partitions, read by lag() from other threads
        self._known_types: set[str] = set()
        self._batches = 0
        self._progress: Progress | None = None
        self._rebuilding = False
        self._watermarks_read = 0.0
        self.store: Store | None = None

    # ---- public -------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Projects until `stop` is set; raises on a fatal broker or store error."""
        store = self.store = open_store(self.url)
        try:
            if store.dialect == "sqlite":
                lock = self._sqlite_lock(store, stop)
                if lock is None:
                    return
                try:
                    self._project(store, stop, group=False)
                finally:
                    lock.close()
            else:
                self._project(store, stop, group=True)
        finally:
            store.close()

    def lag(self) -> dict[int, tuple[int, float]]:
        """Per assigned partition: records not yet applied (from the partition's end, read
        about once a second), and seconds since the last applied record was written (0 when
        caught up)."""
        now = time.time()
        with self._lock:
            return {
                p: (
                    behind := max(0, s.high - s.position),
                    max(0.0, now - s.applied_time) if behind and s.applied_time else 0.0,
                )
                for p, s in sorted(self._partitions.items())
            }

    @property
    def ends_read_at(self) -> float:
        """When (time.monotonic()) `lag()`'s partition ends were last read from the broker."""
        return self._watermarks_read

    # ---- the loop -----------------------------------------------------------------------------
    def _project(self, store: Store, stop: threading.Event, *, group: bool) -> None:
        topic = self.topics.history
        if self.rebuild:
            log.info("index rebuild: clearing %s", store.location.target.split("@")[-1])
            store.clear()
        self._rebuilding = not store.offsets(topic)
        self._known_types = set(store.attribute_types())
        consumer = kafka.consumer(
            self.config, group_id=f"{self.config.topic_prefix}visibility" if group else None
        )
        producer = kafka.producer(self.config)
        try:
            if group:
                consumer.subscribe(
                    [topic],
                    on_assign=lambda c, tps: self._on_assign(store, c, tps),
                    on_revoke=lambda c, tps: self._on_revoke(c, tps),
                )
            else:
                count = partition_count(kafka.admin(self.config), topic)
                self._on_assign(store, consumer, [TopicPartition(topic, p) for p in range(count)])
            log.info("projector indexing %s into %s", topic, store.dialect)
            while not stop.is_set():
                messages = self._next_batch(consumer)
                if messages:
                    self._apply(store, producer, messages)
                self._read_watermarks(consumer)
        finally:
            producer.flush(10)
            consumer.close()

    def _on_assign(self, store: Store, consumer: Consumer, tps: list[TopicPartition]) -> None:
        stored = store.offsets(self.topics.history)
        for tp in tps:
            tp.offset = stored.get(tp.partition, OFFSET_BEGINNING)
        consumer.assign(tps)
        partitions = {}
        for tp in tps:
            low, high = _watermarks(consumer, tp.topic, tp.partition)
            partitions[tp.partition] = _Partition(stored.get(tp.partition, low), high)
        with self._lock:
            self._partitions = partitions
        log.info("projector assigned partitions=%s", sorted(tp.partition for tp in tps))
        if self._rebuilding and self._progress is None:
            self._progress = Progress(
                starts={p: st.position for p, st in partitions.items()},
                ends={p: st.high for p, st in partitions.items()},
                out=self.progress_out,
            )
            log.info("index rebuild from the start of history records=%d", self._progress.total)

    def _on_revoke(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        # batches are written before the next poll: nothing is in flight to finish here
        with self._lock:
            for tp in tps:
                self._partitions.pop(tp.partition, None)
        consumer.unassign()

    def _next_batch(self, consumer: Consumer) -> list[Message]:
        limit = self.settings.batch_records
        messages = kafka.consume_batch(consumer, limit, 0.5)
        deadline = time.monotonic() + self.settings.batch_seconds
        while messages and len(messages) < limit:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            messages.extend(consumer.consume(limit - len(messages), left))
        fetched = []
        for msg in messages:
            err = msg.error()
            if err is None:
                fetched.append(msg)
            elif err.fatal():
                raise KafkaException(err)
            else:
                log.warning("projector consumer error: %s", err.str())
        return fetched

    def _read_watermarks(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now - self._watermarks_read < WATERMARK_INTERVAL:
            return
        with self._lock:
            partitions = list(self._partitions)
        topic = self.topics.history
        # the consumer's position steps over transaction markers, which the ends count: a
        # position read after a batch is applied makes a caught-up partition's lag 0
        for tp in consumer.position([TopicPartition(topic, p) for p in partitions]):
            with self._lock:
                state = self._partitions.get(tp.partition)
                if state is not None and tp.offset >= 0:
                    state.position = max(state.position, tp.offset)
        for p in partitions:
            try:
                # the end the last fetch response carried (no request); asked of the broker
                # only while no fetch has told it yet
                tp = TopicPartition(topic, p)
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:
                    _, high = consumer.get_watermark_offsets(tp, timeout=5)
            except KafkaException as e:
                log.warning("projector watermark of partition=%d: %s", p, e)
                continue
            with self._lock:
                if p in self._partitions:
                    self._partitions[p].high = max(self._partitions[p].high, int(high))
        self._watermarks_read = now  # every end above was read after `now`
        self._show_progress()

    def _show_progress(self) -> None:
        if self._progress is not None and not self._progress.done:
            with self._lock:
                positions = {p: st.position for p, st in self._partitions.items()}
            self._progress.update(positions)

    # ---- one batch ----------------------------------------------------------------------------
    def _apply(self, store: Store, producer: Any, messages: list[Message]) -> None:
        events: list[tuple[Message, HistoryEvent]] = []
        offsets: dict[tuple[str, int], int] = {}
        for msg in messages:
            topic, partition, offset = kafka.where(msg)
            offsets[(topic, partition)] = offset + 1
            try:
                events.append((msg, self._codec.decode(msg.value())))
            except Exception as e:  # PayloadDecodeError, or a bug in a decoder
                self._dead_letter(producer, msg, f"undecodable history record: {e}")
        rows: dict[str, RunRow | None] = dict(store.load_rows({e.run_id for _, e in events}))
        changed: dict[str, RunRow] = {}
        types: dict[str, SearchAttributeType] = {}
        pages: list[HistoryPage] = []
        for msg, event in events:
            before = rows.get(event.run_id)
            try:
                after = fold(before, event)
                seen = attribute_types(event)
            except ValueError as e:  # a search attribute value that is not JSON
                self._dead_letter(producer, msg, f"history event cannot be indexed: {e}")
                continue
            if starts_page(before, after, event):
                _, partition, offset = kafka.where(msg)
                pages.append(HistoryPage(event.run_id, event.event_id, partition, offset))
            if after is not None and after is not before:
                rows[event.run_id] = changed[event.run_id] = after
            types.update((n, t) for n, t in seen.items() if n not in self._known_types)
        # dead letters are durable before the offsets move past them
        producer.flush(30)
        self._batches += 1
        store.write_batch(list(changed.values()), types, offsets, self._fault_hook(), pages=pages)
        self._known_types.update(types)
        self._applied(messages, offsets)

    def _applied(self, messages: list[Message], offsets: dict[tuple[str, int], int]) -> None:
        last_time: dict[int, float] = {}
        for msg in messages:
            _, ts = msg.timestamp()
            last_time[kafka.where(msg)[1]] = ts / 1000
        with self._lock:
            for (_, p), next_offset in offsets.items():
                state = self._partitions.get(p)
                if state is not None:
                    state.position = max(state.position, next_offset)
                    state.high = max(state.high, next_offset)
                    state.applied_time = last_time.get(p, state.applied_time)
        self._show_progress()

    def _dead_letter(self, producer: Any, msg: Message, reason: str) -> None:
        _, partition, offset = kafka.where(msg)
        log.error("dead letter partition=%d offset=%d: %s", partition, offset, reason)
        kafka.dead_letter(producer, self.topics.dead_letters, msg, reason)

    def _fault_hook(self) -> Callable[[], None] | None:
        n = self.settings.kill_before_commit
        if n and self._batches == n:
            return lambda: os.kill(os.getpid(), signal.SIGKILL)
        return None

    # ---- SQLite: one projector per store --------------------------------------------------------
    def _sqlite_lock(self, store: Store, stop: threading.Event) -> IO[bytes] | None:
        """The store's lock file, held while this projector runs (None: stopped waiting)."""
        path = Path(f"{store.location.target}.lock")
        handle = open(path, "ab")
        told = False
        while not stop.is_set():
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                if not told:
                    log.info("another projector indexes %s; waiting for it to stop", path)
                    told = True
                stop.wait(1.0)
        handle.close()
        return None


def _watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    """(low, high) of a partition, retrying while a new topic's leader is not yet known."""
    deadline = time.monotonic() + 30
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            return int(low), int(high)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
