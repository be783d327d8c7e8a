"""Activity attempts run in the test's own process: a plain function on a thread of a small
pool, an async one as a task on the test's event loop (so a test double can share asyncio
objects with the test). Each attempt reports back as a runner does, with the same commands
(`StartActivity`, `HeartbeatActivity`, `CompleteActivity`, `FailActivity`), which the
environment's engine handles like any other command; heartbeats are throttled as a runner
throttles them, and a heartbeat's answer delivers the workflow's request to stop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import uuid
from collections.abc import Callable
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
    ApplicationError,
    UnknownActivityError,
)
from streams.wire.commands import (
    Command,
    CommandBody,
    CompleteActivity,
    FailActivity,
    HeartbeatActivity,
    StartActivity,
)
from streams.wire.records import ActivityTask

log = logging.getLogger(__name__)

Key = tuple[str, str, int, int]  # workflow ID, run ID, activity ID, attempt


class InProcessActivities:
    """The attempts running now, and how their reports reach the engine.

    `submit` takes a command for the engine; it is called on the event loop's thread only
    (reports from pool threads are handed over with `call_soon_threadsafe`). `reply_to` is
    the engine's client ID, for the answers to heartbeats.
    """

    def __init__(
        self,
        registry: Registry,
        submit: Callable[[Command], None],
        clock: Callable[[], int],
        reply_to: str,
        threads: int = 8,
    ) -> None:
        self.registry = registry
        self._submit = submit
        self._clock = clock
        self._reply_to = reply_to
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, "everflow-test-activity")
        self._loop = asyncio.get_running_loop()
        self.running: dict[Key, RunningActivity] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, task: ActivityTask, task_queue: str, local: bool) -> None:
        """Starts one attempt (`task_queue` "" and no heartbeats for a local activity)."""
        info = attempt_info(task, task_queue, self.registry.converter)
        send = ignore_heartbeat if local else self._heartbeat
        running = RunningActivity(task, info, send)
        self.running[running.key] = running
        context = contextvars.copy_context()
        context.run(_runtime.ACTIVITY_CONTEXT.set, running)
        attempt = self._loop.create_task(self._attempt(running), context=context)
        self._tasks.add(attempt)
        attempt.add_done_callback(self._tasks.discard)

    def cancel(self, key: Key) -> None:
        """The workflow asked the attempt to stop: its next heartbeat raises, an async one
        is canceled where it awaits."""
        running = self.running.get(key)
        if running is not None:
            running.cancel()

    def flush_heartbeats(self) -> None:
        """Sends the heartbeat details the throttle held back, once it allows."""
        for running in list(self.running.values()):
            running.flush_due()

    async def close(self) -> None:
        """Stops every attempt: async ones are canceled and awaited, threads are left to
        end on their own (what they report goes nowhere)."""
        attempts = list(self._tasks)
        for attempt in attempts:
            attempt.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _attempt(self, running: RunningActivity) -> None:
        task = running.task
        result: Any = None
        error: BaseException | None = None
        try:
            definition = self.registry.activity(task.activity_type)
            args = self.registry.converter.from_payloads(task.args, definition.arg_types)
            if task.report_start:
                self._report(task, StartActivity(task.run_id, task.activity_id, task.attempt))
            if definition.is_async:
                call = asyncio.ensure_future(definition.fn(*args))
                running.is_async = True
                running.future = _canceler(call)
                result = await call
            else:
                context = contextvars.copy_context()
                result = await self._loop.run_in_executor(
                    self._pool, context.run, definition.fn, *args
                )
        except UnknownActivityError as e:  # no other worker will ever take it: fail now
            error = ApplicationError(
                f"activity {task.activity_type!r} is not in the test environment: pass it, "
                f"or a double with @activity.defn(name={task.activity_type!r}), in "
                "activities=",
                type="UnknownActivityError",
                non_retryable=True,
            )
            error.__cause__ = e
        except BaseException as e:  # reported as the attempt's failure, as a runner does
            error = e
        finally:
            self.running.pop(running.key, None)
        self._report(task, self._outcome(task, result, error))
        if isinstance(error, KeyboardInterrupt | SystemExit):
            raise error

    def _outcome(
        self, task: ActivityTask, result: Any, error: BaseException | None
    ) -> CompleteActivity | FailActivity:
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
        return body

    def _heartbeat(self, running: RunningActivity, details: tuple[Any, ...]) -> None:
        # called on the attempt's thread: a pool thread for a plain function
        task = running.task
        payloads = self.registry.converter.to_payloads(list(details))
        body = HeartbeatActivity(
            task.run_id, task.activity_id, task.attempt, payloads, self._reply_to
        )
        self._loop.call_soon_threadsafe(self._report, task, body)

    def _report(self, task: ActivityTask, body: CommandBody) -> None:
        command = Command(uuid.uuid4().hex, task.workflow_id, self._clock(), body)
        self._submit(command)


def _canceler(call: asyncio.Future[Any]) -> concurrent.futures.Future[Any]:
    """A handle whose cancel() cancels `call` (what `RunningActivity.cancel` expects)."""
    handle: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def canceled(done: concurrent.futures.Future[Any]) -> None:
        if done.cancelled():
            call.cancel()

    handle.add_done_callback(canceled)
    return handle
