"""The pure core: one run's state machine. Command or timer in → history events and
outbound messages out; it never touches a socket.

A run's state is a fold of its history events (`apply`). Handling a command appends new
events (each applied at once) and collects what must leave the processor in the same
transaction: activity tasks, timer records, the completion, replies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import assert_never

from processors.instance import (
    CompleteRun,
    FailRun,
    RunCommand,
    ScheduleActivity,
    StartTimer,
    Step,
    WorkflowInstance,
)
from processors.registry import Registry, UnknownWorkflowError
from streams.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityRetried,
    ActivityScheduled,
    EventAttributes,
    HistoryEvent,
    TimerFired,
    TimerStarted,
    WorkflowBlocked,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowUnblocked,
)
from streams.payload import Payload
from streams.records import (
    ActivityTask,
    Completion,
    Failure,
    RunDescription,
    RunStatus,
    Timer,
    TimerKind,
)
from streams.retry import RetryPolicy

log = logging.getLogger(__name__)

DEFAULT_RETRY = RetryPolicy()
_RESOLVING = (WorkflowStarted, ActivityCompleted, ActivityFailed, TimerFired)
_COMMAND_EVENTS = (ActivityScheduled, TimerStarted, WorkflowCompleted, WorkflowFailed)


@dataclass(slots=True)
class Effects:
    """Everything one transaction must write for the runs it touched."""

    events: list[HistoryEvent] = field(default_factory=list)
    tasks: list[tuple[str, ActivityTask]] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    cleared_timers: list[str] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)


@dataclass(slots=True)
class ActivityState:
    scheduled: ActivityScheduled
    scheduled_at: int
    attempt: int = 1
    backoff: bool = False


class NonDeterminismError(Exception):
    """Replayed code issued other commands than the history records."""


class Run:
    """One run: its history, the state folded from it, and (when loaded) its live code."""

    def __init__(self, workflow_id: str, run_id: str, partition: int) -> None:
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.partition = partition
        self.events: list[HistoryEvent] = []
        self.encoded: list[bytes] = []
        self.workflow_type = ""
        self.task_queue = ""
        self.start_command_id = ""
        self.start_time = 0
        self.close_time: int | None = None
        self.status = RunStatus.RUNNING
        self.result: Payload | None = None
        self.failure: Failure | None = None
        self.blocked: Failure | None = None
        self.activities: dict[int, ActivityState] = {}
        self.timers: dict[int, int] = {}
        self.instance: WorkflowInstance | None = None

    @property
    def closed(self) -> bool:
        return self.status is not RunStatus.RUNNING

    # ---- the fold ---------------------------------------------------------------------------
    def apply(self, event: HistoryEvent) -> None:
        """Folds one event into the state (no side effects; used live and on restore)."""
        self.events.append(event)
        a = event.attributes
        match a:
            case WorkflowStarted():
                self.workflow_type, self.task_queue = a.workflow_type, a.task_queue
                self.start_command_id, self.start_time = a.start_command_id, event.time
            case ActivityScheduled():
                self.activities[a.activity_id] = ActivityState(a, event.time)
            case ActivityAttemptFailed():
                self.activities[a.activity_id].backoff = True
            case ActivityRetried():
                state = self.activities[a.activity_id]
                state.attempt, state.backoff = a.attempt, False
            case ActivityCompleted() | ActivityFailed():
                self.activities.pop(a.activity_id, None)
            case TimerStarted():
                self.timers[a.timer_id] = a.fire_at
            case TimerFired():
                self.timers.pop(a.timer_id, None)
            case WorkflowCompleted():
                self.status, self.result, self.close_time = (
                    RunStatus.COMPLETED,
                    a.result,
                    event.time,
                )
            case WorkflowFailed():
                self.status, self.failure, self.close_time = RunStatus.FAILED, a.failure, event.time
            case WorkflowBlocked():
                self.blocked = a.failure
            case WorkflowUnblocked():
                self.blocked = None
            case _:
                assert_never(a)

    def _append(self, attrs: EventAttributes, now: int, fx: Effects) -> HistoryEvent:
        event = HistoryEvent(self.workflow_id, self.run_id, len(self.events) + 1, now, attrs)
        self.apply(event)
        fx.events.append(event)
        return event

    # ---- commands -----------------------------------------------------------------------------
    def start(self, started: WorkflowStarted, now: int, registry: Registry, fx: Effects) -> None:
        event = self._append(started, now, fx)
        try:
            self._load_instance(registry, replay=False)
        except UnknownWorkflowError as e:
            self._block(
                "workflow_error", Failure(str(e), "UnknownWorkflowError", "workflow"), now, fx
            )
            return
        self._advance(event, registry, fx)

    def complete_activity(
        self,
        activity_id: int,
        attempt: int,
        result: Payload,
        now: int,
        registry: Registry,
        fx: Effects,
    ) -> bool:
        """Records an attempt's result; False if it is late, duplicate or unknown (dropped)."""
        state = self.activities.get(activity_id)
        if state is None or state.backoff or state.attempt != attempt or self.closed:
            return False
        self._ensure_instance(registry, now, fx)
        event = self._append(ActivityCompleted(activity_id, attempt, result), now, fx)
        self._advance(event, registry, fx)
        return True

    def fail_activity(
        self,
        activity_id: int,
        attempt: int,
        failure: Failure,
        now: int,
        registry: Registry,
        fx: Effects,
    ) -> bool:
        """Records a failed attempt: retried per policy, or the activity fails for good."""
        state = self.activities.get(activity_id)
        if state is None or state.backoff or state.attempt != attempt or self.closed:
            return False
        policy = state.scheduled.retry_policy
        deadline = state.scheduled.schedule_to_close_timeout_ms
        retry_at = now + int(policy.backoff(attempt) / timedelta(milliseconds=1))
        in_time = deadline is None or retry_at < state.scheduled_at + deadline
        if in_time and policy.allows_retry(attempt, failure.type, failure.non_retryable):
            self._append(ActivityAttemptFailed(activity_id, attempt, failure, retry_at), now, fx)
            fx.timers.append(
                Timer(
                    self.workflow_id,
                    self.run_id,
                    TimerKind.ACTIVITY_RETRY,
                    activity_id,
                    attempt + 1,
                    retry_at,
                )
            )
            return True
        self._ensure_instance(registry, now, fx)
        event = self._append(ActivityFailed(activity_id, attempt, failure), now, fx)
        self._advance(event, registry, fx)
        return True

    def fire_timer(self, timer: Timer, now: int, registry: Registry, fx: Effects) -> bool:
        """Fires a due timer if the run still waits on it; False if it is stale."""
        if self.closed or timer.run_id != self.run_id:
            return False
        if timer.kind is TimerKind.USER_TIMER:
            if timer.seq not in self.timers:
                return False
            self._ensure_instance(registry, now, fx)
            event = self._append(TimerFired(timer.seq), now, fx)
            fx.cleared_timers.append(timer.key)
            self._advance(event, registry, fx)
            return True
        state = self.activities.get(timer.seq)
        if state is None or not state.backoff or state.attempt + 1 != timer.attempt:
            return False
        self._append(ActivityRetried(timer.seq, timer.attempt), now, fx)
        fx.cleared_timers.append(timer.key)
        fx.tasks.append(self._task(state.scheduled, timer.attempt, now))
        return True

    # ---- running the code ---------------------------------------------------------------------
    def _advance(self, event: HistoryEvent, registry: Registry, fx: Effects) -> None:
        if self.instance is None:  # blocked: the event is recorded, the code waits for a fix
            return
        step = self.instance.activate(event)
        self._apply_step(step, event.time, fx)

    def _apply_step(self, step: Step, now: int, fx: Effects) -> None:
        for command in step.commands:
            self._record_command(command, now, fx)
        if step.blocked is not None and not self.closed:
            self._block("workflow_error", step.blocked, now, fx)

    def _record_command(self, command: RunCommand, now: int, fx: Effects) -> None:
        if self.closed:
            return
        match command:
            case ScheduleActivity():
                o = command.options
                scheduled = ActivityScheduled(
                    activity_id=command.activity_id,
                    activity_type=o.activity_type,
                    task_queue=o.task_queue or self.task_queue,
                    args=command.args,
                    start_to_close_timeout_ms=_ms(o.start_to_close_timeout),
                    schedule_to_close_timeout_ms=_ms(o.schedule_to_close_timeout),
                    retry_policy=o.retry_policy or DEFAULT_RETRY,
                )
                self._append(scheduled, now, fx)
                fx.tasks.append(self._task(scheduled, 1, now))
            case StartTimer():
                fire_at = now + int(command.delay / timedelta(milliseconds=1))
                self._append(TimerStarted(command.timer_id, fire_at), now, fx)
                fx.timers.append(
                    Timer(
                        self.workflow_id,
                        self.run_id,
                        TimerKind.USER_TIMER,
                        command.timer_id,
                        0,
                        fire_at,
                    )
                )
            case CompleteRun():
                self._append(WorkflowCompleted(command.result), now, fx)
                self._close(now, fx)
            case FailRun():
                self._append(WorkflowFailed(command.failure), now, fx)
                self._close(now, fx)
            case _:
                assert_never(command)

    def _close(self, now: int, fx: Effects) -> None:
        for timer_id in list(self.timers):
            fx.cleared_timers.append(
                Timer(self.workflow_id, self.run_id, TimerKind.USER_TIMER, timer_id, 0, 0).key
            )
        fx.completions.append(
            Completion(
                workflow_id=self.workflow_id,
                run_id=self.run_id,
                workflow_type=self.workflow_type,
                status=self.status,
                result=self.result,
                failure=self.failure,
                start_time=self.start_time,
                close_time=now,
                history_length=len(self.events),
            )
        )
        self.instance = None

    def _block(self, reason: str, failure: Failure, now: int, fx: Effects) -> None:
        log.warning(
            "run blocked workflow_id=%s run_id=%s reason=%s: %s",
            self.workflow_id,
            self.run_id,
            reason,
            failure.message,
        )
        self.instance = None
        self._append(WorkflowBlocked(reason, failure), now, fx)

    def _task(self, s: ActivityScheduled, attempt: int, now: int) -> tuple[str, ActivityTask]:
        return s.task_queue, ActivityTask(
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            workflow_type=self.workflow_type,
            activity_id=s.activity_id,
            activity_type=s.activity_type,
            attempt=attempt,
            args=s.args,
            partition=self.partition,
            scheduled_at=now,
            start_to_close_timeout_ms=s.start_to_close_timeout_ms,
            idempotency_key=f"{self.workflow_id}/{self.run_id}/{s.activity_id}",
        )

    # ---- replay -------------------------------------------------------------------------------
    def _ensure_instance(self, registry: Registry, now: int, fx: Effects) -> None:
        """Rebuilds the live code by replay if it is not in memory (after restore)."""
        if self.instance is not None or self.closed or self.blocked is not None:
            return
        try:
            pending = self._replay(registry)
        except NonDeterminismError as e:
            failure = Failure(str(e), "NonDeterminismError", kind="workflow")
            self._block("non_determinism", failure, now, fx)
            return
        except UnknownWorkflowError as e:
            self._block(
                "workflow_error", Failure(str(e), "UnknownWorkflowError", "workflow"), now, fx
            )
            return
        if pending.commands or pending.blocked is not None:
            # history ends with a step whose commands are not recorded: code changed
            self.instance = None
            first = pending.commands[0] if pending.commands else None
            detail = f"{_describe_command(first)} at {_location(first)}" if first else "an error"
            failure = Failure(
                f"workflow {self.workflow_id!r} replayed to the end of its history "
                f"(event {len(self.events)}) and then issued {detail} that history does not "
                "have; the workflow code changed — guard the change with workflow.patched()",
                "NonDeterminismError",
                kind="workflow",
            )
            self._block("non_determinism", failure, now, fx)

    def try_unblock(self, registry: Registry, now: int, fx: Effects) -> bool:
        """For a blocked run: replays with the code deployed now, and resumes if it fits."""
        if self.blocked is None or self.closed:
            return False
        try:
            pending = self._replay(registry)
        except (NonDeterminismError, UnknownWorkflowError):
            self.instance = None
            return False
        if pending.blocked is not None:
            self.instance = None
            return False
        self._append(WorkflowUnblocked("code replayed cleanly"), now, fx)
        self._apply_step(pending, now, fx)
        return True

    def _load_instance(self, registry: Registry, replay: bool) -> None:
        started = self.events[0]
        assert isinstance(started.attributes, WorkflowStarted)
        definition = registry.workflow(started.attributes.workflow_type)
        self.instance = WorkflowInstance(
            definition,
            self.workflow_id,
            self.run_id,
            started.attributes,
            started.time,
            registry.converter,
            guard=registry.determinism_guard,
            max_payload_bytes=registry.max_payload_bytes,
        )

    def _replay(self, registry: Registry) -> Step:
        """Feeds the recorded history to fresh code; returns commands not yet recorded.

        Raises NonDeterminismError naming the first event where code and history differ.
        """
        self._load_instance(registry, replay=True)
        instance = self.instance
        assert instance is not None
        queue: list[RunCommand] = []
        blocked_tail: Failure | None = None
        in_block = False
        for event in self.events:
            a = event.attributes
            if isinstance(a, _RESOLVING):
                if queue and not in_block:
                    raise NonDeterminismError(self._mismatch(event, queue[0], None))
                step = instance.activate(event, replaying=True)
                queue.extend(step.commands)
                blocked_tail = step.blocked
                if step.blocked is not None and not in_block:
                    # the code fails where history shows it went on
                    nxt = self._next_recorded(event)
                    if nxt is not None and not isinstance(nxt.attributes, WorkflowBlocked):
                        raise NonDeterminismError(
                            f"workflow {self.workflow_id!r} replayed event {event.event_id} and "
                            f"the code raised: {step.blocked.message}"
                        )
            elif isinstance(a, _COMMAND_EVENTS):
                if not queue:
                    raise NonDeterminismError(self._mismatch(event, None, a))
                got = queue.pop(0)
                if not _matches(got, a):
                    raise NonDeterminismError(self._mismatch(event, got, a))
            elif isinstance(a, WorkflowBlocked):
                in_block = True
            elif isinstance(a, WorkflowUnblocked):
                in_block = False
        return Step(commands=queue, blocked=blocked_tail)

    def _next_recorded(self, event: HistoryEvent) -> HistoryEvent | None:
        i = event.event_id  # event_id is 1-based: the next event sits at index event_id
        return self.events[i] if i < len(self.events) else None

    def _mismatch(
        self, event: HistoryEvent, got: RunCommand | None, expected: EventAttributes | None
    ) -> str:
        exp = _describe_event(expected) if expected is not None else "no command"
        gotten = (
            f"{_describe_command(got)} (issued at {_location(got)})"
            if got is not None
            else "no command"
        )
        return (
            f"workflow {self.workflow_id!r} replayed event {event.event_id}: history has {exp} "
            f"but the code issued {gotten}; the workflow code changed — guard the change "
            "with workflow.patched()"
        )

    # ---- views ----------------------------------------------------------------------------------
    def describe(self, with_history: list[bytes] | None = None) -> RunDescription:
        return RunDescription(
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            workflow_type=self.workflow_type,
            task_queue=self.task_queue,
            status=self.status,
            blocked=self.blocked,
            start_time=self.start_time,
            close_time=self.close_time,
            history_length=len(self.events),
            result=self.result,
            failure=self.failure,
            history=with_history or [],
        )


def _ms(d: timedelta | None) -> int | None:
    return None if d is None else int(d / timedelta(milliseconds=1))


def _matches(command: RunCommand, recorded: EventAttributes) -> bool:
    match command:
        case ScheduleActivity():
            return (
                isinstance(recorded, ActivityScheduled)
                and recorded.activity_id == command.activity_id
                and recorded.activity_type == command.options.activity_type
            )
        case StartTimer():
            return isinstance(recorded, TimerStarted) and recorded.timer_id == command.timer_id
        case CompleteRun():
            return isinstance(recorded, WorkflowCompleted)
        case FailRun():
            return isinstance(recorded, WorkflowFailed)
        case _:
            assert_never(command)


def _describe_command(c: RunCommand | None) -> str:
    match c:
        case ScheduleActivity():
            return f"ActivityScheduled({c.options.activity_type!r})"
        case StartTimer():
            return f"TimerStarted({c.delay})"
        case CompleteRun():
            return "WorkflowCompleted"
        case FailRun():
            return "WorkflowFailed"
        case None:
            return "nothing"
        case _:
            assert_never(c)


def _location(c: RunCommand | None) -> str:
    return getattr(c, "location", "") or "?"


def _describe_event(a: EventAttributes) -> str:
    if isinstance(a, ActivityScheduled):
        return f"ActivityScheduled({a.activity_type!r})"
    return type(a).__name__
