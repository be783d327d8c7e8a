"""A deterministic asyncio event loop for workflow code.

Workflow code is plain asyncio (tasks, gather, futures). This loop runs ready callbacks in
the order they were scheduled and never touches the clock or I/O: `time()` is the run's
time, and `call_later`/`call_at` (used by `asyncio.sleep` and `asyncio.wait_for`) become
durable timers. The engine drives it with `run_until_idle()` after each history event.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import weakref
from collections.abc import Callable, Coroutine, Generator
from datetime import timedelta
from typing import Any, Protocol

_TOO_FAR = 1e13  # seconds (~317,000 years): inside timedelta's range


class TimerSource(Protocol):
    def start_timer(self, delay: timedelta) -> asyncio.Future[None]: ...

    def loop_time(self) -> float: ...


class _DurableTimerHandle(asyncio.TimerHandle):
    """A TimerHandle whose expiry is a durable timer's future."""

    def __init__(
        self,
        when: float,
        callback: Callable[..., Any],
        args: tuple[Any, ...],
        loop: WorkflowEventLoop,
        timer: asyncio.Future[None],
        context: contextvars.Context | None,
    ) -> None:
        super().__init__(when, callback, args, loop, context)
        self._timer = timer
        timer.add_done_callback(self._fire)

    def _fire(self, fut: asyncio.Future[None]) -> None:
        if not self._cancelled and not fut.cancelled():
            self._run()

    def cancel(self) -> None:
        super().cancel()
        self._timer.cancel()


class WorkflowEventLoop(asyncio.AbstractEventLoop):
    """Runs one workflow run's code; owned and stepped by its WorkflowInstance."""

    def __init__(self, runtime: Any, timers: TimerSource) -> None:
        self._everflow_runtime = runtime
        self._timers = timers
        self._ready: collections.deque[asyncio.Handle] = collections.deque()
        self._exceptions: list[dict[str, Any]] = []
        # tasks created during a read-only call (a query), to be dropped after it
        self._read_only: list[asyncio.Task[Any]] | None = None
        self._ready_mark = 0
        # the run's tasks in the order they were created (a task goes when collected)
        self._tasks: weakref.WeakKeyDictionary[asyncio.Task[Any], None] = (
            weakref.WeakKeyDictionary()
        )

    # ---- what asyncio's futures and tasks call ------------------------------------------
    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., Any],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., Any],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        # a due time in the past fires at once (asyncio's rule); one too far ahead for a
        # timedelta is kept just too far, so that the timer source refuses it by name
        seconds = min(delay, _TOO_FAR) if delay > 0 else 0.0
        timer = self._timers.start_timer(timedelta(seconds=seconds))
        return _DurableTimerHandle(self.time() + delay, callback, args, self, timer, context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., Any],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_later(when - self.time(), callback, *args, context=context)

    def time(self) -> float:
        return self._timers.loop_time()

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=self, name=name, context=context)
        self._tasks[task] = None
        if self._read_only is not None:
            self._read_only.append(task)
        return task

    def begin_read_only(self) -> None:
        """Marks what is scheduled now: a query must leave the loop as it found it."""
        self._ready_mark = len(self._ready)
        self._read_only = []

    def end_read_only(self) -> bool:
        """Drops the callbacks and tasks scheduled since `begin_read_only()` (they would
        run at the next step, which a replay would not do); True if there were any."""
        tasks, self._read_only = self._read_only or [], None
        extra = len(self._ready) - self._ready_mark
        for _ in range(extra):
            self._ready.pop().cancel()
        for task in tasks:
            task._log_destroy_pending = False  # type: ignore[attr-defined]  # noqa: SLF001 - it never runs
            coro = task.get_coro()
            if isinstance(coro, Coroutine):
                coro.close()
            self._tasks.pop(task, None)
        return extra > 0 or bool(tasks)

    def pending_tasks(self) -> list[asyncio.Task[Any]]:
        """The run's tasks not done yet, oldest first (the main task leads)."""
        return [task for task in list(self._tasks) if not task.done()]

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass  # the durable timer behind the handle is canceled by the handle itself

    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return True

    def is_closed(self) -> bool:
        return False

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        self._exceptions.append(context)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self._exceptions.append(context)

    # ---- stepping --------------------------------------------------------------------------
    def run_until_idle(self) -> None:
        """Runs ready callbacks until none is left (the code waits on history)."""
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        try:
            ready = self._ready
            while ready:
                handle = ready.popleft()
                # a Handle's own cancelled flag and run, as asyncio's loop steps them
                if not handle._cancelled:  # noqa: SLF001
                    handle._run()  # noqa: SLF001
        finally:
            asyncio.events._set_running_loop(previous)
