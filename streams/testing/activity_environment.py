"""`ActivityEnvironment`: one activity function called as an attempt runs it, with no workflow
and no worker, to unit-test the activity itself (what it does with `activity.info()`, its
heartbeats, how it stops when asked)."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Callable
from typing import Any

from streams import _runtime
from streams.activity import ActivityInfo

DEFAULT_INFO = ActivityInfo(
    workflow_id="test-workflow",
    run_id="test-run",
    workflow_type="TestWorkflow",
    activity_id=1,
    activity_type="test_activity",
    attempt=1,
    task_queue="test",
    idempotency_key="test-workflow/test-run/1",
)


class ActivityEnvironment:
    """Calls activity functions in an activity's context.

    `info` is what `activity.info()` answers (a made-up attempt 1 by default: pass your
    own to test a retry, say `heartbeat_details` of the attempt before). Every
    `activity.heartbeat(...)` is kept in `heartbeats`; `cancel()` does what a workflow's
    request to stop does: the next heartbeat raises asyncio.CancelledError,
    `activity.is_canceled()` turns true, and an async activity is canceled where it awaits.
    """

    def __init__(self, info: ActivityInfo | None = None) -> None:
        self.info = info or DEFAULT_INFO
        self.heartbeats: list[tuple[Any, ...]] = []
        self._canceled = threading.Event()
        self._lock = threading.Lock()
        self._running: asyncio.Task[Any] | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Calls `fn(*args)` — a plain function on a thread, an async one on this loop —
        and returns its result (or raises its error)."""
        context = contextvars.copy_context()
        context.run(_runtime.ACTIVITY_CONTEXT.set, self)
        if inspect.iscoroutinefunction(fn):
            self._running = asyncio.get_running_loop().create_task(fn(*args), context=context)
            try:
                return await self._running
            finally:
                self._running = None
        return await asyncio.to_thread(context.run, fn, *args)

    def cancel(self) -> None:
        """Asks the activity to stop, as its workflow would."""
        self._canceled.set()
        if self._running is not None:
            self._running.cancel()

    # ---- the activity context (`streams.activity` calls these) ---------------------------
    def heartbeat(self, details: tuple[Any, ...]) -> None:
        if self._canceled.is_set():
            raise asyncio.CancelledError("the workflow asked this activity to stop")
        with self._lock:
            self.heartbeats.append(details)

    def is_canceled(self) -> bool:
        return self._canceled.is_set()
