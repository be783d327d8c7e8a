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
        timer = self._timers.start_timer(timedelta(seconds=max(delay, 0.0)))
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
        return task

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
