"""A run's timers: the user timers its code starts (`workflow.sleep`), and the run's own
deadlines (run and execution timeouts).

A user timer is a record on the compacted `timers` topic, keyed by run and timer ID: set
when started, tombstoned when it fires, is canceled, or its run closes. A run's deadlines
follow from its `WorkflowStarted` event, so they are derived: kept only in the processor's
timer heap and recomputed after a restore. (Activity retries and timeouts belong to
`processors.run.activities`.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_never

from streams.wire.events import TimerCanceled, TimerFired, TimerStarted, WorkflowStarted
from streams.wire.records import SourceLocation, Timer, TimerKind

if TYPE_CHECKING:
    from processors.run.effects import Effects
    from processors.run.log import RunLog

TimerEvent = TimerStarted | TimerFired | TimerCanceled

# the timers kept as records on the compacted `timers` topic (the others are derived from
# the run, rebuilt with it)
PERSISTED_TIMERS = (TimerKind.USER_TIMER, TimerKind.ACTIVITY_RETRY)


class Timers:
    """The user timers a run waits on: timer ID -> when it fires (ms)."""

    __slots__ = ("_log", "pending")

    def __init__(self, log: RunLog) -> None:
        self._log = log
        self.pending: dict[int, int] = {}

    def fold(self, a: TimerEvent) -> None:
        match a:
            case TimerStarted():
                self.pending[a.timer_id] = a.fire_at
            case TimerFired() | TimerCanceled():
                self.pending.pop(a.timer_id, None)
            case _:
                assert_never(a)

    def start(
        self,
        timer_id: int,
        delay_ms: int,
        now: int,
        fx: Effects,
        source: SourceLocation | None = None,
    ) -> None:
        """Records a timer the code started (where, if known), and sets its record."""
        fire_at = now + delay_ms
        self._log.append(TimerStarted(timer_id, fire_at, source), now, fx)
        log = self._log
        timer = Timer(log.workflow_id, log.run_id, TimerKind.USER_TIMER, timer_id, 0, fire_at)
        fx.timer_ops.append((timer.key, timer))

    def cancel(self, timer_id: int, now: int, fx: Effects) -> None:
        """Records a timer the code stopped waiting on, and tombstones its record."""
        self._log.append(TimerCanceled(timer_id), now, fx)
        fx.timer_ops.append((self._key(timer_id), None))

    def fire(self, timer: Timer, now: int, fx: Effects) -> bool:
        """Fires a due user timer if the code still waits on it; False if it is stale."""
        if timer.seq not in self.pending:
            return False
        fx.timer_ops.append((timer.key, None))
        self._log.resolve(TimerFired(timer.seq), now, fx)
        return True

    def clear(self, fx: Effects) -> None:
        """Tombstones the records of every pending timer (the run closed)."""
        for timer_id in list(self.pending):
            fx.timer_ops.append((self._key(timer_id), None))

    def _key(self, timer_id: int) -> str:
        log = self._log
        return Timer(log.workflow_id, log.run_id, TimerKind.USER_TIMER, timer_id, 0, 0).key


def run_deadlines(workflow_id: str, run_id: str, started: WorkflowStarted, at: int) -> list[Timer]:
    """The run's run and execution timeouts, for a run started at `at` (ms)."""
    timers = []
    for kind, ms in (
        (TimerKind.WORKFLOW_RUN_TIMEOUT, started.run_timeout_ms),
        (TimerKind.WORKFLOW_EXECUTION_TIMEOUT, started.execution_timeout_ms),
    ):
        if ms is not None:
            timers.append(Timer(workflow_id, run_id, kind, 0, 0, at + ms))
    return timers
