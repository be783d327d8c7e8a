"""The deadlock detector: workflow code that runs too long without yielding is interrupted.

Workflow code must only wait with `await`; a `while True:` with no await, or heavy CPU
work, would hold the processor's thread and stall every run of its partitions. Temporal
runs each activation on another thread under a 2 s deadline; a thread hop per activation
costs more than the rest of a small activation here, so the activation stays on the
processor's thread and a single watchdog thread looks at it from the side: it only acts
when an activation overruns, by raising `Interrupted` into that thread
(`PyThreadState_SetAsyncExc`). The activation then ends, its run is blocked with a
DeadlockError naming where its code was, and the processor goes on with the other runs.

The cost on the hot path is registering and unregistering the activation (a dict entry and
an uncontended lock). The interrupt lands at the next bytecode: code stuck inside one C
call (a blocking syscall) is interrupted only when the call returns; the watchdog logs that
it is still waiting. `time.sleep()` itself never gets that far: the determinism guard
refuses it.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from processors.workflow_code.determinism import is_user_frame

log = logging.getLogger(__name__)

# how often the watchdog looks at the running activations (seconds): a deadlock is found
# at most this late after its deadline
POLL_INTERVAL = 0.05


class Interrupted(BaseException):
    """Raised into a thread whose workflow activation overran its deadline. A BaseException
    so that the user's `except Exception:` in a busy loop cannot swallow it."""


@dataclass(slots=True)
class Watch:
    """One activation being watched: on which thread, until when, and what the watchdog
    did to it (`location`: where the code was when it was interrupted)."""

    thread_id: int
    timeout: float
    deadline: float
    interrupts: int = 0
    location: str = ""
    warned_stuck: bool = False
    paused_at: float | None = None  # engine work running (see `Watchdog.paused`) since then


class Watchdog:
    """Watches activations on any number of threads; one daemon thread, started on first
    use. `interrupts` counts the activations it interrupted (for metrics and tests)."""

    def __init__(self, poll_interval: float = POLL_INTERVAL) -> None:
        self._poll = poll_interval
        self._lock = threading.Lock()
        self._active: dict[int, Watch] = {}
        self._thread: threading.Thread | None = None
        self.interrupts = 0

    def begin(self, timeout: float) -> Watch | None:
        """Starts watching the calling thread's activation; None when the detector is off
        (`timeout` 0) or the thread is already watched (an activation inside one)."""
        if timeout <= 0:
            return None
        thread_id = threading.get_ident()
        if thread_id in self._active:
            return None
        watch = Watch(thread_id, timeout, time.monotonic() + timeout)
        self._active[thread_id] = watch  # one dict store: atomic under the GIL
        if self._thread is None:
            self._start()
        return watch

    def end(self, watch: Watch) -> bool:
        """Stops watching; True if the activation was interrupted. Once this returns, no
        interrupt is pending for the thread (one raised in between is taken here)."""
        while True:
            try:
                with self._lock:
                    self._active.pop(watch.thread_id, None)
                if watch.interrupts:  # no more can come: let one still pending land here
                    _land()
                return watch.interrupts > 0
            except Interrupted:
                continue  # it landed in here: the entry is gone or goes on the next try

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Engine work inside an activation (converting payloads: a codec, the payload
        store's I/O on a 50 MB payload) does not count against the code's deadline: the
        calling thread's watch stops while it runs and its deadline moves by as long."""
        watch = self._active.get(threading.get_ident())
        if watch is None or watch.paused_at is not None:
            yield
            return
        with self._lock:
            watch.paused_at = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                watch.deadline += time.monotonic() - watch.paused_at
                watch.paused_at = None

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch_forever, name="everflow-deadlock-watchdog", daemon=True
                )
                self._thread.start()

    def _watch_forever(self) -> None:
        while True:
            time.sleep(self._poll)
            now = time.monotonic()
            for watch in list(self._active.values()):
                if watch.paused_at is None and now >= watch.deadline:
                    self._interrupt(watch, now)

    def _interrupt(self, watch: Watch, now: float) -> None:
        with self._lock:
            if self._active.get(watch.thread_id) is not watch or watch.paused_at is not None:
                return  # it ended meanwhile, or engine work runs
            if not watch.interrupts:
                watch.location = _code_location(watch.thread_id)
                self.interrupts += 1
                log.error(
                    "workflow code did not yield within %g s at %s; interrupting it",
                    watch.timeout,
                    watch.location,
                )
            elif not watch.warned_stuck:
                watch.warned_stuck = True
                log.error(
                    "workflow code at %s is still running %g s after it was interrupted: "
                    "it caught the interrupt (except BaseException), or it is inside one C "
                    "call (a blocking syscall?), which the interrupt cannot stop; it is "
                    "interrupted again at each timeout, and the processor's partitions "
                    "wait until it ends",
                    watch.location,
                    watch.timeout,
                )
            watch.interrupts += 1
            # again after another timeout: the code may have caught the first one
            watch.deadline = now + watch.timeout
            _raise_in(watch.thread_id, Interrupted)


def _raise_in(thread_id: int, exc: type[BaseException]) -> None:
    """Raises `exc` in the thread when it next checks for pending work (a call, a loop's
    jump back). Never used to clear one (a NULL exception): on 3.11 that leaves the
    interpreter's pending flag set with nothing to take, and a profiled thread then spins
    at its next call."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))


def _land() -> None:
    """A call: where an interrupt still pending for this thread is raised."""


def _code_location(thread_id: int) -> str:
    """`file:line` of the innermost user frame the thread is running, or '?'."""
    frame = sys._current_frames().get(thread_id)  # noqa: SLF001
    while frame is not None and not is_user_frame(frame):
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


WATCHDOG = Watchdog()
