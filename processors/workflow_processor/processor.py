"""The workflow processor: the Kafka shell around the pure run state machine.

One consumer-group member on `commands` (read_committed). Per batch, one Kafka transaction
carries the history events, activity tasks, timers, completions, replies, snapshots and the
consumed offsets; a crash anywhere leaves all of a batch or none of it. Every output for a
workflow goes to the same partition number as the command that caused it. A transaction
ends on a thread of its own while the next batch is read and run (see `transactions`).
Local activities run in this process (`local_activities`): an attempt starts in the batch
that decides it, which waits briefly for its outcome (`_run_local`); a later outcome joins
the next batch from an in-process queue, never through `commands`. With eager dispatch
(`processors.eager`) the tasks this worker's own runner can take start as soon as their
transaction commits, and the runner's reports come back the same in-process way.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from confluent_kafka import KafkaException, Message, Producer, TopicPartition

from processors.eager import EagerReports, EagerRunner, Report
from processors.run.commands import (
    continue_runs,
    handle_command,
    on_complete_activity,
    on_fail_activity,
    on_start_activity,
)
from processors.run.state import PAYLOAD_STORE_ERRORS, Run
from processors.run.timers import PERSISTED_TIMERS
from processors.tally import consumer_lag
from processors.workflow_code.registry import Registry
from processors.workflow_processor.batch import Batch
from processors.workflow_processor.breaker import Breaker
from processors.workflow_processor.intake import Poison, check_command
from processors.workflow_processor.local_activities import LocalActivities
from processors.workflow_processor.offsets import ConsumedOffsets
from processors.workflow_processor.output import (
    AfterCommit,
    Output,
    RecordTooLarge,
    RefusedStarts,
    record_limit,
)
from processors.workflow_processor.reader import CommandReader
from processors.workflow_processor.restore import (
    RestoredPartition,
    SnapshotReader,
    restore_partitions,
)
from processors.workflow_processor.run_cache import PartitionRuns
from processors.workflow_processor.stats import Counters, ProcessorTally, Timing
from processors.workflow_processor.status import StatusReporter
from processors.workflow_processor.timer_heap import TimerHeap
from processors.workflow_processor.transactions import (
    Call,
    TransactionFailed,
    Transactions,
    init_transactions,
)
from streams import kafka
from streams.errors import PayloadTooLargeError
from streams.kafka.config import KafkaConfig
from streams.kafka.stall import DEFAULT_STALL_SECONDS
from streams.kafka.topics import Topics, ensure_topics, partition_count, topic_specs
from streams.settings import CacheSettings, FaultSettings
from streams.tracing import Tracing, carrier_of
from streams.wire import Wire, wire
from streams.wire.commands import (
    CompleteActivity,
    FailActivity,
    StartActivity,
)
from streams.wire.records import Failure as RunFailure
from streams.wire.records import (
    RestoreReport,
    Timer,
)

log = logging.getLogger(__name__)

# how long a read of `commands` may block while a local or eager attempt runs: its outcome
# comes through an in-process queue, which a blocked read does not watch
IN_PROCESS_POLL = 0.0005

# timers with a record on the timers topic; the others are derived from run state


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    """Settings of one workflow processor (the worker builds them, see `streams.settings`)."""

    instance_id: str
    batch_size: int = 1000
    max_wait: float = 0.05
    timer_budget: int = 2000
    cache: CacheSettings = field(default_factory=CacheSettings)
    faults: FaultSettings = field(default_factory=FaultSettings)
    # a paused or crashed owner's open transaction is aborted this long after it began, so
    # a new owner of its partitions waits at most this long (plus the coordinator's sweep)
    transaction_timeout_ms: int = 10_000
    tracing: bool = False  # make spans (see `streams.tracing`; needs the otel extra)
    # librdkafka statistics (consumer lag) this often, and the blocked-runs gauge refreshed
    # as often, for the metrics endpoint; 0 (no endpoint) is off
    statistics_interval_ms: int = 0
    local_activity_threads: int = 8  # the pool that runs local activities
    # how long a batch waits for the outcomes of the local attempts it started before it
    # commits (seconds): quick local steps are recorded in the transaction that started them
    local_activity_wait: float = 0.005
    # the crash-loop breaker's note of what is in flight (see `breaker`); None: no breaker
    inflight_path: Path | None = None
    # a commands partition not read this long while records wait in it gets a new consumer
    # (see `reader`); 0 is off
    stall_seconds: float = DEFAULT_STALL_SECONDS
    # join the group as the static member `instance_id` (see `static_member`)
    static_membership: bool = False
    # runs blocked by the payload store (an object missing or unreadable) are replayed again
    # this often (seconds): they go on by themselves once the store gives the object back
    store_retry_seconds: float = 30.0


class WorkflowProcessor:
    """Consumes commands, runs workflow code, and writes results transactionally."""

    def __init__(self, config: KafkaConfig, registry: Registry, settings: ProcessorConfig) -> None:
        self.config = config
        self.registry = registry
        self.settings = settings
        self.topics = Topics(config.topic_prefix)
        self._stop: threading.Event | None = None  # run()'s
        self.wire: Wire = wire()
        self.partitions: dict[int, PartitionRuns] = {}
        self._timers = TimerHeap()
        self._task_topics: set[str] = set()
        self._restore_needed: set[int] = set()
        self._store_retry_at = time.monotonic() + settings.store_retry_seconds
        self._epoch = 0  # bumped by every assignment change
        self._admin = kafka.admin(config)
        self._replies_partitions = partition_count(self._admin, self.topics.replies)
        self._commands_partitions = partition_count(self._admin, self.topics.commands)
        self.stats = Counters()
        self.restore_reports: dict[int, RestoreReport] = {}
        self.timing = Timing()
        self.tracing = Tracing() if settings.tracing else None
        self.tally = ProcessorTally(self.stats, self.partitions, self._timers, self.topics.commands)
        self._gauges_at = 0.0  # monotonic time the blocked-runs gauge was last counted
        self.local = LocalActivities(registry, settings.local_activity_threads)
        # eager dispatch: the runner of this worker, when it serves a queue too (the worker
        # sets it before run()), and the reports of the attempts it runs for us
        self.eager: EagerRunner | None = None
        self.eager_reports = EagerReports(lambda partition: partition in self.partitions)
        self.offsets = ConsumedOffsets()  # what the next transaction commits
        # runs whose records would not fit, started by a batch that was therefore not
        # written: the command starting one is dead-lettered when read again
        self.refused_starts = RefusedStarts()
        self.breaker = Breaker.open(settings.inflight_path)
        self.transactional_id = f"{config.topic_prefix}wp-{settings.instance_id}"

    # ---- lifecycle ----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Processes until `stop` is set; raises on fatal Kafka errors (restart the process)."""
        self._stop = stop
        self.producer = self._new_producer()
        self.transactions: Transactions[AfterCommit] = Transactions(
            self.producer, self.timing, self.settings.faults, self._committed, self._new_producer
        )
        self.output = Output(
            self.producer,
            self.topics,
            self.wire,
            self._task_topic,
            self._commands_partitions,
            self._replies_partitions,
            self.stats,
            self.transactions.deferred,
            tracing=self.tracing is not None,
            eager=self.eager,
            max_record_bytes=record_limit(self.config),
        )
        self.loader = SnapshotReader(self.config, self.wire, self.registry)
        self._status_producer = kafka.producer(self.config, **{"linger.ms": 50})
        self.status = StatusReporter(
            self._status_producer, self.topics, self.wire, self.settings.instance_id
        )
        consumer_settings: dict[str, object] = {
            "session.timeout.ms": 10000,
            "max.poll.interval.ms": 300000,
            "client.id": f"everflow-wp-{self.settings.instance_id}",
            **kafka.static_member(self.settings.static_membership, self.settings.instance_id),
        }
        if self.settings.statistics_interval_ms:
            consumer_settings["statistics.interval.ms"] = self.settings.statistics_interval_ms
            consumer_settings["stats_cb"] = self._on_statistics
        self.reader = CommandReader(
            self.config,
            self.topics.commands,
            consumer_settings,
            self._on_assign,
            self._on_revoke,
            self.offsets.committed,
            self.settings.stall_seconds,
        )
        try:
            while not stop.is_set():
                self.process_once()
            if self.offsets.deferred and self._settle():
                self._commit(Batch(self.partitions), 0)
            self._settle()
        finally:
            self.breaker.close()
            self.local.close()
            self.transactions.close()
            self.eager_reports.close()  # what it still holds has its copy in `commands`
            log.info(
                "processor stopped instance=%s stats=%s timing_s=%s",
                self.settings.instance_id,
                asdict(self.stats),
                self.timing.rounded(),
            )
            self.reader.close()
            self.loader.close()
            try:
                self.producer.flush(5)
            except KafkaException as e:  # fenced: nothing of ours may be written any more
                log.warning("producer not flushed: %s", e)
            self.partitions.clear()
            self.status.report(self.partitions, self.stats, {}, force=True)
            self._status_producer.flush(5)

    def _new_producer(self) -> Producer:
        """A transactional producer with this processor's transactional.id, initialised
        (which fences any earlier one with the same ID: see `transactions`)."""
        producer = kafka.transactional_producer(
            self.config,
            self.transactional_id,
            **{
                "transaction.timeout.ms": self.settings.transaction_timeout_ms,
                "message.timeout.ms": self.settings.transaction_timeout_ms - 1000,
            },
        )
        init_transactions(
            producer,
            self.transactional_id,
            self.config.principal,
            keep_trying=lambda: self._stop is None or not self._stop.is_set(),
            on_wait=lambda: self.tally.outage_retries.add("init_transactions"),
        )
        return producer

    def _on_assign(self, consumer: object, partitions: list[TopicPartition]) -> None:
        ids = [tp.partition for tp in partitions]
        log.info("assigned partitions=%s instance=%s", ids, self.settings.instance_id)
        self._settle()
        self._epoch += 1
        self._restore(ids)

    def _on_revoke(self, consumer: object, partitions: list[TopicPartition]) -> None:
        ids = {tp.partition for tp in partitions}
        log.info("revoked partitions=%s instance=%s", sorted(ids), self.settings.instance_id)
        self._settle()  # what this owner computed is written before the partitions move
        self._epoch += 1
        for p in ids:
            self.breaker.revoked(p)
            self._retire(self.partitions.get(p))
            self.partitions.pop(p, None)
            self.restore_reports.pop(p, None)
        self._timers.discard(ids)
        self.reader.revoked(ids)
        self.offsets.revoked(ids)
        self._size_caches()

    def _size_caches(self) -> None:
        share = self.settings.cache.max_cached_runs // max(1, len(self.partitions))
        for state in self.partitions.values():
            state.capacity = max(1, share)
            state.trim()

    def _restore(self, ids: list[int]) -> None:
        def read() -> tuple[dict[int, RestoredPartition], list[TopicPartition], dict[int, int]]:
            restored = restore_partitions(self.config, self.wire, ids, self.registry)
            committed = self.reader.committed_offsets(ids)
            return restored, committed, {p: self.reader.end(p) for p in ids}

        # what the partitions hold, read again for as long as the cluster cannot be read: the
        # worker waits an outage out (a refusal still stops it)
        restored, committed, ends = kafka.through_outages(
            read,
            f"restoring partitions {ids}",
            self._stop,
            on_retry=lambda: self.tally.outage_retries.add("restore"),
        )
        # commands that arrived while nobody owned a partition (an activity's result, say)
        # come before its overdue timers: a timeout must not win against a waiting result
        for tp in committed:
            self.breaker.assigned(tp.partition, tp.offset)
            if tp.offset >= 0:
                self.offsets.found(tp.partition, tp.offset)
            self.reader.expect(tp.partition, tp.offset, ends[tp.partition])
        self._timers.discard(restored.keys())
        for p, part in restored.items():
            self._retire(self.partitions.get(p))
            state = PartitionRuns(p, self.settings.cache, 1, self.loader.load)
            state.index, state.history_end = part.index, part.history_end
            state.closed.extend(part.closed)
            state.garbage.extend(part.garbage)
            self.partitions[p] = state
            self.restore_reports[p] = part.report()
            self.tally.restore_seconds.observe(part.seconds)
            self.tally.restore_events += part.tail_records
            for timer in part.timers.values():
                self._timers.push(p, timer)
            for stored in part.runs.values():
                run = stored.run
                state.put(stored)
                if run.workflow_id in part.dirty:
                    state.mark_dirty(stored)
                for timer in run.derived_timers():
                    self._timers.push(p, timer)
                # at least once: an attempt whose outcome was never recorded runs again
                for task in run.activities.local_attempts():
                    self.local.submit(p, task)
                if run.blocked is not None:
                    self._restore_needed.add(p)
        self._size_caches()
        self.status.report(self.partitions, self.stats, self.restore_reports, force=True)

    # ---- one batch ------------------------------------------------------------------------
    def process_once(self) -> None:
        self.status.report(self.partitions, self.stats, self.restore_reports)
        stalls = self.reader.stalled(self.partitions)
        if stalls:
            self.reader.renew(stalls)  # revokes all: the transaction in flight settles
            self.tally.consumer_renewals = self.reader.renewals
            return
        self._count_blocked()
        self.tally.local_attempts = self.local.started
        wait = self.settings.max_wait
        next_due = self._timers.next_due()
        if next_due is not None:
            wait = min(wait, max(0.0, next_due / 1000.0 - time.time()))
        if self.reader.catching_up:
            wait = max(wait, 0.01)
        if self.local.running or self._eager_running():
            wait = min(wait, IN_PROCESS_POLL)  # an in-process outcome joins the next batch soon
        if self.transactions.in_flight:
            wait = 0.0  # with nothing to read, settle the transaction in flight instead
        epoch = self._epoch
        # after a crash, one command per batch until past what was in flight (see `breaker`)
        size = 1 if self.breaker.stepping else self.settings.batch_size
        messages = self.reader.read(size, wait)
        if epoch != self._epoch and messages:
            # a rebalance ran while this batch was read: messages from before it may belong
            # to partitions revoked (or revoked and given back, restored and re-read from
            # their committed offsets); drop the batch, and read again from committed offsets
            log.info("rebalance during a read: %d messages dropped, re-reading", len(messages))
            self._rewind()
            return
        self.reader.caught_up(messages)
        now = int(time.time() * 1000)
        due = self._due_timers(now)
        local = self.local.outcomes()
        reports = self.eager_reports.take()
        if (
            not messages
            and not due
            and not local
            and not reports
            and not self._restore_needed
            and not self._checkpoint_due()
            and time.monotonic() < self._store_retry_at
        ):
            if self.offsets.overdue():
                self._commit(Batch(self.partitions), 0)  # nothing else came: offsets alone
            else:
                self._settle()
            return
        batch = Batch(self.partitions)
        mine = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(kafka.fenced_member(err, self.settings.instance_id))
                log.warning("consumer error: %s", err.str())
                continue
            if msg.partition() not in self.partitions:
                continue  # revoked while this batch was read: its new owner handles it
            mine.append(msg)
        if mine:
            self.breaker.processing(_spans(mine))
        for msg in mine:
            batch.offsets[msg.partition()] = msg.offset() + 1
            self._handle_message(msg, now, batch)
            self.breaker.passed(msg.partition(), msg.offset())
        for partition, workflow_id, body in local:
            self._local_outcome(partition, workflow_id, body, now, batch)
        self._eager_reports(reports, now, batch)
        fired = [
            timer.fire_at for partition, timer in due if self._fire(partition, timer, now, batch)
        ]
        self._try_unblock(now, batch)
        local_count = len(local) + self._run_local(batch)
        if fired:
            self.tally.timers_fired(now, fired)
        if not batch.writes() and not self._checkpoint_due():
            # commands that changed nothing (a report recorded already, a late result): their
            # offsets ride on the next transaction instead of one of their own. Read again
            # after a crash, they change nothing again.
            self.offsets.defer(batch.offsets)
            self._settle()
            return
        self._commit(batch, len(messages) + len(due) + local_count + len(reports))

    def _checkpoint_due(self) -> bool:
        clock = time.monotonic()
        return any(state.checkpoint_due(clock) for state in self.partitions.values())

    def _due_timers(self, now: int) -> list[tuple[int, Timer]]:
        # a partition still catching up on its commands holds its timers back
        due = self._timers.due(now, self.settings.timer_budget, held=self.reader.catching_up)
        return [(p, timer) for p, timer in due if p in self.partitions]

    def _handle_message(self, msg: Message, now: int, batch: Batch) -> None:
        topic, partition, offset = kafka.where(msg)
        doomed = self.breaker.reason(partition, offset)
        if doomed is not None:  # not even decoded: that may be what kills the process
            log.error("dead-lettering command (crash_loop): %s", doomed)
            batch.dead.append((msg, doomed))
            return
        checked = check_command(
            self.wire.command, msg.key(), msg.value(), topic, partition, offset,
            self._commands_partitions,
        )  # fmt: skip
        if checked is None:
            log.warning("ignoring a tombstone (no value) partition=%d offset=%d", partition, offset)
            self.tally.ignored.add("tombstone")
            return
        if isinstance(checked, Poison):
            log.error("dead-lettering command (%s): %s", checked.code, checked.reason)
            batch.dead.append((msg, checked.reason))
            return
        command = checked
        if self.refused_starts.refuse(command, msg, batch):
            return
        self.stats.commands += 1
        runs = self.partitions[partition]
        # the request's trace context, kept on the event it causes (a C call when none)
        trace = carrier_of(msg.headers())
        handle_command(command, runs, partition, now, self.registry, batch, trace)
        current = runs.get(command.workflow_id)
        if current is not None:
            self._after(current, runs, now, batch)

    def _after(self, run: Run, runs: PartitionRuns, now: int, batch: Batch) -> None:
        """Starts a successor run, and holds a run to its history limits."""
        if run.next_run is not None:
            continue_runs(run, runs, now, batch)
            run = runs.get(run.workflow_id) or run
        if not run.closed:
            run.check_history_limits(runs.stored(run).history_bytes, now, batch.effects)

    def _run_local(self, batch: Batch) -> int:
        """Starts the local-activity attempts the batch decided, and records the outcomes
        that arrive within `local_activity_wait` in this same batch, with what the code does
        next (which may start more): a run whose steps are all local and quick commits from
        its start to its close in one transaction. An attempt may so run before the
        transaction that schedules it commits; if that transaction aborts, the restored run
        decides the same attempt again and it runs again (at least once, the same key).
        Outcomes arriving later join a later batch. Returns the outcomes recorded."""
        budget = self.settings.local_activity_wait
        deadline = time.monotonic() + budget
        awaited: set[tuple[str, int, int]] = set()
        recorded = 0
        while True:
            now = int(time.time() * 1000)
            for partition, fx in batch.fx.items():
                for task in fx.local_tasks:
                    self.local.submit(partition, task)
                    if task.scheduled_at <= now:  # one waiting out a backoff is not awaited
                        awaited.add((task.run_id, task.activity_id, task.attempt))
                fx.local_tasks.clear()
            left = deadline - time.monotonic()
            if not awaited or left <= 0:
                return recorded
            outcomes = self.local.wait(left)
            if not outcomes:
                return recorded
            now = int(time.time() * 1000)
            for partition, workflow_id, body in outcomes:
                awaited.discard((body.run_id, body.activity_id, body.attempt))
                self._local_outcome(partition, workflow_id, body, now, batch)
            recorded += len(outcomes)

    def _local_outcome(
        self,
        partition: int,
        workflow_id: str,
        body: CompleteActivity | FailActivity,
        now: int,
        batch: Batch,
    ) -> None:
        """Records a local activity's outcome like a runner's report (same attempt fence);
        dropped when the partition moved away (its new owner runs the attempt again)."""
        runs = self.partitions.get(partition)
        if runs is None:
            return
        run = runs.get(workflow_id)
        if isinstance(body, CompleteActivity):
            on_complete_activity(body, run, now, batch)
        else:
            on_fail_activity(body, run, now, batch)
        if run is not None:
            self._after(run, runs, now, batch)

    # ---- eager dispatch (see `processors.eager`) ----------------------------------------------
    def _eager_running(self) -> int:
        return 0 if self.eager is None else self.eager.eager_running

    def _committed(self, after: AfterCommit) -> None:
        """On the commit thread, as soon as a transaction committed: its claimed tasks start."""
        if after.eager and self.eager is not None:
            self.eager.start_eager(after.eager)

    def _eager_reports(self, reports: list[Report], now: int, batch: Batch) -> None:
        """Records the runner's reports like ones read from `commands` (same attempt fence).
        One for a partition that moved away is left to its copy in `commands`."""
        recorded = 0
        for report in reports:
            runs = self.partitions.get(report.partition)
            if runs is None:
                continue
            run = runs.get(report.workflow_id)
            body = report.body
            if isinstance(body, CompleteActivity):
                on_complete_activity(body, run, now, batch)
            elif isinstance(body, FailActivity):
                on_fail_activity(body, run, now, batch)
            elif isinstance(body, StartActivity):
                on_start_activity(body, run, now, batch)
            if run is not None:
                self._after(run, runs, now, batch)
            recorded += 1
        self.tally.eager_reports += recorded

    def _fire(self, partition: int, timer: Timer, now: int, batch: Batch) -> bool:
        """Fires a due timer if its run still waits on it; whether it did."""
        state = self.partitions.get(partition)
        run = None if state is None else state.get(timer.workflow_id)
        if state is None or run is None or run.run_id != timer.run_id:
            if timer.kind in PERSISTED_TIMERS:  # its run is gone: drop the record too
                batch.partition_effects(partition).timer_ops.append((timer.key, None))
            return False
        # a stale timer (already fired, cancelled, superseded) is simply not acted on; its
        # record, if it had one, was tombstoned or replaced when the state moved on
        if run.fire_timer(timer, now, batch.effects(run)):
            self.stats.timers_fired += 1
            self._after(run, state, now, batch)
            return True
        return False

    def _try_unblock(self, now: int, batch: Batch) -> None:
        for p in list(self._restore_needed):
            state = self.partitions.get(p)
            for run in state.loaded() if state is not None else ():
                if run.blocked is not None and not run.closed:
                    run.try_unblock(now, batch.effects(run))
        self._restore_needed.clear()
        if time.monotonic() >= self._store_retry_at:
            self._store_retry_at = time.monotonic() + self.settings.store_retry_seconds
            for state in self.partitions.values():
                for run in state.loaded():
                    blocked = run.blocked
                    if blocked is not None and blocked.type in PAYLOAD_STORE_ERRORS:
                        run.try_unblock(now, batch.effects(run))

    # ---- the transaction ----------------------------------------------------------------------
    def _commit(self, batch: Batch, size: int) -> None:
        """Writes the batch in a transaction and hands its commit off; settles the previous
        one first (if that failed, the batch is dropped: state and input were restored)."""
        if not self._settle():
            return
        started = time.perf_counter()
        try:
            self.transactions.begin()
            retention = self.settings.cache.closed_retention_ms
            after = self.output.produce(batch, self.partitions, int(time.time() * 1000), retention)
            written = set(batch.fx) | set(batch.dirty)
            consumed = self.offsets.take(batch.offsets, self.partitions.keys(), written)
            offsets = [TopicPartition(self.topics.commands, p, o) for p, o in consumed.items()]
            metadata = self.reader.consumer.consumer_group_metadata() if offsets else None
        except KafkaException as e:
            self._recover(TransactionFailed(Call.PRODUCE, e))
            return
        except RecordTooLarge as e:
            self._refuse_too_large(e)
            return
        # runs of this batch are dirty now, so eviction keeps them until it is checkpointed
        for state in self.partitions.values():
            state.trim()
        self.timing.produce += time.perf_counter() - started
        after.tally.commands = size
        self.transactions.hand_off(offsets, metadata, after)

    def _settle(self) -> bool:
        """Settles the transaction in flight: applies what changes once it committed.
        False when it failed (and the owned partitions were restored)."""
        try:
            after = self.transactions.settle()
        except TransactionFailed as e:
            self._recover(e)
            return False
        if after is None:
            return True
        self.stats.transactions = self.transactions.committed
        if self.settings.faults.stall_after_commit == self.transactions.committed:
            self.reader.freeze(min(self.partitions, default=0))
        self.tally.committed(after.tally, self.transactions.last_commit_seconds)
        for partition, timer in after.timers:
            self._timers.push(partition, timer)
        for p, deferred in after.deferred.items():
            self.partitions[p].checkpointed(deferred)
        if self.tracing is not None and after.traced:
            # only now: a transaction that never commits is processed again, and its
            # events get their spans then (restore and replay append no event, so no span)
            self.tracing.workflow_spans(after.traced)
        return True

    # ---- metrics (read by `processors.metrics` at scrape time) ---------------------------------
    def _on_statistics(self, statistics: str) -> None:
        """librdkafka's statistics report (on this thread, inside a poll): the lag of the
        owned command partitions, swapped in whole for the scrape to read."""
        self.tally.consumer_lag = consumer_lag(statistics)

    def _retire(self, state: PartitionRuns | None) -> None:
        """Keeps a dropped partition's run cache figures, so the counters never go back."""
        if state is not None:
            self.tally.retired_hits += state.hits
            self.tally.retired_loads += state.loads
            self.tally.retired_evictions += state.evictions

    def _count_blocked(self) -> None:
        interval = self.settings.statistics_interval_ms / 1000.0
        clock = time.monotonic()
        if interval and clock - self._gauges_at >= interval:
            self._gauges_at = clock
            self.tally.count_blocked()

    def _task_topic(self, queue: str) -> str:
        topic = self.topics.tasks(queue)
        if topic not in self._task_topics:
            ensure_topics(
                self._admin, [s for s in topic_specs(self.config, [queue]) if s.name == topic]
            )
            self._task_topics.add(topic)
        return topic

    def _recover(self, failed: TransactionFailed) -> None:
        """A failed transaction: nothing of it may still commit (see `Transactions.recover`:
        aborted, or the producer replaced), then in-memory state is dropped and restored
        from Kafka, and the input rewound. Raises when the processor must stop."""
        timeout = self.settings.transaction_timeout_ms
        self.tally.transactions.add(
            self.transactions.recover(failed, timeout, self.transactional_id)
        )
        self._take_new_producer()
        self._restore(sorted(self.partitions))
        self._rewind()

    def _take_new_producer(self) -> None:
        """Hands a producer that `transactions` replaced to everything that holds one."""
        if self.transactions.producer is not self.producer:
            self.producer = self.transactions.producer
            self.output.use(self.producer)
            self.tally.producer_recreations.add(self.transactions.replaced_because)

    def _refuse_too_large(self, error: RecordTooLarge) -> None:
        """A record of the batch would be over the record limit, found before it was
        produced: nothing of the batch is written. The owned partitions are restored and
        re-read, and the run that made the record fails first, with the reason, in a
        transaction of its own; re-read, its commands find it closed and make nothing big
        again. A run the aborted batch itself started does not exist after the restore: the
        command that starts it is dead-lettered with the reason when it is read again."""
        log.error(
            "record too large, batch not written: workflow_id=%s run_id=%s partition=%d: %s",
            error.workflow_id, error.run_id, error.partition, error.reason,
        )  # fmt: skip
        self.tally.transactions.add("aborted")
        self.transactions.abort_or_replace(
            self.settings.transaction_timeout_ms, self.transactional_id
        )
        self._take_new_producer()
        self._restore(sorted(self.partitions))
        self._rewind()
        if error.workflow_id is None or error.run_id is None:
            raise PayloadTooLargeError(f"{error.reason} (it names no run to fail)") from error
        runs = self.partitions.get(error.partition)
        run = None if runs is None else runs.get(error.workflow_id)
        if run is None or run.run_id != error.run_id:
            self.refused_starts.note(error.workflow_id, error.run_id, error.reason)
            return
        batch = Batch(self.partitions)
        failure = RunFailure(error.reason, "RecordTooLarge", "workflow")
        if run.fail(failure, int(time.time() * 1000), batch.effects(run)):
            self._commit(batch, 0)

    def _rewind(self) -> None:
        """Every owned partition's read position back to its committed offset."""
        self.offsets.drop_deferred()  # what they covered is read again
        self.reader.rewind(self.partitions)


def _spans(messages: list[Message]) -> dict[int, tuple[int, int]]:
    """The offsets (first, last) of each partition among `messages`."""
    spans: dict[int, tuple[int, int]] = {}
    for msg in messages:
        _, p, o = kafka.where(msg)
        first, last = spans.get(p, (o, o))
        spans[p] = (min(first, o), max(last, o))
    return spans
