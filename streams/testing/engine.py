"""The engine of the time-skipping environment: the run core in memory, on a virtual clock.

Commands are handled by the run core's own handlers (`processors.run.commands`), over runs
kept in a dict instead of a partition's run cache; what they decide (`Effects`) is applied
at once instead of written in a transaction: events are encoded into each run's history,
activity tasks run in this process (`streams.testing.activities`), timers wait in a heap,
completions and replies resolve the client's futures, and commands to other workflows
(children) join the queue. Nothing is durable and there is one partition.

The clock is the wall clock plus an offset. While `skipping()` is held (a test awaits a
result) and nothing can happen before the next timer — no command queued, no activity
attempt running — the offset jumps to that timer, so a 30-day sleep fires at once.
`sleep_until()` jumps the same way, but not past its target. Timers fire at their virtual
time, and workflow code reads the time of the event that woke it, so `workflow.now()` is
virtual too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

from processors.run.commands import continue_runs, handle_command
from processors.run.effects import Effects
from processors.run.state import Run
from processors.run.timers import PERSISTED_TIMERS
from processors.workflow_code.registry import Registry
from streams.errors import RPCTimeoutError
from streams.testing.activities import InProcessActivities
from streams.wire import wire
from streams.wire.commands import Command, CommandBody
from streams.wire.events import HistoryEvent, WorkflowBlocked
from streams.wire.records import (
    ActivityCancelRequest,
    ActivityTask,
    Completion,
    Reply,
    ReplyBody,
    RunStatus,
    Timer,
    TimerKind,
)

log = logging.getLogger(__name__)

PARTITION = 0  # every run lives in the one partition of the environment
RUN_DEADLINES = (TimerKind.WORKFLOW_RUN_TIMEOUT, TimerKind.WORKFLOW_EXECUTION_TIMEOUT)
UPKEEP = 0.05  # seconds between heartbeat flushes while attempts run


def wall_ms() -> int:
    return int(time.time() * 1000)


class MemoryRuns:
    """The runs by workflow ID (the current run of each), and their encoded histories:
    the run core's `Runs`."""

    def __init__(self) -> None:
        self.current: dict[str, Run] = {}
        self._encoded: dict[tuple[str, str], list[bytes]] = {}
        self._bytes: dict[tuple[str, str], int] = {}

    def get(self, workflow_id: str) -> Run | None:
        return self.current.get(workflow_id)

    def __setitem__(self, workflow_id: str, run: Run) -> None:
        self.current[workflow_id] = run

    def history(self, run: Run) -> tuple[list[bytes], int]:
        return list(self._encoded.get((run.workflow_id, run.run_id), [])), -1

    def history_bytes(self, run: Run) -> int:
        return self._bytes.get((run.workflow_id, run.run_id), 0)

    def record(self, event: HistoryEvent) -> None:
        """Keeps an event as the history topic would, encoded."""
        raw = wire().event.encode(event)
        key = (event.workflow_id, event.run_id)
        self._encoded.setdefault(key, []).append(raw)
        self._bytes[key] = self._bytes.get(key, 0) + len(raw)


class Step:
    """What handling one command or timer decided: the run core's `Outbox`."""

    def __init__(self) -> None:
        self.fx = Effects()
        self.replies: list[Reply] = []

    def effects(self, run: Run) -> Effects:
        return self.fx

    def partition_effects(self, partition: int) -> Effects:
        return self.fx

    def reply(self, to: str | None, request_id: str, body: ReplyBody) -> None:
        if to:
            self.replies.append(Reply(to, request_id, body))


class Engine:
    """Runs workflows and activities of a `Registry` in this process (see the module doc).

    Made inside a running event loop; `start()` begins its driver task, `close()` ends it.
    `client_id` is the ID the client's requests carry as `reply_to`.
    """

    def __init__(self, registry: Registry, client_id: str, start_ms: int | None = None) -> None:
        self.registry = registry
        self.client_id = client_id
        self.runs = MemoryRuns()
        self._offset = 0 if start_ms is None else start_ms - wall_ms()
        self._commands: collections.deque[Command] = collections.deque()
        self._order = itertools.count()  # ties in the heaps keep the order they were set in
        self._timers: list[tuple[int, int, Timer]] = []
        self._records: dict[str, Timer] = {}  # timers with a record, by key
        self._delayed: list[tuple[int, int, ActivityTask]] = []  # local retries' backoffs
        self._replies: dict[str, asyncio.Future[ReplyBody]] = {}
        self._watchers: dict[str, list[asyncio.Future[Completion]]] = {}
        self._block_watchers: dict[str, list[asyncio.Future[tuple[str, WorkflowBlocked]]]] = {}
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._skipping = 0
        self._disabled = 0
        self._failed: BaseException | None = None
        self._wake = asyncio.Event()
        self.activities = InProcessActivities(registry, self.submit, self.now_ms, client_id)
        self._driver: asyncio.Task[None] | None = None

    # ---- the clock ------------------------------------------------------------------------
    def now_ms(self) -> int:
        """The virtual time, epoch milliseconds."""
        return wall_ms() + self._offset

    @contextlib.asynccontextmanager
    async def skipping(self) -> AsyncIterator[None]:
        """While held, idle time is skipped: the clock jumps to the next timer."""
        self._skipping += 1
        self._wake.set()
        try:
            yield
        finally:
            self._skipping -= 1

    @contextlib.contextmanager
    def skipping_disabled(self) -> Iterator[None]:
        """While held, nothing skips idle time, not even an awaited result (a `sleep_until`
        still moves the clock: it is asked for by hand)."""
        self._disabled += 1
        try:
            yield
        finally:
            self._disabled -= 1
            self._wake.set()

    async def sleep_until(self, target_ms: int) -> None:
        """Returns once the clock reached `target_ms`, skipping idle time up to it and
        firing every timer due on the way, at its own time."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (target_ms, next(self._order), fut))
        self._wake.set()
        await fut

    # ---- requests -------------------------------------------------------------------------
    def submit(self, command: Command) -> None:
        """Queues a command for the engine (on the event loop's thread)."""
        self._commands.append(command)
        self._wake.set()

    async def request(self, workflow_id: str, body: CommandBody, timeout: timedelta) -> ReplyBody:
        """Sends one command and waits for its reply; RPCTimeoutError after `timeout`."""
        self._raise_if_failed()
        command_id = uuid.uuid4().hex
        fut: asyncio.Future[ReplyBody] = asyncio.get_running_loop().create_future()
        self._replies[command_id] = fut
        self.submit(Command(command_id, workflow_id, self.now_ms(), body))
        try:
            return await asyncio.wait_for(fut, timeout.total_seconds())
        except TimeoutError:
            raise RPCTimeoutError(
                f"no answer about workflow {workflow_id!r} within {timeout} in the "
                "time-skipping environment"
            ) from None
        finally:
            self._replies.pop(command_id, None)

    def watch(self, workflow_id: str) -> asyncio.Future[Completion]:
        """A future resolved by the next close of a run of `workflow_id`."""
        self._raise_if_failed()
        fut: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(workflow_id, []).append(fut)
        return fut

    def unwatch(self, workflow_id: str, fut: asyncio.Future[Completion]) -> None:
        waiters = self._watchers.get(workflow_id, [])
        self._watchers[workflow_id] = [w for w in waiters if w is not fut]

    def watch_blocked(self, workflow_id: str) -> asyncio.Future[tuple[str, WorkflowBlocked]]:
        """A future resolved (run ID, why) once the current run of `workflow_id` is blocked
        (at once if it is); a blocked run waits for a fix, which no test will bring."""
        fut: asyncio.Future[tuple[str, WorkflowBlocked]] = (
            asyncio.get_running_loop().create_future()
        )
        run = self.runs.get(workflow_id)
        if run is not None and run.blocked is not None and not run.closed:
            last = next(
                e for e in reversed(run.events) if isinstance(e.attributes, WorkflowBlocked)
            )
            assert isinstance(last.attributes, WorkflowBlocked)
            fut.set_result((run.run_id, last.attributes))
        else:
            self._block_watchers.setdefault(workflow_id, []).append(fut)
        return fut

    # ---- life -----------------------------------------------------------------------------
    def start(self) -> None:
        self._driver = asyncio.get_running_loop().create_task(self._drive(), name="everflow-test")

    async def close(self) -> None:
        """Stops the driver and the running attempts; raises what broke the driver, if
        anything did (an error in the engine, never one of workflow or activity code)."""
        if self._driver is not None:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver
        await self.activities.close()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise self._failed

    async def _drive(self) -> None:
        try:
            while True:
                self._wake.clear()
                self._settle()
                if self._skip():
                    await asyncio.sleep(0)  # a run that never ends must not starve the test
                    continue
                # not asyncio.wait_for: on Python 3.11 it loses a cancel that arrives as the
                # event is set, and `close` would wait for this loop forever
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._wait()):
                        await self._wake.wait()
        except Exception as e:  # an engine error: every waiter hears it, loudly
            log.exception("the time-skipping environment's engine stopped")
            self._failed = e
            waiting: list[asyncio.Future[Any]] = [*self._replies.values()]
            waiting += [f for fs in self._watchers.values() for f in fs]
            waiting += [f for _, _, f in self._sleepers]
            waiting += [f for fs in self._block_watchers.values() for f in fs]
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(e)
                    # marked as seen: a future nobody awaits (a discarded watcher) must not
                    # log it again; one awaited still raises it
                    fut.exception()

    def _settle(self) -> None:
        """Handles every queued command, due timer and due attempt, until none is left."""
        while True:
            self.activities.flush_heartbeats()
            now = self.now_ms()
            if self._commands:
                self._handle(self._commands.popleft(), now)
            elif self._timers and self._timers[0][0] <= now:
                self._fire(heapq.heappop(self._timers)[2], now)
            elif self._delayed and self._delayed[0][0] <= now:
                self.activities.start(heapq.heappop(self._delayed)[2], "", local=True)
            else:
                break
        while self._sleepers and self._sleepers[0][0] <= self.now_ms():
            fut = heapq.heappop(self._sleepers)[2]
            if not fut.done():
                fut.set_result(None)

    def _skip(self) -> bool:
        """Moves the clock to the next thing due, if time may be skipped and nothing else
        can happen first; whether it moved."""
        if self._commands or self.activities.running:
            return False
        targets = [self._sleepers[0][0]] if self._sleepers else []
        if (self._skipping and not self._disabled) or self._sleepers:
            due = self._next_due()
            if due is not None:
                targets.append(due)
        if not targets:
            return False
        target, now = min(targets), self.now_ms()
        self._offset += max(0, target - now)  # none when due already: settle it
        return True

    def _next_due(self) -> int | None:
        """When the next timer that still means something fires (stale ones are dropped,
        so they cannot pull the clock ahead), or a local retry's backoff ends."""
        while self._timers and not self._pending(self._timers[0][2]):
            heapq.heappop(self._timers)
        times = [heap[0][0] for heap in (self._timers, self._delayed) if heap]
        return min(times, default=None)

    def _pending(self, timer: Timer) -> bool:
        run = self.runs.get(timer.workflow_id)
        if run is None or run.run_id != timer.run_id or run.closed:
            return False
        if timer.kind in PERSISTED_TIMERS:
            return self._records.get(timer.key) is timer
        if timer.kind in RUN_DEADLINES:
            return True
        state = run.activities.open.get(timer.seq)
        if state is None or state.deadline(timer.kind) != timer.fire_at:
            return False
        # a schedule-to-close deadline outlives the attempts and their backoffs
        s2c = timer.kind is TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE
        return s2c or (not state.backoff and state.attempt == timer.attempt)

    def _wait(self) -> float | None:
        """Seconds until something comes due by the clock alone (None: nothing will)."""
        due = [heap[0][0] for heap in (self._timers, self._delayed, self._sleepers) if heap]
        wait = None if not due else max(0.0, (min(due) - self.now_ms()) / 1000)
        if self.activities.running:
            wait = UPKEEP if wait is None else min(wait, UPKEEP)
        return wait

    # ---- the run core, and applying what it decided -------------------------------------
    def _handle(self, command: Command, now: int) -> None:
        step = Step()
        handle_command(command, self.runs, PARTITION, now, self.registry, step)
        self._apply(step, now)
        run = self.runs.get(command.workflow_id)
        if run is not None:
            self._after(run, now)

    def _fire(self, timer: Timer, now: int) -> None:
        run = self.runs.get(timer.workflow_id)
        step = Step()
        if run is not None and run.fire_timer(timer, now, step.effects(run)):
            self._apply(step, now)
            self._after(run, now)

    def _after(self, run: Run, now: int) -> None:
        """Starts a successor run, and holds the run to its history limits (as the
        processor does after each command)."""
        step = Step()
        if run.next_run is not None:
            continue_runs(run, self.runs, now, step)
            self._apply(step, now)
            run = self.runs.get(run.workflow_id) or run
            step = Step()
        if not run.closed:
            run.check_history_limits(self.runs.history_bytes(run), now, step.effects)
            self._apply(step, now)

    def _apply(self, step: Step, now: int) -> None:
        fx = step.fx
        for event in fx.events:
            self.runs.record(event)
            if isinstance(event.attributes, WorkflowBlocked):
                for fut in self._block_watchers.pop(event.workflow_id, []):
                    if not fut.done():
                        fut.set_result((event.run_id, event.attributes))
        for key, set_timer in fx.timer_ops:
            if set_timer is None:
                self._records.pop(key, None)
            else:
                self._records[key] = set_timer
                self._push(set_timer)
        for timer in fx.derived_timers:
            self._push(timer)
        for queue, task in fx.tasks:
            self.activities.start(task, queue, local=False)
        for task in fx.local_tasks:
            if task.scheduled_at > now:  # a short retry's backoff, waited in virtual time
                heapq.heappush(self._delayed, (task.scheduled_at, next(self._order), task))
            else:
                self.activities.start(task, "", local=True)
        self._commands.extend(fx.commands)
        for completion in fx.completions:
            self._announce(completion)
        for reply in [*fx.replies, *step.replies]:  # an update's outcome is in fx.replies
            self._answer(reply)

    def _push(self, timer: Timer) -> None:
        heapq.heappush(self._timers, (timer.fire_at, next(self._order), timer))

    def _announce(self, completion: Completion) -> None:
        if completion.status is RunStatus.CONTINUED_AS_NEW:
            return  # the workflow goes on in a new run: waiters wait for that one
        for fut in self._watchers.pop(completion.workflow_id, []):
            if not fut.done():
                fut.set_result(completion)

    def _answer(self, reply: Reply) -> None:
        if reply.client_id != self.client_id:
            return
        body = reply.body
        if isinstance(body, ActivityCancelRequest):  # a heartbeat's answer: stop
            self.activities.cancel((body.workflow_id, body.run_id, body.activity_id, body.attempt))
            return
        fut = self._replies.pop(reply.request_id, None)
        if fut is not None and not fut.done():
            fut.set_result(body)
