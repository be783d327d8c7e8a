"""The in-process executor of local activities (see `streams.workflow.execute_local_activity`).

The processor submits an attempt in the batch that decides it (its ActivityScheduled or
ActivityRetried) and waits a few milliseconds for its outcome before the batch commits, so
quick steps are recorded in the same transaction (see `WorkflowProcessor._run_local`). The
attempt runs on a thread of a small pool — never on the processor's thread, so no other
run waits for it; an async activity runs on that thread's own event loop, kept for the
thread's life — after
waiting out its retry backoff (`ActivityTask.scheduled_at` is when it may start). Its outcome,
the same CompleteActivity / FailActivity body a runner reports, goes to an in-process queue
the processor drains into its current or next batch: it is recorded there, fenced by the
attempt number like a runner's report, together with what the code does next.

Nothing here is durable: a worker that dies loses the queue and the running attempts, and
the run's new owner runs them again from the restored state (at least once, the idempotency
key unchanged). An outcome for a partition this worker no longer owns, or for an attempt no
longer current (a timeout failed it, a restore ran it again), is dropped by the processor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import queue
import threading
import time
from typing import Any

from processors.activity_runner.attempt import (
    RunningActivity,
    attempt_info,
    attempt_outcome,
    ignore_heartbeat,
)
from processors.workflow_code.registry import Registry
from streams import _runtime
from streams.errors import (
    UnknownActivityError,
)
from streams.wire.commands import CompleteActivity, FailActivity
from streams.wire.records import ActivityTask

log = logging.getLogger(__name__)

Outcome = tuple[int, str, CompleteActivity | FailActivity]  # partition, workflow ID, body


class LocalActivities:
    """Runs local-activity attempts on a thread pool; their outcomes queue for the processor."""

    def __init__(self, registry: Registry, threads: int = 8) -> None:
        self.registry = registry
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, "everflow-local-activity")
        self._outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = threading.local()  # each pool thread's event loop
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._closed = False
        self._running = 0
        self.started = 0  # attempts submitted, for the stats

    @property
    def running(self) -> int:
        """Attempts submitted whose outcome the processor has not taken yet."""
        return self._running

    def submit(self, partition: int, task: ActivityTask) -> None:
        with self._lock:
            self._running += 1
        self.started += 1
        self._pool.submit(contextvars.Context().run, self._attempt, partition, task)

    def outcomes(self) -> list[Outcome]:
        """The outcomes that arrived since the last call (never blocks)."""
        out: list[Outcome] = []
        while True:
            try:
                out.append(self._outcomes.get_nowait())
            except queue.Empty:
                break
        if out:
            with self._lock:
                self._running -= len(out)
        return out

    def wait(self, timeout: float) -> list[Outcome]:
        """The outcomes that arrived, waiting up to `timeout` seconds for the first one."""
        try:
            first = self._outcomes.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return []
        with self._lock:
            self._running -= 1
        return [first, *self.outcomes()]

    def close(self) -> None:
        """Stops taking attempts; running ones finish on their own (their outcome is lost,
        the partitions' next owner runs them again)."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            loops, self._loops = self._loops, []
        for loop in loops:
            if not loop.is_running():  # a running one is closed by its thread when done
                loop.close()

    def _attempt(self, partition: int, task: ActivityTask) -> None:
        delay = task.scheduled_at / 1000.0 - time.time()
        if delay > 0:  # a short retry's backoff waits here
            time.sleep(delay)
        result: Any = None
        error: BaseException | None = None
        try:
            result = self._call(task)
        except BaseException as e:  # reported as the attempt's failure
            error = e
        body = self._body(task, result, error)
        self._outcomes.put((partition, task.workflow_id, body))

    def _call(self, task: ActivityTask) -> Any:
        definition = self.registry.activity(task.activity_type)  # UnknownActivityError
        args = self.registry.converter.from_payloads(task.args, definition.arg_types)
        info = attempt_info(task, "", self.registry.converter)  # a local one has no queue
        # activity.info() works; heartbeats are accepted and go nowhere
        _runtime.ACTIVITY_CONTEXT.set(RunningActivity(task, info, ignore_heartbeat))
        if not definition.is_async:
            return definition.fn(*args)
        loop = self._loop()
        try:
            return loop.run_until_complete(definition.fn(*args))
        finally:
            if self._closed:  # the last attempt on this thread: nobody else closes its loop
                loop.close()

    def _loop(self) -> asyncio.AbstractEventLoop:
        # one loop per pool thread: making and closing a loop per attempt (asyncio.run)
        # costs more than a quick step itself
        loop: asyncio.AbstractEventLoop | None = getattr(self._threads, "loop", None)
        if loop is None or loop.is_closed():
            loop = self._threads.loop = asyncio.new_event_loop()
            with self._lock:
                self._loops.append(loop)
        return loop

    def _body(
        self, task: ActivityTask, result: Any, error: BaseException | None
    ) -> CompleteActivity | FailActivity:
        what = f"the result of local activity {task.activity_type!r}"
        body = attempt_outcome(
            task, result, error, self.registry.converter, self.registry.max_payload_bytes, what
        )
        if isinstance(body, FailActivity):
            if isinstance(error, UnknownActivityError):
                log.error("local activity not registered: %s", error)
            else:
                log.info(
                    "local activity failed workflow_id=%s activity=%s attempt=%d: %s: %s",
                    task.workflow_id,
                    task.activity_type,
                    task.attempt,
                    body.failure.type,
                    body.failure.message,
                )
        return body
