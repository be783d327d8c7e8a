"""An activity's life inside a run: dispatch, attempts, retries, timeouts, heartbeats,
cancellation and an operator's pause/unpause/retry. Part of the pure core: it appends
events to its run's history (`RunLog`) and collects outbound records.

Retry backoffs are timer records on the compacted `timers` topic. Timeouts are derived
timers: their deadlines follow from the run's events (dispatch, start, last heartbeat), so
they live only in the processor's timer heap and a restore recomputes them from the restored
runs (`Activities.deadlines()`) — durable without two extra records per activity on the hot
path. A timer that no longer matches the state (a later attempt, a newer heartbeat, a closed
activity) is stale and ignored when it fires.

Local activities (`ActivityScheduled.local`) share this life and its events; what differs is
where an attempt goes and how a short retry waits. An attempt is not a task on a topic but
an entry of `Effects.local_tasks`, which the processor hands to its in-process executor; the
outcome comes back into the processor's current batch (when quick) or a later one and is
recorded there (`finish`, with the same attempt fence as a runner's report), together with
what the code does next. A failed attempt whose backoff is at most the
activity's `local_retry_threshold_ms` is retried at once in the history (ActivityAttemptFailed
then ActivityRetried, the new attempt's clock starting at the end of the backoff, see
`ActivityState.retry_at`) and its task waits out the backoff in the executor; a longer
backoff is a durable retry timer, like a regular activity's. An attempt whose outcome is not
recorded when the worker dies is open in the restored state and runs again
(`local_attempts`): at least once, under the same idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, assert_never

from streams.payload import Payload
from streams.tracing import workflow_carrier
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
)
from streams.wire.records import ActivityTask, Failure, Timer, TimerKind, millis

if TYPE_CHECKING:
    from processors.run.effects import Effects
    from processors.run.log import RunLog

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
    event_id: int = 0  # of its ActivityScheduled: names its StartActivity span
    retry_at: int = 0  # when a local activity's short backoff ends (0: none pending)

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


ActivityEvent = (
    ActivityScheduled
    | ActivityAttemptFailed
    | ActivityPaused
    | ActivityUnpaused
    | ActivityReset
    | ActivityRetried
    | ActivityStarted
    | ActivityHeartbeatRecorded
    | ActivityCancelRequested
    | ActivityCompleted
    | ActivityFailed
    | ActivityCanceled
)


class Activities:
    """A run's open activities: their state (folded from the activity events), and what
    moves them on — results and heartbeats from runners, the code's schedule and cancel,
    retry and timeout timers, an operator's pause, unpause and retry."""

    __slots__ = ("_log", "_partition", "open")

    def __init__(self, log: RunLog, partition: int) -> None:
        self._log = log
        self._partition = partition  # activity tasks carry it: their reports come back here
        self.open: dict[int, ActivityState] = {}

    def fold(self, a: ActivityEvent, time: int, event_id: int = 0) -> None:
        """Folds an activity event (number `event_id` of the history) into the state."""
        match a:  # the commonest first: a case is an isinstance check
            case ActivityScheduled():
                state = ActivityState(a, time, dispatched_at=time, event_id=event_id)
                self.open[a.activity_id] = state
            case ActivityCompleted() | ActivityFailed() | ActivityCanceled():
                self.open.pop(a.activity_id, None)
            case ActivityStarted():
                self.open[a.activity_id].started_at = time
            case ActivityHeartbeatRecorded():
                state = self.open[a.activity_id]
                state.last_heartbeat, state.heartbeat_details = time, a.details
            case ActivityAttemptFailed():
                state = self.open[a.activity_id]
                state.backoff = True
                threshold = state.scheduled.local_retry_threshold_ms
                short = threshold is not None and 0 <= a.retry_at - time <= threshold
                state.retry_at = a.retry_at if short else 0
            case ActivityRetried():
                state = self.open[a.activity_id]
                # a local activity's short retry is recorded at once: its attempt (and its
                # start-to-close clock) begins when the backoff ends
                began = max(time, state.retry_at)
                state.attempt, state.backoff, state.dispatched_at = a.attempt, False, began
                state.started_at = state.last_heartbeat = None
            case ActivityCancelRequested():
                if a.activity_id in self.open:
                    self.open[a.activity_id].cancel_requested = True
            case ActivityPaused():
                self.open[a.activity_id].paused = True
            case ActivityUnpaused():
                self.open[a.activity_id].paused = False
            case ActivityReset():
                state = self.open[a.activity_id]
                state.budget_base = state.attempt
            case _:
                assert_never(a)

    # ---- reports from runners -------------------------------------------------------------
    def _current(self, activity_id: int, attempt: int) -> ActivityState | None:
        state = self.open.get(activity_id)
        if state is None or state.backoff or state.attempt != attempt or self._log.closed:
            return None
        return state

    def start(self, activity_id: int, attempt: int, now: int, fx: Effects) -> bool:
        """A runner picked the attempt up: the start-to-close and heartbeat clocks begin."""
        state = self._current(activity_id, attempt)
        if state is None or state.started_at is not None:
            return False
        self._log.append(ActivityStarted(activity_id, attempt), now, fx)
        self._clear(state, [TimerKind.ACTIVITY_SCHEDULE_TO_START], fx)
        self._arm(state, [TimerKind.ACTIVITY_START_TO_CLOSE, TimerKind.ACTIVITY_HEARTBEAT], fx)
        return True

    def heartbeat(
        self, activity_id: int, attempt: int, details: list[Payload], now: int, fx: Effects
    ) -> bool:
        """Records a heartbeat; True if the activity should stop: the workflow asked it to,
        or nobody waits for this attempt any more (timed out, run closed)."""
        state = self._current(activity_id, attempt)
        if state is None:
            return True
        self._log.append(ActivityHeartbeatRecorded(activity_id, attempt, details), now, fx)
        self._arm(state, [TimerKind.ACTIVITY_HEARTBEAT], fx)
        return state.cancel_requested

    def finish(
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
            self._close(state, ActivityCompleted(activity_id, attempt, result), now, fx)
        elif failure.is_canceled and state.cancel_requested:
            self._close(state, ActivityCanceled(activity_id, attempt), now, fx)
        else:
            self._fail_attempt(state, failure, now, fx)
        return True

    def _fail_attempt(self, state: ActivityState, failure: Failure, now: int, fx: Effects) -> None:
        s, attempt, append = state.scheduled, state.attempt, self._log.append
        counted = attempt - state.budget_base  # an operator's retry starts a fresh budget
        if state.paused and not failure.non_retryable and not state.cancel_requested:
            # held for an operator (unpause or retry), however many attempts are left
            append(ActivityAttemptFailed(s.activity_id, attempt, failure, -1), now, fx)
            return
        retry_at = now + millis(s.retry_policy.backoff(counted))
        deadline = state.deadline(TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE)
        in_time = deadline is None or retry_at < deadline
        retryable = s.retry_policy.allows_retry(counted, failure.type, failure.non_retryable)
        if in_time and retryable and not state.cancel_requested:
            append(ActivityAttemptFailed(s.activity_id, attempt, failure, retry_at), now, fx)
            threshold = s.local_retry_threshold_ms
            if threshold is not None and retry_at - now <= threshold:
                # a short local retry: the next attempt's task waits in the executor
                append(ActivityRetried(s.activity_id, attempt + 1), now, fx)
                self._dispatch(state, now, fx, first=False)
                return
            retry = self._timer(TimerKind.ACTIVITY_RETRY, state, attempt + 1, retry_at)
            fx.timer_ops.append((retry.key, retry))
            return
        self._close(state, ActivityFailed(s.activity_id, attempt, failure), now, fx)

    def _close(self, state: ActivityState, outcome: EventAttributes, now: int, fx: Effects) -> None:
        self._clear(state, [TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE, TimerKind.ACTIVITY_RETRY], fx)
        self._log.resolve(outcome, now, fx)

    # ---- decisions of the workflow code ---------------------------------------------------
    def schedule(self, scheduled: ActivityScheduled, now: int, fx: Effects) -> None:
        """Records a new activity and sends its first attempt to the runners."""
        self._log.append(scheduled, now, fx)
        self._dispatch(self.open[scheduled.activity_id], now, fx, first=True)

    def _dispatch(self, state: ActivityState, now: int, fx: Effects, first: bool) -> None:
        """Sends the current attempt to the runners (a local one to the hosting worker's
        executor) and arms its timeouts."""
        s, log = state.scheduled, self._log
        if s.local:
            fx.local_tasks.append(self._task(state, state.dispatched_at))
        else:
            if s.trace:  # the attempt's span is a child of the StartActivity span
                key = (log.run_id, s.activity_id, state.attempt)
                fx.task_traces[key] = workflow_carrier(s.trace, log.run_id, state.event_id)
            fx.tasks.append((s.task_queue, self._task(state, now)))
        kinds = [*ATTEMPT_TIMERS, TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE] if first else ATTEMPT_TIMERS
        self._arm(state, kinds, fx)

    def _task(self, state: ActivityState, scheduled_at: int) -> ActivityTask:
        """The current attempt as a task; `scheduled_at` is when it may start."""
        s, log = state.scheduled, self._log
        return ActivityTask(
            workflow_id=log.workflow_id,
            run_id=log.run_id,
            workflow_type=log.workflow_type,
            activity_id=s.activity_id,
            activity_type=s.activity_type,
            attempt=state.attempt,
            args=s.args,
            partition=self._partition,
            scheduled_at=scheduled_at,
            start_to_close_timeout_ms=s.start_to_close_timeout_ms,
            # stable across attempts and crashes: the same key for every attempt
            idempotency_key=f"{log.workflow_id}/{log.run_id}/{s.activity_id}",
            heartbeat_timeout_ms=s.heartbeat_timeout_ms,
            report_start=s.schedule_to_start_timeout_ms is not None,
            heartbeat_details=state.heartbeat_details,
        )

    def local_attempts(self) -> list[ActivityTask]:
        """The attempts of local activities that wait for an outcome (for a restore: they
        run again, as their outcome was never recorded)."""
        if self._log.closed:
            return []
        return [
            self._task(state, state.dispatched_at)
            for state in self.open.values()
            if state.scheduled.local and not state.backoff and not state.paused
        ]

    def request_cancel(self, activity_id: int, now: int, fx: Effects) -> None:
        """The code stopped waiting on an activity: ask it to stop (on its next heartbeat)."""
        self._log.append(ActivityCancelRequested(activity_id), now, fx)
        state = self.open.get(activity_id)
        if state is not None and state.backoff:  # between attempts: nothing runs, stop now
            self._close(state, ActivityCanceled(activity_id, state.attempt), now, fx)

    # ---- an operator's repair -------------------------------------------------------------
    def pause(self, state: ActivityState, reason: str, now: int, fx: Effects) -> None:
        """No new attempt starts; a failed one waits for an operator."""
        if not state.paused:
            self._log.append(ActivityPaused(state.scheduled.activity_id, reason), now, fx)
            if state.backoff:  # its pending retry waits for unpause
                self._clear(state, [TimerKind.ACTIVITY_RETRY], fx)

    def unpause(self, state: ActivityState, reason: str, now: int, fx: Effects) -> None:
        """A waiting activity gets its next attempt now."""
        if state.paused:
            self._log.append(ActivityUnpaused(state.scheduled.activity_id, reason), now, fx)
            if state.backoff:
                self._retry_now(state, now, fx)

    def retry(self, state: ActivityState, reason: str, now: int, fx: Effects) -> None:
        """Unpaused, a fresh attempt budget, and the next attempt now if none runs."""
        activity_id = state.scheduled.activity_id
        if state.paused:
            self._log.append(ActivityUnpaused(activity_id, reason), now, fx)
        self._log.append(ActivityReset(activity_id, reason), now, fx)
        if state.backoff:
            self._retry_now(state, now, fx)

    def _retry_now(self, state: ActivityState, now: int, fx: Effects) -> None:
        self._clear(state, [TimerKind.ACTIVITY_RETRY], fx)
        self._log.append(ActivityRetried(state.scheduled.activity_id, state.attempt + 1), now, fx)
        self._dispatch(state, now, fx, first=False)

    # ---- timers ---------------------------------------------------------------------------
    def fire_timer(self, timer: Timer, now: int, fx: Effects) -> bool:
        """A retry backoff or a timeout came due; False if it is stale."""
        state = self.open.get(timer.seq)
        if state is None or self._log.closed:
            return False
        if timer.kind is TimerKind.ACTIVITY_RETRY:
            if not state.backoff or state.paused or state.attempt + 1 != timer.attempt:
                return False
            fx.timer_ops.append((timer.key, None))
            self._log.append(ActivityRetried(timer.seq, timer.attempt), now, fx)
            self._dispatch(state, now, fx, first=False)
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
            self._close(state, ActivityFailed(timer.seq, state.attempt, failure), now, fx)
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

    def clear_timers(self, fx: Effects) -> None:
        """Tombstones the pending retry timers (the run closed)."""
        for state in self.open.values():
            if state.backoff:
                self._clear(state, [TimerKind.ACTIVITY_RETRY], fx)

    def deadlines(self) -> list[Timer]:
        """The derived timeout timers of every open activity (for a restore)."""
        timers = []
        for state in self.open.values():
            if state.backoff:
                continue
            for kind in (*ATTEMPT_TIMERS, TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE):
                deadline = state.deadline(kind)
                if deadline is not None:
                    timers.append(self._timer(kind, state, state.attempt, deadline))
        return timers

    def _timer(self, kind: TimerKind, state: ActivityState, attempt: int, fire_at: int) -> Timer:
        log = self._log
        return Timer(
            log.workflow_id, log.run_id, kind, state.scheduled.activity_id, attempt, fire_at
        )
