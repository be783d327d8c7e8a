"""An activity's life inside a run: dispatch, attempts, retries, timeouts, heartbeats and
cancellation. Part of the pure core: it appends events and collects outbound records.

Retry backoffs are timer records on the compacted `timers` topic. Timeouts are derived
timers: their deadlines follow from the run's events (dispatch, start, last heartbeat), so
they live only in the processor's timer heap and a restore recomputes them from the restored
runs (`deadlines()`) — durable without two extra records per activity on the hot path. A timer
that no longer matches the state (a later attempt, a newer heartbeat, a closed activity) is
stale and ignored when it fires.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from streams.payload import Payload
from streams.wire.events import (
    ActivityAttemptFailed,
    ActivityCanceled,
    ActivityCancelRequested,
    ActivityCompleted,
    ActivityFailed,
    ActivityHeartbeatRecorded,
    ActivityPaused,
    ActivityReset,
    ActivityRetried,
    ActivityScheduled,
    ActivityStarted,
    ActivityUnpaused,
    EventAttributes,
    HistoryEvent,
)
from streams.wire.records import ActivityTask, Failure, Timer, TimerKind

if TYPE_CHECKING:
    from processors.run.effects import Effects

ATTEMPT_TIMERS = (
    TimerKind.ACTIVITY_START_TO_CLOSE,
    TimerKind.ACTIVITY_SCHEDULE_TO_START,
    TimerKind.ACTIVITY_HEARTBEAT,
)
TIMEOUT_NAMES = {
    TimerKind.ACTIVITY_START_TO_CLOSE: "start_to_close",
    TimerKind.ACTIVITY_SCHEDULE_TO_START: "schedule_to_start",
    TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE: "schedule_to_close",
    TimerKind.ACTIVITY_HEARTBEAT: "heartbeat",
}


@dataclass(slots=True)
class ActivityState:
    """A scheduled activity that has not closed yet."""

    scheduled: ActivityScheduled
    scheduled_at: int
    attempt: int = 1
    backoff: bool = False
    dispatched_at: int = 0
    started_at: int | None = None
    last_heartbeat: int | None = None
    heartbeat_details: list[Payload] = field(default_factory=list)
    cancel_requested: bool = False
    paused: bool = False  # an operator holds its attempts
    budget_base: int = 0  # attempts before an operator's retry (not counted by the policy)

    def deadline(self, kind: TimerKind) -> int | None:
        """When the current attempt times out by `kind` (None: no such timeout)."""
        s = self.scheduled
        if kind is TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE:
            ms = s.schedule_to_close_timeout_ms
            return None if ms is None else self.scheduled_at + ms
        if kind is TimerKind.ACTIVITY_SCHEDULE_TO_START:
            ms = s.schedule_to_start_timeout_ms
            return None if ms is None or self.started_at is not None else self.dispatched_at + ms
        waits_for_start = s.schedule_to_start_timeout_ms is not None
        if waits_for_start and self.started_at is None:
            return None  # the attempt clocks start when a runner reports it picked it up
        began = self.started_at if self.started_at is not None else self.dispatched_at
        if kind is TimerKind.ACTIVITY_START_TO_CLOSE:
            ms = s.start_to_close_timeout_ms
            return None if ms is None else began + ms
        if kind is TimerKind.ACTIVITY_HEARTBEAT:
            ms = s.heartbeat_timeout_ms
            last = max(began, self.last_heartbeat or 0)
            return None if ms is None else last + ms
        raise ValueError(f"{kind} is not an activity timeout")


class ActivityLifecycle:
    """The activity part of `processors.run.state.Run` (a mixin: it uses the run's state)."""

    workflow_id: str
    run_id: str
    partition: int
    workflow_type: str
    activities: dict[int, ActivityState]
    _append: Callable[[EventAttributes, int, Effects], HistoryEvent]
    _resolve: Callable[[EventAttributes, int, Effects], None]

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def fold_activity(self, a: EventAttributes, time: int) -> bool:
        """Folds an activity event into the state; False if `a` is not one."""
        match a:
            case ActivityScheduled():
                self.activities[a.activity_id] = ActivityState(a, time, dispatched_at=time)
            case ActivityAttemptFailed():
                self.activities[a.activity_id].backoff = True
            case ActivityPaused():
                self.activities[a.activity_id].paused = True
            case ActivityUnpaused():
                self.activities[a.activity_id].paused = False
            case ActivityReset():
                state = self.activities[a.activity_id]
                state.budget_base = state.attempt
            case ActivityRetried():
                state = self.activities[a.activity_id]
                state.attempt, state.backoff, state.dispatched_at = a.attempt, False, time
                state.started_at = state.last_heartbeat = None
            case ActivityStarted():
                self.activities[a.activity_id].started_at = time
            case ActivityHeartbeatRecorded():
                state = self.activities[a.activity_id]
                state.last_heartbeat, state.heartbeat_details = time, a.details
            case ActivityCancelRequested():
                if a.activity_id in self.activities:
                    self.activities[a.activity_id].cancel_requested = True
            case ActivityCompleted() | ActivityFailed() | ActivityCanceled():
                self.activities.pop(a.activity_id, None)
            case _:
                return False
        return True

    # ---- commands from runners ------------------------------------------------------------
    def _current(self, activity_id: int, attempt: int) -> ActivityState | None:
        state = self.activities.get(activity_id)
        if state is None or state.backoff or state.attempt != attempt or self.closed:
            return None
        return state

    def start_activity(self, activity_id: int, attempt: int, now: int, fx: Effects) -> bool:
        """A runner picked the attempt up: the start-to-close and heartbeat clocks begin."""
        state = self._current(activity_id, attempt)
        if state is None or state.started_at is not None:
            return False
        self._append(ActivityStarted(activity_id, attempt), now, fx)
        self._clear(state, [TimerKind.ACTIVITY_SCHEDULE_TO_START], fx)
        self._arm(state, [TimerKind.ACTIVITY_START_TO_CLOSE, TimerKind.ACTIVITY_HEARTBEAT], fx)
        return True

    def heartbeat_activity(
        self, activity_id: int, attempt: int, details: list[Payload], now: int, fx: Effects
    ) -> bool:
        """Records a heartbeat; True if the activity should stop: the workflow asked it to,
        or nobody waits for this attempt any more (timed out, run closed)."""
        state = self._current(activity_id, attempt)
        if state is None:
            return True
        self._append(ActivityHeartbeatRecorded(activity_id, attempt, details), now, fx)
        self._arm(state, [TimerKind.ACTIVITY_HEARTBEAT], fx)
        return state.cancel_requested

    def finish_activity(
        self,
        activity_id: int,
        attempt: int,
        result: Payload | None,
        failure: Failure | None,
        now: int,
        fx: Effects,
    ) -> bool:
        """An attempt's outcome: recorded, retried per policy, or dropped if stale."""
        state = self._current(activity_id, attempt)
        if state is None:
            return False
        self._clear(state, ATTEMPT_TIMERS, fx)
        if failure is None:
            assert result is not None
            self._close_activity(state, ActivityCompleted(activity_id, attempt, result), now, fx)
        elif failure.is_canceled and state.cancel_requested:
            self._close_activity(state, ActivityCanceled(activity_id, attempt), now, fx)
        else:
            self._fail_attempt(state, failure, now, fx)
        return True

    def _fail_attempt(self, state: ActivityState, failure: Failure, now: int, fx: Effects) -> None:
        s, attempt = state.scheduled, state.attempt
        counted = attempt - state.budget_base  # an operator's retry starts a fresh budget
        if state.paused and not failure.non_retryable and not state.cancel_requested:
            # held for an operator (unpause or retry), however many attempts are left
            self._append(ActivityAttemptFailed(s.activity_id, attempt, failure, -1), now, fx)
            return
        retry_at = now + _ms(s.retry_policy.backoff(counted))
        deadline = state.deadline(TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE)
        in_time = deadline is None or retry_at < deadline
        retryable = s.retry_policy.allows_retry(counted, failure.type, failure.non_retryable)
        if in_time and retryable and not state.cancel_requested:
            self._append(ActivityAttemptFailed(s.activity_id, attempt, failure, retry_at), now, fx)
            retry = self._timer(TimerKind.ACTIVITY_RETRY, state, attempt + 1, retry_at)
            fx.timer_ops.append((retry.key, retry))
            return
        self._close_activity(state, ActivityFailed(s.activity_id, attempt, failure), now, fx)

    def _close_activity(
        self, state: ActivityState, outcome: EventAttributes, now: int, fx: Effects
    ) -> None:
        self._clear(state, [TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE, TimerKind.ACTIVITY_RETRY], fx)
        self._resolve(outcome, now, fx)

    # ---- commands from the workflow code --------------------------------------------------
    def dispatch(self, state: ActivityState, now: int, fx: Effects, first: bool) -> None:
        """Sends the current attempt to the runners and arms its timeouts."""
        s = state.scheduled
        fx.tasks.append(
            (
                s.task_queue,
                ActivityTask(
                    workflow_id=self.workflow_id,
                    run_id=self.run_id,
                    workflow_type=self.workflow_type,
                    activity_id=s.activity_id,
                    activity_type=s.activity_type,
                    attempt=state.attempt,
                    args=s.args,
                    partition=self.partition,
                    scheduled_at=now,
                    start_to_close_timeout_ms=s.start_to_close_timeout_ms,
                    idempotency_key=f"{self.workflow_id}/{self.run_id}/{s.activity_id}",
                    heartbeat_timeout_ms=s.heartbeat_timeout_ms,
                    report_start=s.schedule_to_start_timeout_ms is not None,
                    heartbeat_details=state.heartbeat_details,
                ),
            )
        )
        kinds = [*ATTEMPT_TIMERS, TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE] if first else ATTEMPT_TIMERS
        self._arm(state, kinds, fx)

    def request_cancel_activity(self, activity_id: int, now: int, fx: Effects) -> None:
        """The code stopped waiting on an activity: ask it to stop (on its next heartbeat)."""
        self._append(ActivityCancelRequested(activity_id), now, fx)
        state = self.activities.get(activity_id)
        if state is not None and state.backoff:  # between attempts: nothing runs, stop now
            self._close_activity(state, ActivityCanceled(activity_id, state.attempt), now, fx)

    # ---- timers ---------------------------------------------------------------------------
    def fire_activity_timer(self, timer: Timer, now: int, fx: Effects) -> bool:
        state = self.activities.get(timer.seq)
        if state is None or self.closed:
            return False
        if timer.kind is TimerKind.ACTIVITY_RETRY:
            if not state.backoff or state.paused or state.attempt + 1 != timer.attempt:
                return False
            fx.timer_ops.append((timer.key, None))
            self._append(ActivityRetried(timer.seq, timer.attempt), now, fx)
            self.dispatch(state, now, fx, first=False)
            return True
        deadline = state.deadline(timer.kind)
        stale = state.backoff or (
            timer.kind is not TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE
            and state.attempt != timer.attempt
        )
        if stale or deadline is None or now < deadline:
            return False
        name = TIMEOUT_NAMES[timer.kind]
        ms = deadline - (state.scheduled_at if name == "schedule_to_close" else 0)
        failure = Failure(
            message=(
                f"activity {state.scheduled.activity_type!r} (id {timer.seq}) attempt "
                f"{state.attempt} timed out: {name}"
                + (f" {ms} ms" if name == "schedule_to_close" else "")
            ),
            type="ActivityTimeoutError",
            kind="timeout",
            timeout_type=name,
        )
        self._clear(state, ATTEMPT_TIMERS, fx)
        if timer.kind is TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE:
            self._close_activity(state, ActivityFailed(timer.seq, state.attempt, failure), now, fx)
        else:
            self._fail_attempt(state, failure, now, fx)
        return True

    def _arm(
        self, state: ActivityState, kinds: list[TimerKind] | tuple[TimerKind, ...], fx: Effects
    ) -> None:
        for kind in kinds:
            deadline = state.deadline(kind)
            if deadline is not None:
                fx.derived_timers.append(self._timer(kind, state, state.attempt, deadline))

    def _clear(
        self, state: ActivityState, kinds: list[TimerKind] | tuple[TimerKind, ...], fx: Effects
    ) -> None:
        # derived timers have no record: once the state moves on they are stale by themselves
        for kind in kinds:
            if kind is TimerKind.ACTIVITY_RETRY:
                fx.timer_ops.append((self._timer(kind, state, 0, 0).key, None))

    def clear_all_activity_timers(self, fx: Effects) -> None:
        for state in self.activities.values():
            if state.backoff:
                self._clear(state, [TimerKind.ACTIVITY_RETRY], fx)

    def activity_deadlines(self) -> list[Timer]:
        """The derived timeout timers of every open activity (for a restore)."""
        timers = []
        for state in self.activities.values():
            if state.backoff:
                continue
            for kind in (*ATTEMPT_TIMERS, TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE):
                deadline = state.deadline(kind)
                if deadline is not None:
                    timers.append(self._timer(kind, state, state.attempt, deadline))
        return timers

    def _timer(self, kind: TimerKind, state: ActivityState, attempt: int, fire_at: int) -> Timer:
        return Timer(
            self.workflow_id, self.run_id, kind, state.scheduled.activity_id, attempt, fire_at
        )


def _ms(d: timedelta) -> int:
    return int(d / timedelta(milliseconds=1))
