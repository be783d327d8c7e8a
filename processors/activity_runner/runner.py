"""The activity runner: runs activity tasks from `tasks.<queue>` and reports results.

Async activities run on an event loop of the runner; plain functions in a thread pool. At
most `max_concurrent` run at once: the consumer pauses instead of buffering more, and it
keeps polling while activities run, so a long activity never trips `max.poll.interval.ms`.
A task's offset is committed when it is taken: each attempt is dispatched once. An attempt
lost with a crashed runner is recovered by the processor's timeouts (start-to-close,
heartbeat), which schedule the next attempt — with the last heartbeat details — instead of
Kafka re-delivering the same attempt behind the engine's back.

With eager dispatch (`processors.eager`) the processor of the same worker hands over the
tasks it claimed for this runner as soon as their transaction committed (`start_eager`, on
the processor's commit thread), and this runner offers its reports of them straight back
(`eager_reports`) besides sending them to `commands`; the claimed records on the tasks topic
are skipped by every runner.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from processors.activity_runner.attempt import RunningActivity, attempt_info, attempt_outcome
from processors.eager import CLAIM_HEADER, EagerReports, EagerTask, Report
from processors.tally import Counts, Histograms, consumer_lag
from processors.workflow_code.registry import Registry
from streams import _runtime, kafka
from streams.errors import (
    ConfigError,
    PayloadDecodeError,
    PayloadStoreError,
    UnknownActivityError,
)
from streams.kafka.config import KafkaConfig
from streams.kafka.stall import DEFAULT_STALL_SECONDS, Stall, StallWatch, consumer_watch
from streams.kafka.topics import Topics, partition_count
from streams.tracing import Headers, Tracing
from streams.wire import wire
from streams.wire.commands import (
    Command,
    CommandBody,
    CompleteActivity,
    FailActivity,
    HeartbeatActivity,
    StartActivity,
)
from streams.wire.records import ActivityCancelRequest, ActivityTask

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    """Settings of one activity runner (the worker builds them)."""

    task_queue: str
    max_concurrent: int = 64  # activities running at once; the consumer pauses beyond
    threads: int = 16  # for plain (non-async) activity functions
    instance_id: str = ""
    tracing: bool = False  # a RunActivity span per attempt (see `streams.tracing`)
    statistics_interval_ms: int = 0  # librdkafka statistics (task lag) this often; 0 is off
    # a tasks partition not read this long while tasks wait in it (and the runner has room)
    # gets a new consumer (see `streams.kafka.stall`); 0 is off
    stall_seconds: float = DEFAULT_STALL_SECONDS
    stall_tasks_after: int = 0  # testing hook, see `streams.settings.FaultSettings`
    # join the task queue's group as the static member `instance_id` (`kafka.static_member`)
    static_membership: bool = False

    def __post_init__(self) -> None:
        if not self.task_queue:
            raise ConfigError("task_queue is empty: name the queue the runner serves")
        for name in ("max_concurrent", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


class RunnerTally:
    """The runner's aggregates for its metrics (see `processors.tally`), updated on the
    runner's thread once per attempt, read at scrape time."""

    def __init__(self) -> None:
        self.schedule_to_start: Histograms[str] = Histograms()  # activity type
        self.execution: Histograms[tuple[str, str]] = Histograms()  # (type, outcome)
        self.attempts: Counts[str] = Counts()  # activity type
        self.consumer_renewals = 0  # consumers of tasks made again: a partition stalled
        self.failed: Counts[tuple[str, str]] = Counts()  # (activity type, error type)
        self.eager: Counts[str] = Counts()  # attempts handed over by the processor, by type
        self.claimed_skipped = 0  # claimed records read from the tasks topic (and skipped)
        self.dead_letters = 0
        self.consumer_lag: dict[tuple[str, int], int] = {}

    def attempt_done(self, outcome: Outcome) -> None:
        self.attempts.add(outcome.activity_type)
        if outcome.lateness is not None:  # an eager attempt: its start is counted here
            self.eager.add(outcome.activity_type)
            self.schedule_to_start.observe(outcome.activity_type, outcome.lateness)
        result = "completed" if outcome.error_type is None else "failed"
        self.execution.observe((outcome.activity_type, result), outcome.seconds)
        if outcome.error_type is not None:
            self.failed.add((outcome.activity_type, outcome.error_type))


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended, as the runner's thread learns it."""

    activity_type: str
    seconds: float
    error_type: str | None  # None: completed
    lateness: float | None = None  # of an eager attempt, its schedule-to-start (seconds)


class ActivityRunner:
    def __init__(self, config: KafkaConfig, registry: Registry, settings: RunnerConfig) -> None:
        self.config = config
        self.registry = registry
        self.settings = settings
        self.topics = Topics(config.topic_prefix)
        self.wire = wire()
        # (partition, offset) of each task done, with how its attempt ended when it ran
        self._done: queue.SimpleQueue[tuple[int, int, Outcome | None]] = queue.SimpleQueue()
        self.tally = RunnerTally()
        self._taken: dict[int, int] = {}  # partition -> offset to commit
        self._taken_count = 0  # tasks taken since start (for the stall testing hook)
        self._running = 0
        self._last_commit = 0.0
        self.completed = 0
        self.runner_id = f"runner-{uuid.uuid4().hex[:12]}"
        self._active: dict[tuple[str, str, int, int], RunningActivity] = {}
        # async activities of the batch being taken, started together on the loop: one
        # wake-up of the loop thread per batch instead of one per activity
        self._to_spawn: list[tuple[Any, concurrent.futures.Future[Any]]] = []
        self.tracing = Tracing() if settings.tracing else None
        # eager dispatch: the processor's queue for reports of attempts it handed over (set
        # by the worker); those attempts are counted apart, under a lock, as they start on
        # the processor's commit thread
        self.eager_reports: EagerReports | None = None
        self._eager_lock = threading.Lock()
        self._eager_running = 0
        self._accepting = False  # takes eager tasks: from start-up until it stops
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> int:
        """Attempts taken and not finished."""
        return self._running + self._eager_running

    @property
    def task_queue(self) -> str:
        return self.settings.task_queue

    @property
    def eager_running(self) -> int:
        """Eager attempts started and not finished."""
        return self._eager_running

    def free_slots(self) -> int:
        """Attempts that could start now (eager dispatch claims no more than this)."""
        if not self._accepting:
            return 0
        return max(0, self.settings.max_concurrent - self._running - self._eager_running)

    def open_for_eager(
        self, pool: concurrent.futures.ThreadPoolExecutor, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Where eager tasks start from now on: plain functions on `pool`, async ones on
        `loop` (`run()` opens its own)."""
        with self._eager_lock:
            self._pool, self._loop = pool, loop

    def close_for_eager(self) -> None:
        """Eager tasks handed over from now on are dropped (the runner stops)."""
        with self._eager_lock:
            self._pool = self._loop = None

    def start_eager(self, tasks: list[EagerTask]) -> None:
        """Starts tasks claimed for this runner (on the processor's commit thread). Ones that
        come after the runner stopped are dropped: their attempts time out and run again."""
        with self._eager_lock:
            pool, loop = self._pool, self._loop
            if pool is None or loop is None or loop.is_closed():
                log.warning(
                    "runner stopped: %d claimed activity task(s) dropped; their attempts "
                    "run again once they time out",
                    len(tasks),
                )
                return
            self._eager_running += len(tasks)
        calls: list[tuple[Any, concurrent.futures.Future[Any]]] = []
        for eager in tasks:
            task = eager.task
            try:
                self._begin(task, eager.headers, -1, pool, calls)
            except Exception as e:  # it cannot even start (its arguments, say): it fails
                log.exception("eager activity task could not start: %s", task.activity_type)
                self._report(task, error=e, eager=True)
                self._ended(task.partition, -1, Outcome(task.activity_type, 0.0, type(e).__name__))
        if calls:
            loop.call_soon_threadsafe(_spawn, loop, calls)

    def run(self, stop: threading.Event) -> None:
        """Runs tasks until `stop` is set, then waits for the running ones to finish."""
        loop = asyncio.new_event_loop()
        loop_thread = threading.Thread(
            target=loop.run_forever, name="activities-async", daemon=True
        )
        loop_thread.start()
        pool = concurrent.futures.ThreadPoolExecutor(
            self.settings.threads, thread_name_prefix="activity"
        )
        self.open_for_eager(pool, loop)
        self.producer = kafka.producer(self.config, **{"linger.ms": 0})
        self.consumer = self._task_consumer()
        self._cancels = self._reply_consumer()
        watch = self._stall_watch()
        self._accepting = True
        paused = False
        try:
            while not stop.is_set():
                self._collect_done()
                self._heartbeat_upkeep()
                free = self.settings.max_concurrent - self._running
                if free <= 0:
                    if not paused:
                        self.consumer.pause(self.consumer.assignment())
                        paused = True
                        if watch is not None:
                            watch.forget()  # standing still while full is no stall
                    self.consumer.poll(0.005)  # keeps the group session alive
                    continue
                if paused:
                    self.consumer.resume(self.consumer.assignment())
                    paused = False
                stalls = [] if watch is None else watch.check(self._owned())
                if stalls:
                    self._renew_consumer(stalls)
                    watch = self._stall_watch()
                    continue
                for msg in kafka.consume_batch(self.consumer, free, 0.02):
                    err = msg.error()
                    if err is not None:
                        if err.fatal():  # fenced, say: this runner cannot go on
                            raise KafkaException(
                                kafka.fenced_member(err, self.settings.instance_id)
                            )
                        log.warning("task consumer error: %s", err.str())
                        continue
                    self._start(msg, pool)
                if self._to_spawn:
                    loop.call_soon_threadsafe(_spawn, loop, self._to_spawn)
                    self._to_spawn = []
                self.producer.poll(0)
            self._accepting = False
            deadline = time.monotonic() + 30
            while self.running and time.monotonic() < deadline:
                self._collect_done()
                time.sleep(0.01)
            self._collect_done()
            self._commit_done()
        finally:
            self._accepting = False
            self.close_for_eager()
            self.producer.flush(10)
            self.consumer.close()
            self._cancels.close()
            pool.shutdown(wait=False, cancel_futures=True)
            loop.call_soon_threadsafe(loop.stop)
            loop_thread.join(5)
            if not loop_thread.is_alive():  # a runner in a longer-lived process leaves no loop
                loop.close()

    def _dead_letter(self, msg: Message, partition: int, offset: int, reason: str) -> None:
        """An unreadable task goes to dead letters with its reason; it is done once delivered
        (a failed delivery is tried again, so the task is never silently dropped)."""
        log.error("dead-lettering task: %s", reason)
        self.tally.dead_letters += 1

        def delivered(err: Any, _: Any) -> None:
            if err is None:
                self._done.put((partition, offset, None))
            else:
                log.error("dead letter not delivered (trying again): %s", err)
                kafka.dead_letter(
                    self.producer, self.topics.dead_letters, msg, reason, on_delivery=delivered
                )

        kafka.dead_letter(
            self.producer, self.topics.dead_letters, msg, reason, on_delivery=delivered
        )

    def _statistics(self) -> dict[str, Any]:
        """librdkafka statistics for the task consumer, when asked for (the metrics)."""
        interval = self.settings.statistics_interval_ms
        if not interval:
            return {}

        def on_statistics(statistics: str) -> None:
            self.tally.consumer_lag = consumer_lag(statistics)

        return {"statistics.interval.ms": interval, "stats_cb": on_statistics}

    def _reply_consumer(self) -> Consumer:
        # cancellation requests come back on the replies topic, keyed by this runner's ID
        consumer = kafka.consumer(self.config)
        topic = self.topics.replies
        partition = kafka.partition_for(
            self.runner_id, partition_count(kafka.admin(self.config), topic)
        )
        consumer.assign(
            [TopicPartition(topic, partition, kafka.end_offset(consumer, topic, partition))]
        )
        return consumer

    def _heartbeat_upkeep(self) -> None:
        for msg in self._cancels.consume(100, 0):
            if msg.error() is not None:
                continue
            reply = self.wire.reply.decode(msg.value())
            body = reply.body
            if reply.client_id == self.runner_id and isinstance(body, ActivityCancelRequest):
                running = self._active.get(
                    (body.workflow_id, body.run_id, body.activity_id, body.attempt)
                )
                if running is not None:
                    log.info(
                        "cancelling activity workflow_id=%s activity_id=%d",
                        body.workflow_id,
                        body.activity_id,
                    )
                    running.cancel()
        for running in list(self._active.values()):
            running.flush_due()

    def _send_heartbeat(self, running: RunningActivity, details: tuple[Any, ...]) -> None:
        t = running.task
        body = HeartbeatActivity(
            t.run_id,
            t.activity_id,
            t.attempt,
            self.registry.converter.to_payloads(list(details)),
            self.runner_id,
        )
        self._send(t, body, f"hb-{uuid.uuid4().hex}")

    def _send(
        self, task: ActivityTask, body: CommandBody, command_id: str, eager: bool = False
    ) -> None:
        reports = self.eager_reports
        if eager and reports is not None:
            # the processor records it in its next batch; the copy sent below keeps it
            # durable (a processor that dies before committing it reads it after a restore),
            # and is dropped as a duplicate when it arrives after the in-process one
            reports.offer(Report(task.partition, task.workflow_id, body))
        command = Command(command_id, task.workflow_id, int(time.time() * 1000), body)
        self.producer.produce(
            self.topics.commands,
            self.wire.command.encode(command),
            task.workflow_id.encode(),
            partition=task.partition,
        )
        self.producer.poll(0)

    def _task_consumer(self) -> Consumer:
        consumer = kafka.consumer(
            self.config,
            f"{self.config.topic_prefix}activities.{self.settings.task_queue}",
            # a killed runner's tasks move to another runner after this long
            settings={
                "session.timeout.ms": 10000,
                "client.id": f"everflow-ar-{self.settings.instance_id or self.runner_id}",
                **kafka.static_member(self.settings.static_membership, self.settings.instance_id),
                **self._statistics(),
            },
        )
        consumer.subscribe(
            [self.topics.tasks(self.settings.task_queue)],
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        return consumer

    def _stall_watch(self) -> StallWatch | None:
        if not self.settings.stall_seconds:
            return None
        topic = self.topics.tasks(self.settings.task_queue)
        return consumer_watch(self.consumer, topic, self.settings.stall_seconds)

    def _owned(self) -> list[int]:
        return [tp.partition for tp in self.consumer.assignment()]

    def _renew_consumer(self, stalls: list[Stall]) -> None:
        """A tasks partition the consumer stopped reading (see `streams.kafka.stall`): the
        consumer is closed (its taken offsets committed, as on any revoke) and made anew,
        and the group gives the partitions out again to fresh fetchers."""
        log.warning(
            "tasks of %s not read: %s; closing the consumer and joining the group again",
            self.settings.task_queue,
            "; ".join(str(s) for s in stalls),
        )
        self.tally.consumer_renewals += 1
        self.consumer.close()
        self.consumer = self._task_consumer()

    def _on_revoke(self, consumer: object, partitions: list[TopicPartition]) -> None:
        # hand the partitions over with what this runner took marked as taken
        self._collect_done()
        self._commit_done()

    def _start(self, msg: Message, pool: Any) -> None:
        topic, partition, offset = kafka.where(msg)
        self._taken[partition] = offset + 1
        self._taken_count += 1
        if self._taken_count == self.settings.stall_tasks_after:
            log.warning("fault hook: tasks partition %d no longer fetched", partition)
            self.consumer.pause([TopicPartition(topic, partition)])
        headers = cast("Headers | None", msg.headers())  # a list, as producers send them
        if headers and any(key == CLAIM_HEADER for key, _ in headers):
            self.tally.claimed_skipped += 1  # the runner that claimed it runs it
            return
        self._running += 1
        try:
            task = self.wire.task.decode(msg.value())
        except PayloadDecodeError as e:
            self._dead_letter(msg, partition, offset, str(e.at(topic, partition, offset)))
            return
        try:
            self._begin(task, headers, offset, pool, self._to_spawn)
        except PayloadDecodeError as e:  # its arguments (a key not held here, say): it fails
            log.warning("activity task could not start: %s: %s", task.activity_type, e)
            self._report(task, error=e)
            self._ended(partition, offset, Outcome(task.activity_type, 0.0, type(e).__name__))

    def _begin(
        self,
        task: ActivityTask,
        headers: Headers | None,
        offset: int,
        pool: Any,
        to_spawn: list[tuple[Any, concurrent.futures.Future[Any]]],
    ) -> None:
        """Starts an attempt: read from the tasks topic at `offset`, or eager (-1)."""
        eager = offset < 0
        partition = task.partition
        info = attempt_info(task, self.settings.task_queue, self.registry.converter)
        running = RunningActivity(task, info, self._send_heartbeat)
        tracing = self.tracing
        span = None if tracing is None else tracing.start_activity(task, headers)
        lateness = max(0, int(time.time() * 1000) - task.scheduled_at) / 1000.0
        try:
            definition = self.registry.activity(task.activity_type)
            # a stored argument the payload store lacks or cannot give now fails this
            # attempt (retried per the policy), never the runner
            args = self.registry.converter.from_payloads(task.args, definition.arg_types)
        except (UnknownActivityError, PayloadStoreError) as e:
            self._report(task, error=e, eager=eager)
            if tracing is not None:
                tracing.end_activity(span, e)
            late = lateness if eager else None
            outcome = Outcome(task.activity_type, 0.0, type(e).__name__, late)
            self._ended(partition, offset, outcome)
            return
        if task.report_start:
            self._send(
                task,
                StartActivity(task.run_id, task.activity_id, task.attempt),
                f"{task.idempotency_key}/{task.attempt}/started",
                eager,
            )
        self._active[running.key] = running
        if not eager:  # an eager one is counted on the runner's thread when it ends
            self.tally.schedule_to_start.observe(task.activity_type, lateness)
        began = time.perf_counter()

        def finish(result: Any = None, error: BaseException | None = None) -> None:
            seconds = time.perf_counter() - began
            self._active.pop(running.key, None)
            failed = self._report(task, result, error, eager)
            if tracing is not None:
                tracing.end_activity(span, error)
            outcome = Outcome(task.activity_type, seconds, failed, lateness if eager else None)
            self._ended(partition, offset, outcome)

        activated = contextlib.nullcontext if tracing is None else tracing.activated
        if definition.is_async:

            async def call() -> None:
                _runtime.ACTIVITY_CONTEXT.set(running)
                try:
                    with activated(span):
                        result = await definition.fn(*args)
                except BaseException as e:
                    finish(error=e)
                else:
                    finish(result)

            handle: concurrent.futures.Future[Any] = concurrent.futures.Future()
            running.is_async = True
            running.future = handle
            to_spawn.append((call(), handle))
        else:
            ctx = contextvars.copy_context()
            ctx.run(_runtime.ACTIVITY_CONTEXT.set, running)

            def call_sync() -> None:
                try:
                    with activated(span):
                        result = definition.fn(*args)
                except BaseException as e:
                    finish(error=e)
                else:
                    finish(result)

            pool.submit(ctx.run, call_sync)

    def _report(
        self,
        task: ActivityTask,
        result: Any = None,
        error: BaseException | None = None,
        eager: bool = False,
    ) -> str | None:
        """Sends the attempt's result or failure; the failure's type, or None."""
        what = f"the result of activity {task.activity_type!r}"
        body = attempt_outcome(
            task, result, error, self.registry.converter, self.registry.max_payload_bytes, what
        )
        if isinstance(body, FailActivity):
            log.info(
                "activity failed workflow_id=%s activity=%s attempt=%d: %s: %s",
                task.workflow_id,
                task.activity_type,
                task.attempt,
                body.failure.type,
                body.failure.message,
            )
        self._send(task, body, f"{task.idempotency_key}/{task.attempt}", eager)
        return None if isinstance(body, CompleteActivity) else body.failure.type

    def _ended(self, partition: int, offset: int, outcome: Outcome) -> None:
        """An attempt ended (on the thread that ran it). An eager one leaves the count at
        once: the processor reads `commands` in short waits while eager attempts run."""
        if offset < 0:
            with self._eager_lock:
                self._eager_running -= 1
        self._done.put((partition, offset, outcome))

    def _collect_done(self) -> None:
        tally = self.tally
        while True:
            try:
                _, offset, outcome = self._done.get_nowait()
            except queue.Empty:
                break
            if offset >= 0:  # an eager attempt's count went down as it ended
                self._running -= 1
            self.completed += 1
            if outcome is not None:
                tally.attempt_done(outcome)
        if self._taken and time.monotonic() - self._last_commit > 0.2:
            self._commit_done()

    def _commit_done(self) -> None:
        self._last_commit = time.monotonic()
        if not self._taken:
            return
        topic = self.topics.tasks(self.settings.task_queue)
        commits = [TopicPartition(topic, p, o) for p, o in self._taken.items()]
        self._taken.clear()
        try:
            self.consumer.commit(offsets=commits, asynchronous=True)
        except KafkaException as e:
            log.warning("task offset commit failed (tasks may be taken again): %s", e)


def _spawn(loop: asyncio.AbstractEventLoop, calls: list[tuple[Any, Any]]) -> None:
    """On the loop's thread: a task per activity; cancelling its handle cancels the task."""
    for coro, handle in calls:
        task = loop.create_task(coro)
        # the handle only ever completes by being canceled (RunningActivity.cancel)
        handle.add_done_callback(lambda _, task=task: loop.call_soon_threadsafe(task.cancel))
