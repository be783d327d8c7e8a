"""Partition restore: rebuild a partition's runs and timers from the compacted topics and
the history tail.

1. wait until no transaction of a previous owner is open on the partition (a paused or
   crashed owner's last transaction is aborted by the coordinator, or committed);
2. read the partition's `snapshots` (latest record per workflow wins, tombstones delete) and
   `timers`, each to its committed end. Open runs are rebuilt from their snapshot; closed
   runs are only indexed (offset of their snapshot) and read back when asked about;
3. read `history` from the partition's checkpoint watermark to its end and fold the events
   the snapshots do not have yet.

The time it takes grows with the partition's runs (open, and closed within retention),
pending timers and the tail since the last checkpoint, not with all history ever written.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from processors.run.state import Run
from processors.workflow_code.registry import Registry
from processors.workflow_processor.run_cache import (
    CHECKPOINT_KEY,
    StoredRun,
    Where,
    chunk_key,
    parse_chunk_key,
)
from streams import kafka
from streams.errors import BrokerError, PayloadDecodeError
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.wire import Wire
from streams.wire.events import WorkflowStarted
from streams.wire.records import RestoreReport, Snapshot, Timer

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RestoredPartition:
    partition: int
    runs: dict[str, StoredRun] = field(default_factory=dict)  # loaded: open, tail-touched
    index: dict[str, Where] = field(default_factory=dict)  # snapshot offsets
    garbage: list[str] = field(default_factory=list)  # chunk keys no run needs
    closed: list[tuple[int, str, str]] = field(default_factory=list)  # (close time, wf, run)
    dirty: set[str] = field(default_factory=set)  # runs with events the snapshots lack
    timers: dict[str, Timer] = field(default_factory=dict)
    history_end: int = 0
    checkpoint: int = -1
    snapshot_records: int = 0
    snapshot_bytes: int = 0
    tail_records: int = 0
    tail_bytes: int = 0
    timer_records: int = 0
    waited: float = 0.0
    seconds: float = 0.0

    def report(self) -> RestoreReport:
        return RestoreReport(
            partition=self.partition,
            runs_open=sum(1 for s in self.runs.values() if not s.run.closed),
            runs_indexed=len(self.index.keys() | self.runs.keys()),
            snapshot_records=self.snapshot_records,
            snapshot_bytes=self.snapshot_bytes,
            tail_records=self.tail_records,
            tail_bytes=self.tail_bytes,
            timers=len(self.timers),
            waited_s=round(self.waited, 3),
            seconds=round(self.seconds, 3),
        )


def restore_partitions(
    config: KafkaConfig,
    wire: Wire,
    partitions: list[int],
    registry: Registry,
    timeout: float = 300.0,
) -> dict[int, RestoredPartition]:
    """Rebuilds the state of `partitions` (see the module doc); the runs get the worker's
    code (`registry`)."""
    started = time.monotonic()
    topics = Topics(config.topic_prefix)
    out = {p: RestoredPartition(p) for p in partitions}
    if not partitions:
        return out
    consumer = kafka.consumer(config, settings={"enable.partition.eof": True})
    try:
        waited = await_settled(
            config, consumer, [(t, p) for p in partitions for t in topics.workflow_state()]
        )
        deadline = started + timeout
        _read_compacted(consumer, deadline, topics, wire, registry, out)
        _read_tail(consumer, deadline, topics, wire, registry, out)
    finally:
        consumer.close()
    elapsed = time.monotonic() - started
    for part in out.values():
        part.seconds, part.waited = elapsed, waited
        # one line per partition; its dict is what tests and operators parse
        log.info("restored %s", asdict(part.report()))
    return out


def _held_back(committed: Consumer, raw: Consumer, topic: str, partition: int) -> bool:
    # a leader that is moving (broker restart, new topic) counts as still held back
    tp = TopicPartition(topic, partition)
    try:
        stable = committed.get_watermark_offsets(tp, 10, False)[1]
        return bool(stable < raw.get_watermark_offsets(tp, 10, False)[1])
    except KafkaException:
        return True


def await_settled(
    config: KafkaConfig, committed: Consumer, where: list[tuple[str, int]], limit: float = 60.0
) -> float:
    """Waits until no open transaction holds back the given partitions (their last stable
    offset reaches their high watermark); returns the seconds waited."""
    started = time.monotonic()
    raw = kafka.consumer(config, settings={"isolation.level": "read_uncommitted"})
    try:
        pending = list(where)
        while pending:
            pending = [(t, p) for t, p in pending if _held_back(committed, raw, t, p)]
            if not pending:
                break
            if time.monotonic() - started > limit:
                log.warning("open transactions still hold back %s; restoring anyway", pending)
                break
            time.sleep(0.2)
    finally:
        raw.close()
    waited = time.monotonic() - started
    if waited > 1:
        log.info("waited %.1fs for a previous owner's open transaction to end", waited)
    return waited


def _position(consumer: Consumer, topic: str, partition: int) -> int:
    [tp] = consumer.position([TopicPartition(topic, partition)])
    return max(0, tp.offset)


def _read_compacted(
    consumer: Consumer,
    deadline: float,
    topics: Topics,
    wire: Wire,
    registry: Registry,
    out: dict[int, RestoredPartition],
) -> None:
    assignment = [
        TopicPartition(t, p, OFFSET_BEGINNING)
        for p in out
        for t in (topics.snapshots, topics.timers)
    ]
    latest: dict[int, dict[str, tuple[int, Snapshot | None]]] = {p: {} for p in out}
    for msg in kafka.read_to_end(consumer, assignment, deadline):
        topic, partition, offset = kafka.where(msg)
        part, value = out[partition], msg.value()
        raw_key = msg.key()
        key = raw_key.decode() if isinstance(raw_key, bytes) else (raw_key or "")
        try:
            if topic == topics.snapshots:
                part.snapshot_records += 1
                part.snapshot_bytes += len(value or b"")
                snap = None if value is None else wire.snapshot.decode(value)
                if key == CHECKPOINT_KEY:
                    if snap is not None:
                        part.checkpoint = max(part.checkpoint, snap.history_offset)
                else:
                    latest[partition][key] = (offset, snap)
            else:
                part.timer_records += 1
                if value is None:
                    part.timers.pop(key, None)
                else:
                    part.timers[key] = wire.timer.decode(value)
        except PayloadDecodeError as e:
            # our own compacted topics: a record we cannot read is a bug or foreign data;
            # keep going and say so loudly rather than lose the partition
            log.error("skipping unreadable record %s", e.at(topic, partition, offset))
    for p, by_key in latest.items():
        _assemble(out[p], by_key, wire, registry)
    for part in out.values():
        part.closed.sort()


def _assemble(
    part: RestoredPartition,
    by_key: dict[str, tuple[int, Snapshot | None]],
    wire: Wire,
    registry: Registry,
) -> None:
    """Runs from their head snapshots and chunks: open ones loaded, closed ones indexed."""
    chunks: dict[tuple[str, str], dict[int, tuple[int, Snapshot]]] = {}
    heads: dict[str, tuple[int, Snapshot]] = {}
    for key, (offset, snap) in by_key.items():
        if snap is None:
            continue
        parsed = parse_chunk_key(key)
        if parsed is None:
            heads[key] = (offset, snap)
        else:
            chunks.setdefault((parsed[0], parsed[1]), {})[parsed[2]] = (offset, snap)
    for workflow_id, (offset, snap) in heads.items():
        mine = chunks.pop((workflow_id, snap.run_id), {})
        count = snap.chunk_count
        if any(n not in mine for n in range(count)):
            log.error(
                "snapshot of %s run %s lacks some of its %d chunks; not restored",
                workflow_id,
                snap.run_id,
                count,
            )
            continue
        part.garbage += [chunk_key(workflow_id, snap.run_id, n) for n in mine if n >= count]
        where = Where(offset, snap.run_id, tuple(mine[n][0] for n in range(count)))
        part.index[workflow_id] = where
        older = [raw for n in range(count) for raw in mine[n][1].events]
        if snap.closed:  # answered from its snapshot when asked; only its close time now
            last = snap.events[-1] if snap.events else (older[-1] if older else None)
            close_time = wire.event.decode(last).time if last is not None else 0
            part.closed.append((close_time, workflow_id, snap.run_id))
            part.runs.pop(workflow_id, None)
        else:
            part.runs[workflow_id] = run_from_snapshot(
                snap, part.partition, wire, registry, older, where
            )
    for (workflow_id, run_id), rest in chunks.items():
        part.garbage += [chunk_key(workflow_id, run_id, n) for n in rest]


def _read_tail(
    consumer: Consumer,
    deadline: float,
    topics: Topics,
    wire: Wire,
    registry: Registry,
    out: dict[int, RestoredPartition],
) -> None:
    assignment = [
        TopicPartition(topics.history, p, part.checkpoint if part.checkpoint >= 0 else 0)
        for p, part in out.items()
    ]
    closed = {p: {wf: run_id for _, wf, run_id in part.closed} for p, part in out.items()}
    for msg in kafka.read_to_end(consumer, assignment, deadline):
        _, partition, offset = kafka.where(msg)
        part, value = out[partition], msg.value() or b""
        part.tail_records += 1
        part.tail_bytes += len(value or b"")
        try:
            event = wire.event.decode(value)
        except PayloadDecodeError as e:
            where = e.at(topics.history, partition, offset)
            log.error("skipping unreadable history record %s", where)
            continue
        stored = part.runs.get(event.workflow_id)
        if stored is not None and stored.run.run_id == event.run_id:
            run = stored.run
            expected = len(run.events) + 1
            if event.event_id == expected:
                run.apply(event)
                stored.encoded.append(value)
                _pending(stored, offset)
                part.dirty.add(run.workflow_id)
            elif event.event_id > expected:
                log.error(
                    "history gap in run %s of %s: event %d follows %d (offset %d)",
                    run.run_id,
                    run.workflow_id,
                    event.event_id,
                    expected - 1,
                    offset,
                )
        elif event.event_id == 1 and isinstance(event.attributes, WorkflowStarted):
            if closed[partition].get(event.workflow_id) == event.run_id:
                continue  # a closed run its snapshot already has
            run = Run(event.workflow_id, event.run_id, partition, registry)
            run.apply(event)
            stored = StoredRun(run, [value], first_offset=offset)
            _pending(stored, offset)
            part.runs[event.workflow_id] = stored
            replaced = part.index.pop(event.workflow_id, None)
            if replaced is not None:  # a new run of the workflow: the old one's chunks go
                part.garbage += [
                    chunk_key(event.workflow_id, replaced.run_id, n)
                    for n in range(len(replaced.chunks))
                ]
            part.dirty.add(event.workflow_id)
        # else: a run whose snapshot has it (closed) or that passed its retention
    for p, part in out.items():
        part.history_end = _position(consumer, topics.history, p)


def _pending(stored: StoredRun, offset: int) -> None:
    """Notes an event the snapshots lack: until its run's next snapshot, the watermark must
    not pass it."""
    if stored.pending_events == 0:
        stored.pending_first_offset, stored.pending_since = offset, time.monotonic()
    stored.pending_events += 1


def run_from_snapshot(
    snapshot: Snapshot,
    partition: int,
    wire: Wire,
    registry: Registry,
    older: list[bytes] | None = None,
    where: Where | None = None,
) -> StoredRun:
    """A run rebuilt from its head snapshot and the events of its chunks (`older`)."""
    run = Run(snapshot.workflow_id, snapshot.run_id, partition, registry)
    events = [*(older or ()), *snapshot.events]
    for raw in events:
        run.apply(wire.event.decode(raw))
    return StoredRun(
        run,
        events,
        first_offset=snapshot.first_offset,
        history_bytes=sum(len(raw) for raw in events),
        chunks_written=snapshot.chunk_count,
        chunk_offsets=list(where.chunks) if where is not None else [],
    )


class SnapshotReader:
    """Reads one snapshot back by its offset (a run evicted from the cache)."""

    def __init__(self, config: KafkaConfig, wire: Wire, registry: Registry) -> None:
        self.topic = Topics(config.topic_prefix).snapshots
        self.wire = wire
        self.registry = registry
        # one record per read: no waiting on the broker for more, no large read-ahead
        self.consumer = kafka.consumer(
            config, settings={"fetch.wait.max.ms": 1, "max.partition.fetch.bytes": 65536}
        )

    def load(self, partition: int, where: Where) -> StoredRun | None:
        head = self._read(partition, where.offset)
        if head is None or head.run_id != where.run_id:
            return None
        older: list[bytes] = []
        for offset in where.chunks:
            chunk = self._read(partition, offset)
            if chunk is None:
                return None
            older += chunk.events
        return run_from_snapshot(head, partition, self.wire, self.registry, older, where)

    def _read(self, partition: int, offset: int, timeout: float = 30.0) -> Snapshot | None:
        self.consumer.assign([TopicPartition(self.topic, partition, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            if msg.offset() != offset or msg.value() is None:
                return None  # compacted or deleted: the index was stale
            snapshot: Snapshot = self.wire.snapshot.decode(msg.value())
            return snapshot
        raise BrokerError(f"reading the snapshot at {self.topic}/{partition}/{offset} timed out")

    def close(self) -> None:
        self.consumer.close()
