"""The activity runner: runs activity tasks from `tasks.<queue>` and reports results.

Async activities run on an event loop of the runner; plain functions in a thread pool. At
most `max_concurrent` run at once: the consumer pauses instead of buffering more, and it
keeps polling while activities run, so a long activity never trips `max.poll.interval.ms`.
Offsets are committed only up to the oldest unfinished task of each partition, so a crashed
runner's unfinished tasks run again (at least once); the processor drops duplicate results.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from processors.registry import Registry, UnknownWorkflowError
from streams import activity as activity_api
from streams import kafka
from streams.activity import ActivityInfo
from streams.commands import Command, CompleteActivity, FailActivity
from streams.config import KafkaConfig
from streams.errors import PayloadDecodeError, PayloadTooLargeError
from streams.failures import ApplicationError, to_failure
from streams.payload import check_size
from streams.records import ActivityTask
from streams.topics import Topics
from streams.wire import wire

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RunnerConfig:
    task_queue: str
    max_concurrent: int = 64
    threads: int = 16


@dataclass(slots=True)
class _Partition:
    """Offsets in flight for one partition, to commit only what is finished."""

    in_flight: set[int] = field(default_factory=set)
    highest_done: int = -1
    dirty: bool = False


class ActivityRunner:
    def __init__(self, config: KafkaConfig, registry: Registry, settings: RunnerConfig) -> None:
        self.config = config
        self.registry = registry
        self.settings = settings
        self.topics = Topics(config.topic_prefix)
        self.wire = wire()
        self._done: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self._partitions: dict[int, _Partition] = {}
        self._running = 0
        self._last_commit = 0.0
        self.completed = 0

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
        self.producer = kafka.producer(self.config, **{"linger.ms": 0})
        self.consumer = kafka.consumer(
            self.config,
            f"{self.config.topic_prefix}activities.{self.settings.task_queue}",
            # a killed runner's tasks move to another runner after this long
            settings={"session.timeout.ms": 10000},
        )
        self.consumer.subscribe(
            [self.topics.tasks(self.settings.task_queue)],
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        paused = False
        try:
            while not stop.is_set():
                self._collect_done()
                free = self.settings.max_concurrent - self._running
                if free <= 0:
                    if not paused:
                        self.consumer.pause(self.consumer.assignment())
                        paused = True
                    self.consumer.poll(0.005)  # keeps the group session alive
                    continue
                if paused:
                    self.consumer.resume(self.consumer.assignment())
                    paused = False
                for msg in kafka.consume_batch(self.consumer, free, 0.02):
                    if msg.error() is not None:
                        log.warning("task consumer error: %s", msg.error().str())
                        continue
                    self._start(msg.partition(), msg.offset(), msg.value(), loop, pool)
                self.producer.poll(0)
            deadline = time.monotonic() + 30
            while self._running and time.monotonic() < deadline:
                self._collect_done()
                time.sleep(0.01)
            self._collect_done()
            self._commit_done()
        finally:
            self.producer.flush(10)
            self.consumer.close()
            pool.shutdown(wait=False, cancel_futures=True)
            loop.call_soon_threadsafe(loop.stop)

    def _on_revoke(self, consumer: object, partitions: list[TopicPartition]) -> None:
        self._collect_done()
        self._commit_done()
        for tp in partitions:
            self._partitions.pop(tp.partition, None)

    def _start(
        self, partition: int, offset: int, value: bytes | None, loop: Any, pool: Any
    ) -> None:
        state = self._partitions.setdefault(partition, _Partition())
        state.in_flight.add(offset)
        self._running += 1
        try:
            task = self.wire.task.decode(value)
        except PayloadDecodeError as e:
            log.error(
                "unreadable task %s",
                e.at(self.topics.tasks(self.settings.task_queue), partition, offset),
            )
            self._done.put((partition, offset))
            return
        info = ActivityInfo(
            task.workflow_id,
            task.run_id,
            task.workflow_type,
            task.activity_id,
            task.activity_type,
            task.attempt,
            self.settings.task_queue,
            task.idempotency_key,
        )
        try:
            definition = self.registry.activity(task.activity_type)
        except UnknownWorkflowError as e:
            self._report(task, error=e)
            self._done.put((partition, offset))
            return
        args = self.registry.converter.from_payloads(task.args, definition.arg_types)

        def finish(result: Any = None, error: BaseException | None = None) -> None:
            self._report(task, result, error)
            self._done.put((partition, offset))

        if definition.is_async:

            async def call() -> None:
                activity_api._current.set(info)
                try:
                    result = await definition.fn(*args)
                except BaseException as e:
                    finish(error=e)
                else:
                    finish(result)

            asyncio.run_coroutine_threadsafe(call(), loop)
        else:
            ctx = contextvars.copy_context()
            ctx.run(activity_api._current.set, info)

            def call_sync() -> None:
                try:
                    result = definition.fn(*args)
                except BaseException as e:
                    finish(error=e)
                else:
                    finish(result)

            pool.submit(ctx.run, call_sync)

    def _report(
        self, task: ActivityTask, result: Any = None, error: BaseException | None = None
    ) -> None:
        converter = self.registry.converter
        body: CompleteActivity | FailActivity
        payload = converter.to_payload(result) if error is None else None
        if payload is not None:
            try:
                check_size(
                    [payload],
                    self.registry.max_payload_bytes,
                    f"the result of activity {task.activity_type!r}",
                )
            except PayloadTooLargeError as e:
                error = ApplicationError(str(e), type="PayloadTooLargeError", non_retryable=True)
                payload = None
        if payload is not None:
            body = CompleteActivity(task.run_id, task.activity_id, task.attempt, payload)
        else:
            assert error is not None
            log.info(
                "activity failed workflow_id=%s activity=%s attempt=%d: %r",
                task.workflow_id,
                task.activity_type,
                task.attempt,
                error,
            )
            body = FailActivity(
                task.run_id, task.activity_id, task.attempt, to_failure(error, converter)
            )
        command = Command(
            command_id=f"{task.idempotency_key}/{task.attempt}",
            workflow_id=task.workflow_id,
            sent_at=int(time.time() * 1000),
            body=body,
        )
        self.producer.produce(
            self.topics.commands,
            self.wire.command.encode(command),
            task.workflow_id.encode(),
            partition=task.partition,
        )
        self.producer.poll(0)

    def _collect_done(self) -> None:
        while True:
            try:
                partition, offset = self._done.get_nowait()
            except queue.Empty:
                break
            self._running -= 1
            self.completed += 1
            state = self._partitions.get(partition)
            if state is None:
                continue
            state.in_flight.discard(offset)
            state.highest_done = max(state.highest_done, offset)
            state.dirty = True
        if time.monotonic() - self._last_commit > 0.2:
            self._commit_done()

    def _commit_done(self) -> None:
        self._last_commit = time.monotonic()
        topic = self.topics.tasks(self.settings.task_queue)
        commits = []
        for partition, state in self._partitions.items():
            if state.dirty:
                state.dirty = False
                commit_to = min(state.in_flight) if state.in_flight else state.highest_done + 1
                commits.append(TopicPartition(topic, partition, commit_to))
        if not commits:
            return
        # results must be durable before their tasks count as done
        self.producer.flush(10)
        try:
            self.consumer.commit(offsets=commits, asynchronous=True)
        except KafkaException as e:
            log.warning("task offset commit failed (tasks may run again): %s", e)
