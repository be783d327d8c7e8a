"""One running activity attempt as the runner tracks it: heartbeats (throttled, the latest
details win) and cancellation requests coming back from the workflow."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from streams.activity import ActivityInfo
from streams.errors import ApplicationError, PayloadStoreError, PayloadTooLargeError
from streams.failures import to_failure
from streams.payload import DataConverter, check_size
from streams.wire.commands import CompleteActivity, FailActivity
from streams.wire.records import ActivityTask

MAX_THROTTLE = 30.0


def attempt_outcome(
    task: ActivityTask,
    result: Any,
    error: BaseException | None,
    converter: DataConverter,
    max_payload_bytes: int,
    what: str,
) -> CompleteActivity | FailActivity:
    """What an attempt that returned `result` (or raised `error`) reports, as every runner
    of activities says it: the result encoded; or the failure, when it raised, when its
    result is over `max_payload_bytes` (non-retryable: a retry makes the same result), or
    when the payload store could not keep it (retried per the policy). `what` names the
    result in the size error ("the result of activity 'x'")."""
    if error is None:
        try:
            payload = converter.to_payload(result)
            check_size([payload], max_payload_bytes, what)
            return CompleteActivity(task.run_id, task.activity_id, task.attempt, payload)
        except PayloadTooLargeError as e:
            error = ApplicationError(str(e), type="PayloadTooLargeError", non_retryable=True)
        except PayloadStoreError as e:
            error = e
    return FailActivity(task.run_id, task.activity_id, task.attempt, to_failure(error, converter))


def attempt_info(task: ActivityTask, task_queue: str, converter: DataConverter) -> ActivityInfo:
    """What `activity.info()` tells the attempt of `task` (`task_queue` "" for a local one)."""
    heartbeat = task.heartbeat_timeout_ms
    return ActivityInfo(
        task.workflow_id,
        task.run_id,
        task.workflow_type,
        task.activity_id,
        task.activity_type,
        task.attempt,
        task_queue,
        task.idempotency_key,
        None if heartbeat is None else timedelta(milliseconds=heartbeat),
        tuple(converter.from_payloads(task.heartbeat_details)),
    )


class RunningActivity:
    """The runner's side of `activity.heartbeat()` / `activity.is_canceled()`."""

    def __init__(
        self,
        task: ActivityTask,
        info: ActivityInfo,
        send: Callable[[RunningActivity, tuple[Any, ...]], None],
    ) -> None:
        self.task = task
        self.info = info
        self._send = send
        timeout = task.heartbeat_timeout_ms
        self.throttle = min(MAX_THROTTLE, 0.8 * timeout / 1000) if timeout else MAX_THROTTLE
        self._lock = threading.Lock()
        self._last_sent = 0.0
        self._pending: tuple[Any, ...] | None = None
        self._canceled = threading.Event()
        self.future: concurrent.futures.Future[Any] | None = None
        # an async attempt's future cancels its task; a thread-pool future cannot stop a
        # running function, so a sync attempt learns of cancellation at its next heartbeat
        self.is_async = False

    @property
    def key(self) -> tuple[str, str, int, int]:
        t = self.task
        return (t.workflow_id, t.run_id, t.activity_id, t.attempt)

    def heartbeat(self, details: tuple[Any, ...]) -> None:
        if self._canceled.is_set():
            raise asyncio.CancelledError("the workflow asked this activity to stop")
        now = time.monotonic()
        with self._lock:
            if now - self._last_sent < self.throttle:
                self._pending = details  # sent by flush_due() when the throttle allows
                return
            self._last_sent, self._pending = now, None
        self._send(self, details)

    def flush_due(self) -> None:
        """Sends held-back details once the throttle interval has passed."""
        with self._lock:
            if self._pending is None or time.monotonic() - self._last_sent < self.throttle:
                return
            details, self._pending, self._last_sent = self._pending, None, time.monotonic()
        self._send(self, details)

    def is_canceled(self) -> bool:
        return self._canceled.is_set()

    def cancel(self) -> None:
        """The workflow asked to stop: the next heartbeat raises; async code is canceled."""
        self._canceled.set()
        if self.future is not None and self.is_async:
            self.future.cancel()


def ignore_heartbeat(running: RunningActivity, details: tuple[Any, ...]) -> None:
    """The heartbeat of a local activity: none is sent (an attempt's liveness is its
    worker's)."""
