"""What one transaction writes: a batch's effects, the checkpoints of the partitions whose
turn it is, tombstones of expired closed runs, replies and dead letters."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from processors.eager import CLAIM_HEADER, EagerRunner, EagerTask
from processors.run.effects import Effects
from processors.workflow_processor.batch import Batch
from processors.workflow_processor.run_cache import (
    CHECKPOINT_KEY,
    CHUNK_EVENTS,
    PartitionRuns,
    StoredRun,
    chunk_key,
)
from processors.workflow_processor.stats import BatchTally, Counters
from streams import kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.tracing import headers_of
from streams.wire import Wire
from streams.wire.commands import Command, ResetWorkflow, StartWorkflow
from streams.wire.events import HistoryEvent, WorkflowStarted
from streams.wire.records import Rejected, RejectionCode, Reply, Snapshot, StartRejected, Timer

log = logging.getLogger(__name__)

Delivery = Callable[[Any, Any], None]

# librdkafka's producer refuses a record over `message.max.bytes` (1 000 000 by default, a
# little under the broker's 1 048 588); room is kept for the headers and the record's framing
DEFAULT_RECORD_LIMIT = 1_000_000
RECORD_HEADROOM = 1024


def record_limit(config: KafkaConfig) -> int:
    """The largest record the producer takes: its `message.max.bytes` (a pass-through
    setting, `EVERFLOW_KAFKA_MESSAGE_MAX_BYTES`), else librdkafka's default."""
    return int(config.client_settings().get("message.max.bytes", DEFAULT_RECORD_LIMIT))


class RecordTooLarge(BaseException):
    """A run's record would be over the record limit: found before it is produced, so the
    processor aborts the transaction and fails the run (see `WorkflowProcessor`), instead of
    the broker failing the same transaction again and again. `workflow_id` is None when the
    record cannot be pinned to one run. A control signal of the shell (never seen by users),
    so a BaseException like the engine's others."""

    def __init__(
        self,
        partition: int,
        workflow_id: str | None,
        run_id: str | None,
        what: str,
        size: int,
        limit: int,
    ) -> None:
        self.partition = partition
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.size = size
        self.limit = limit
        self.reason = (
            f"{what} is {size} bytes, over the record limit of {limit} bytes (the producer's "
            "message.max.bytes, and the broker's); keep large data out of the workflow "
            "(pass a reference, e.g. an object-store key) or raise both limits"
        )
        BaseException.__init__(self, self.reason)


class RefusedStarts:
    """Runs whose records would not fit, failed before they existed (see
    `WorkflowProcessor._refuse_too_large`): the command that starts one is dead-lettered
    with the reason when it is read again, and a start's caller is told why."""

    def __init__(self) -> None:
        self._runs: dict[str, tuple[str, str]] = {}  # workflow ID -> (run ID, reason)

    def note(self, workflow_id: str, run_id: str, reason: str) -> None:
        self._runs[workflow_id] = (run_id, reason)

    def refuse(self, command: Command, msg: Any, batch: Batch) -> bool:
        """Dead-letters `command` (with a rejection to its caller) when it starts a noted
        run; False for any other command."""
        noted = self._runs.get(command.workflow_id) if self._runs else None
        if noted is None:
            return False
        run_id, reason = noted
        body = command.body
        starts = (isinstance(body, StartWorkflow) and body.run_id == run_id) or (
            isinstance(body, ResetWorkflow) and body.new_run_id == run_id
        )
        if not starts:
            return False
        del self._runs[command.workflow_id]
        log.error("dead-lettering command (record_too_large): %s", reason)
        batch.dead.append((msg, reason))
        if isinstance(body, StartWorkflow):  # the caller hears why, not nothing
            batch.reply(
                body.reply_to,
                command.command_id,
                StartRejected(RejectionCode.INVALID_ARGUMENT, reason),
            )
        return True


@dataclass(frozen=True, slots=True)
class AfterCommit:
    """What a transaction changes in memory once it commits."""

    timers: list[tuple[int, Timer]]  # (partition, timer) it set
    deferred: dict[int, list[StoredRun]]  # per partition checkpointed: runs whose snapshot waits
    tally: BatchTally  # what the transaction adds to the metrics
    # events it wrote that have a trace context, for their spans (only when tracing is on)
    traced: list[HistoryEvent] = field(default_factory=list)
    # tasks it claimed for this worker's runner, started once it committed
    eager: list[EagerTask] = field(default_factory=list)


class _Patient:
    """A producer whose produce() waits for room when its queue is full (a checkpoint after
    a large restore writes many snapshots at once) instead of failing, and whose delivery
    callbacks go through `defer` (they run when the processor settles the transaction)."""

    def __init__(self, producer: Producer, defer: Callable[[Delivery], Delivery]) -> None:
        self._producer = producer
        self._defer = defer

    def produce(self, *args: Any, **kwargs: Any) -> None:
        callback = kwargs.get("on_delivery")
        if callback is not None:
            kwargs["on_delivery"] = self._defer(callback)
        while True:
            try:
                self._producer.produce(*args, **kwargs)
                return
            except BufferError:
                self._producer.poll(0.05)


class Output:
    """Produces a batch into the open transaction; returns what changes in memory once the
    transaction commits."""

    def __init__(
        self,
        producer: Producer,
        topics: Topics,
        wire: Wire,
        task_topic: Callable[[str], str],
        commands_partitions: int,
        replies_partitions: int,
        stats: Counters,
        defer: Callable[[Delivery], Delivery],
        tracing: bool = False,
        eager: EagerRunner | None = None,
        max_record_bytes: int = DEFAULT_RECORD_LIMIT,
    ) -> None:
        self._defer = defer
        self.producer = _Patient(producer, defer)
        self.max_record_bytes = max_record_bytes
        self.topics = topics
        self.wire = wire
        self.task_topic = task_topic
        self.commands_partitions = commands_partitions
        self.replies_partitions = replies_partitions
        self.stats = stats
        self.tracing = tracing
        self.eager = eager
        self._room = 0  # slots of the eager runner this transaction may still claim
        self._claimed: list[EagerTask] = []

    def use(self, producer: Producer) -> None:
        """Produces with `producer` from now on (the processor re-created its producer)."""
        self.producer = _Patient(producer, self._defer)

    def produce(
        self, batch: Batch, owned: dict[int, PartitionRuns], now_ms: int, retention_ms: int
    ) -> AfterCommit:
        """Writes the batch; returns the timers it set and the partitions checkpointed."""
        new_timers: list[tuple[int, Timer]] = []
        traced: list[HistoryEvent] = []
        tally = BatchTally(dead_letters=len(batch.dead))
        self._room = 0 if self.eager is None else self.eager.free_slots()
        self._claimed = []
        for p, fx in batch.fx.items():
            if self.tracing:
                traced.extend(e for e in fx.events if getattr(e.attributes, "trace", None))
            state = owned.get(p)
            dirty = batch.dirty.get(p, {})
            self._events(p, fx.events, dirty, state, tally)
            self._effects(p, fx, new_timers, tally)
            if state is not None:
                for stored in dirty.values():
                    if stored.pending_events:  # touched without new events: nothing to write
                        state.mark_dirty(stored)
        checkpointed: dict[int, list[StoredRun]] = {}  # partition -> runs whose snapshot waits
        clock = time.monotonic()
        for p, state in owned.items():
            if state.checkpoint_due(clock):
                checkpointed[p] = self._checkpoint(p, state, now_ms, retention_ms)
        for fx in batch.fx.values():
            batch.replies.extend(fx.replies)
        self._replies(batch)
        self._dead_letters(batch)
        return AfterCommit(new_timers, checkpointed, tally, traced, self._claimed)

    def _events(
        self,
        p: int,
        events: list[Any],
        dirty: dict[tuple[str, str], StoredRun],
        state: PartitionRuns | None,
        tally: BatchTally,
    ) -> None:
        produce, topic, encode = self.producer.produce, self.topics.history, self.wire.event.encode
        last, clock = len(events) - 1, time.monotonic()
        for i, event in enumerate(events):
            raw = encode(event)
            if len(raw) + RECORD_HEADROOM > self.max_record_bytes:
                what = f"event {event.event_id} ({type(event.attributes).__name__})"
                self._too_large(p, event.workflow_id, event.run_id, what, raw)
            stored = dirty[(event.workflow_id, event.run_id)]
            stored.encoded.append(raw)
            stored.history_bytes += len(raw)
            self.stats.history_bytes += len(raw)
            stored.pending_events += 1
            first = event.event_id == 1 and isinstance(event.attributes, WorkflowStarted)
            pending = stored.pending_events == 1
            if pending:
                stored.pending_since = clock
            end = state if i == last else None
            wanted = first or pending or end is not None
            callback = _delivered(stored, first, pending, end) if wanted else None
            if callback is None:
                produce(topic, raw, event.workflow_id.encode(), partition=p)
            else:
                produce(topic, raw, event.workflow_id.encode(), partition=p, on_delivery=callback)
                if first:  # once per run, off the common path
                    started, kind = tally.started, event.attributes.workflow_type
                    started[kind] = started.get(kind, 0) + 1
        self.stats.events += len(events)
        if state is not None:
            state.records_since_checkpoint += len(events)

    def _effects(
        self, p: int, fx: Effects, new_timers: list[tuple[int, Timer]], tally: BatchTally
    ) -> None:
        produce, t, w = self.producer.produce, self.topics, self.wire
        for queue, task in fx.tasks:
            topic, key = self.task_topic(queue), task.workflow_id.encode()
            trace = fx.task_traces.get((task.run_id, task.activity_id, task.attempt))
            headers = None if trace is None else headers_of(trace)
            if self._room > 0 and self.eager is not None and queue == self.eager.task_queue:
                self._room -= 1
                self._claimed.append(EagerTask(task, headers))
                claim = (CLAIM_HEADER, self.eager.runner_id.encode())
                headers = [*(headers or ()), claim]
            raw = w.task.encode(task)
            if len(raw) + RECORD_HEADROOM > self.max_record_bytes:
                what = f"the task of activity {task.activity_id} attempt {task.attempt}"
                self._too_large(p, task.workflow_id, task.run_id, what, raw)
            if headers is None:
                produce(topic, raw, key, partition=p)
            else:
                produce(topic, raw, key, partition=p, headers=headers)
        for timer_key, timer in fx.timer_ops:  # in order: cleared, then maybe set again
            value = None if timer is None else w.timer.encode(timer)
            produce(t.timers, value, timer_key.encode(), partition=p)
            if timer is not None:
                new_timers.append((p, timer))
        new_timers.extend((p, timer) for timer in fx.derived_timers)
        for out in fx.commands:  # to other workflows: their partition, by murmur2
            cp = kafka.partition_for(out.workflow_id, self.commands_partitions)
            raw, key = w.command.encode(out), out.workflow_id.encode()
            if len(raw) + RECORD_HEADROOM > self.max_record_bytes:
                body = out.body
                what = f"a {type(body).__name__} command to workflow {out.workflow_id!r}"
                if isinstance(body, StartWorkflow):  # a child's start: its parent made it
                    self._too_large(p, body.parent_workflow_id, body.parent_run_id, what, raw)
                self._too_large(p, None, None, what, raw)
            trace = fx.command_traces.get(out.command_id)
            if trace is None:
                produce(t.commands, raw, key, partition=cp)
            else:
                produce(t.commands, raw, key, partition=cp, headers=headers_of(trace))
        for completion in fx.completions:
            key, raw = completion.workflow_id.encode(), w.completion.encode(completion)
            if len(raw) + RECORD_HEADROOM > self.max_record_bytes:
                what = f"the completion record of run {completion.run_id}"
                self._too_large(p, completion.workflow_id, completion.run_id, what, raw)
            produce(t.completions, raw, key, partition=p)
            seconds = max(0, completion.close_time - completion.start_time) / 1000.0
            tally.closed.append((completion.workflow_type, completion.status.lower(), seconds))

    def _checkpoint(
        self, p: int, state: PartitionRuns, now_ms: int, retention_ms: int
    ) -> list[StoredRun]:
        """Snapshots of the partition's dirty runs, tombstones of its expired closed runs,
        then the watermark: history before it is in snapshots now."""
        produce, topic, encode = self.producer.produce, self.topics.snapshots, self.wire.snapshot
        clock, deferred = time.monotonic(), []
        for stored in state.dirty.values():
            run = stored.run
            if state.get_loaded(run.workflow_id) is not stored:
                continue  # superseded by a newer run of the workflow in this checkpoint
            if not state.ripe(stored, clock):
                deferred.append(stored)  # its events stay in the tail after the watermark
                continue
            if not self._snapshot_fits(p, stored):
                deferred.append(stored)  # likewise, for good: restore reads them there
                continue
            stored.pending_events, stored.pending_first_offset = 0, -1
            self._chunks(p, stored)
            done = stored.chunks_written * CHUNK_EVENTS
            snap = Snapshot(
                run.workflow_id,
                run.run_id,
                run.closed,
                stored.encoded[done:],
                first_offset=stored.first_offset,
                chunk_count=stored.chunks_written,
            )
            raw = encode.encode(snap)
            self.stats.snapshot_bytes += len(raw)
            produce(
                topic,
                raw,
                run.workflow_id.encode(),
                partition=p,
                on_delivery=_indexed(state, stored),
            )
            if run.closed and not stored.retention_queued:
                stored.retention_queued = True
                state.closed.append((run.close_time or now_ms, run.workflow_id, run.run_id))
        for workflow_id in state.expired(now_ms, retention_ms):
            produce(topic, None, workflow_id.encode(), partition=p)
            state.forget(workflow_id)
            self.stats.runs_expired += 1
        for key in state.garbage:  # chunks of runs replaced or expired
            produce(topic, None, key.encode(), partition=p)
        state.garbage.clear()
        watermark = state.watermark(deferred)
        mark = Snapshot(CHECKPOINT_KEY, "", False, [], history_offset=watermark)
        produce(topic, encode.encode(mark), CHECKPOINT_KEY.encode(), partition=p)
        state.marked = watermark
        self.stats.checkpoints += 1
        return deferred

    def _snapshot_fits(self, p: int, stored: StoredRun) -> bool:
        """Whether the run's new snapshot chunks and its snapshot each fit in a record.
        If one does not, none is written: the run's events stay in the history tail after
        the watermark, where restore reads them (slower, never wrong), and the log says so."""
        encoded, done = stored.encoded, stored.chunks_written
        full = len(encoded) // CHUNK_EVENTS
        parts = [encoded[n * CHUNK_EVENTS : (n + 1) * CHUNK_EVENTS] for n in range(done, full)]
        parts.append(encoded[max(done, full) * CHUNK_EVENTS :])
        # an event in a snapshot costs its bytes and a length of at most 5 bytes
        largest = max(sum(len(e) + 5 for e in part) for part in parts) + RECORD_HEADROOM
        if largest <= self.max_record_bytes:
            return True
        run = stored.run
        log.warning(
            "snapshot of workflow_id=%s run_id=%s not written: it would be %d bytes, over "
            "the record limit of %d bytes; its events stay in the history tail of "
            "partition=%d (restores read them there)",
            run.workflow_id, run.run_id, largest, self.max_record_bytes, p,
        )  # fmt: skip
        return False

    def _chunks(self, p: int, stored: StoredRun) -> None:
        """Writes the run's newly filled chunks of events (each chunk once, ever)."""
        run = stored.run
        full = len(stored.encoded) // CHUNK_EVENTS
        for n in range(stored.chunks_written, full):
            events = stored.encoded[n * CHUNK_EVENTS : (n + 1) * CHUNK_EVENTS]
            raw = self.wire.snapshot.encode(Snapshot(run.workflow_id, run.run_id, False, events))
            self.stats.snapshot_bytes += len(raw)
            self.producer.produce(
                self.topics.snapshots,
                raw,
                chunk_key(run.workflow_id, run.run_id, n).encode(),
                partition=p,
                on_delivery=_chunk_written(stored, n),
            )
        stored.chunks_written = max(stored.chunks_written, full)

    def _too_large(
        self, p: int, workflow_id: str | None, run_id: str | None, what: str, raw: bytes
    ) -> None:
        raise RecordTooLarge(p, workflow_id, run_id, what, len(raw), self.max_record_bytes)

    def _replies(self, batch: Batch) -> None:
        produce, topic, encode = self.producer.produce, self.topics.replies, self.wire.reply.encode
        for reply in batch.replies:
            rp = kafka.partition_for(reply.client_id, self.replies_partitions)
            raw = encode(reply)
            if len(raw) + RECORD_HEADROOM > self.max_record_bytes:
                # the answer cannot travel: the caller gets why instead (nothing else changes)
                body = type(reply.body).__name__
                message = (
                    f"the reply ({body}) would be {len(raw)} bytes, over the record limit of "
                    f"{self.max_record_bytes} bytes; ask for less (a smaller query result, "
                    "no history in a describe)"
                )
                log.warning("reply to client_id=%s refused: %s", reply.client_id, message)
                refused = Reply(reply.client_id, reply.request_id,
                                Rejected(RejectionCode.INVALID_ARGUMENT, message))  # fmt: skip
                raw = encode(refused)
            produce(topic, raw, reply.client_id.encode(), partition=rp)

    def _dead_letters(self, batch: Batch) -> None:
        for msg, reason in batch.dead:
            kafka.dead_letter(
                self.producer, self.topics.dead_letters, msg, reason, self.max_record_bytes
            )


def _delivered(
    stored: StoredRun, first: bool, pending: bool, end: PartitionRuns | None
) -> Delivery:
    """Learns offsets from an event's delivery: the run's first event, the first one not in
    a snapshot yet, the last one of the partition in this transaction."""

    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            offset = msg.offset()
            if first:
                stored.first_offset = offset
            if pending:
                stored.pending_first_offset = offset
            if end is not None:
                end.history_end = max(end.history_end, offset + 1)

    return delivered


def _indexed(state: PartitionRuns, stored: StoredRun) -> Delivery:
    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            state.snapshot_written(stored, msg.offset())

    return delivered


def _chunk_written(stored: StoredRun, n: int) -> Delivery:
    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            del stored.chunk_offsets[n:]
            stored.chunk_offsets.append(msg.offset())

    return delivered
