"""The pure core: one run's state machine. Command or timer in → history events and
outbound messages out; it never touches a socket.

A run's state is a fold of its history events (`apply`). Handling a command appends new
events (each applied at once) and collects what must leave the processor in the same
transaction: activity tasks, timer records, the completion.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import assert_never

from processors.run.activities import ActivityLifecycle, ActivityState
from processors.run.children import ChildLifecycle
from processors.run.code import CodeLifecycle
from processors.run.effects import Effects
from processors.run.limits import HistoryLimits
from processors.run.repair import Repair
from processors.workflow_code.handlers import CompleteUpdate
from processors.workflow_code.instance import (
    CancelRun,
    CancelTimer,
    CompleteRun,
    ContinueAsNewRun,
    Decision,
    FailRun,
    RequestCancelActivity,
    ScheduleActivity,
    StartChild,
    StartTimer,
    Step,
    WorkflowInstance,
)
from processors.workflow_code.patches import RecordMarker
from processors.workflow_code.registry import Registry, UnknownWorkflowError
from processors.workflow_code.replay import (
    NonDeterminismError,
    in_record_order,
)
from streams.payload import Payload
from streams.retry import RetryPolicy
from streams.wire.commands import (
    Command,
    StartWorkflow,
)
from streams.wire.events import (
    ActivityScheduled,
    ChildWorkflowClosed,
    ChildWorkflowInitiated,
    ChildWorkflowStarted,
    ChildWorkflowStartFailed,
    EventAttributes,
    HistoryEvent,
    MarkerRecorded,
    SignalReceived,
    TimerCanceled,
    TimerFired,
    TimerStarted,
    UpdateAccepted,
    UpdateCompleted,
    WorkflowBlocked,
    WorkflowCanceled,
    WorkflowCancelRequested,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowFailed,
    WorkflowReset,
    WorkflowStarted,
    WorkflowTerminated,
    WorkflowTimedOut,
    WorkflowUnblocked,
)
from streams.wire.records import (
    Completion,
    Failure,
    Reply,
    RunDescription,
    RunStatus,
    Timer,
    TimerKind,
    UpdateResult,
)

log = logging.getLogger(__name__)

DEFAULT_RETRY = RetryPolicy()
__all__ = ["ActivityState", "Effects", "NonDeterminismError", "Run"]


class Run(CodeLifecycle, ChildLifecycle, ActivityLifecycle, HistoryLimits, Repair):
    """One run: its history, the state folded from it, and (when loaded) its live code."""

    def __init__(self, workflow_id: str, run_id: str, partition: int) -> None:
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.partition = partition
        self.events: list[HistoryEvent] = []
        self.encoded: list[bytes] = []
        self.first_offset = -1  # of its first event in the history partition
        self.history_bytes = 0  # of its encoded events
        self.limit_warned = False
        self.retention_queued = False  # its close is in the partition's retention queue
        self.chunk_offsets: list[int] = []  # snapshot chunks written (delivered), in order
        self.chunks_written = 0  # snapshot chunks produced
        self.pending_events = 0  # events not in a snapshot yet
        self.pending_first_offset = -1  # history offset of the first of them (once known)
        self.pending_since = 0.0  # monotonic time of the first of them
        self.workflow_type = ""
        self.task_queue = ""
        self.start_command_id = ""
        self.start_time = 0
        self.close_time: int | None = None
        self.status = RunStatus.RUNNING
        self.result: Payload | None = None
        self.failure: Failure | None = None
        self.blocked: Failure | None = None
        self.cancel_requested = False
        self.updates: dict[str, tuple[str | None, str]] = {}  # id -> (reply_to, request id)
        self.next_run: tuple[str, list[Payload]] | None = None
        self.children: dict[int, tuple[str, str]] = {}  # seq -> (workflow ID, close policy)
        self.activities: dict[int, ActivityState] = {}
        self.timers: dict[int, int] = {}
        self.instance: WorkflowInstance | None = None
        self._registry: Registry | None = None

    @property
    def closed(self) -> bool:
        return self.status is not RunStatus.RUNNING

    # ---- the fold ---------------------------------------------------------------------------
    def apply(self, event: HistoryEvent) -> None:
        """Folds one event into the state (no side effects; used live and on restore)."""
        self.events.append(event)
        a = event.attributes
        if self.fold_activity(a, event.time):
            return
        match a:
            case WorkflowStarted():
                self.workflow_type, self.task_queue = a.workflow_type, a.task_queue
                self.start_command_id, self.start_time = a.start_command_id, event.time
            case TimerStarted():
                self.timers[a.timer_id] = a.fire_at
            case TimerFired() | TimerCanceled():
                self.timers.pop(a.timer_id, None)
            case WorkflowCompleted():
                self._set_closed(RunStatus.COMPLETED, event.time, result=a.result)
            case WorkflowFailed():
                self._set_closed(RunStatus.FAILED, event.time, failure=a.failure)
            case WorkflowCanceled():
                failure = Failure("the run was cancelled", "CancelledError", "cancelled")
                self._set_closed(RunStatus.CANCELED, event.time, failure=failure)
            case WorkflowTerminated():
                failure = Failure(a.reason or "terminated", "Terminated", "terminated")
                self._set_closed(RunStatus.TERMINATED, event.time, failure=failure)
            case WorkflowTimedOut():
                failure = Failure(
                    f"the run timed out ({a.timeout_type} timeout)",
                    "WorkflowTimedOut",
                    "timeout",
                    timeout_type=a.timeout_type,
                )
                self._set_closed(RunStatus.TIMED_OUT, event.time, failure=failure)
            case WorkflowCancelRequested():
                self.cancel_requested = True
            case SignalReceived():
                pass
            case UpdateAccepted():
                self.updates[a.update_id] = (a.reply_to, a.request_id)
            case UpdateCompleted():
                self.updates.pop(a.update_id, None)
            case ChildWorkflowInitiated():
                self.children[a.seq] = (a.workflow_id, a.parent_close_policy)
            case ChildWorkflowStarted():
                pass
            case ChildWorkflowStartFailed() | ChildWorkflowClosed():
                self.children.pop(a.seq, None)
            case WorkflowContinuedAsNew():
                self._set_closed(RunStatus.CONTINUED_AS_NEW, event.time)
                self.next_run = (a.new_run_id, a.args)
            case WorkflowBlocked():
                self.blocked = a.failure
            case WorkflowUnblocked():
                self.blocked = None
            case MarkerRecorded() | WorkflowReset():
                pass
            case _:
                raise TypeError(f"no fold for history event {type(a).__name__}")

    def _set_closed(
        self,
        status: RunStatus,
        time: int,
        result: Payload | None = None,
        failure: Failure | None = None,
    ) -> None:
        self.status, self.close_time, self.result, self.failure = status, time, result, failure

    def _append(self, attrs: EventAttributes, now: int, fx: Effects) -> HistoryEvent:
        event = HistoryEvent(self.workflow_id, self.run_id, len(self.events) + 1, now, attrs)
        if isinstance(attrs, UpdateCompleted) and attrs.update_id in self.updates:
            reply_to, request_id = self.updates[attrs.update_id]
            if reply_to:
                result = UpdateResult(attrs.update_id, attrs.result, attrs.failure)
                fx.replies.append(Reply(reply_to, request_id, result))
        self.apply(event)
        fx.events.append(event)
        return event

    def _resolve(self, attrs: EventAttributes, now: int, fx: Effects) -> None:
        """Appends an event the code waits on, and lets the code go on."""
        assert self._registry is not None
        self._ensure_instance(self._registry, now, fx)
        event = self._append(attrs, now, fx)
        self._advance(event, fx)

    # ---- commands -----------------------------------------------------------------------------
    def start(self, started: WorkflowStarted, now: int, registry: Registry, fx: Effects) -> None:
        self._registry = registry
        event = self._append(started, now, fx)
        fx.derived_timers.extend(self._workflow_deadlines())
        try:
            self._load_instance(registry)
        except UnknownWorkflowError as e:
            self._block(
                "workflow_error", Failure(str(e), "UnknownWorkflowError", "workflow"), now, fx
            )
            return
        self._advance(event, fx)

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
        self._registry = registry
        return self.finish_activity(activity_id, attempt, result, None, now, fx)

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
        self._registry = registry
        return self.finish_activity(activity_id, attempt, None, failure, now, fx)

    def cancel(self, reason: str, now: int, registry: Registry, fx: Effects) -> bool:
        """Asks the code to stop: asyncio cancellation of the run's main task."""
        if self.closed:
            return False
        self._registry = registry
        self._resolve(WorkflowCancelRequested(reason), now, fx)
        return True

    def signal(
        self, name: str, args: list[Payload], now: int, registry: Registry, fx: Effects
    ) -> None:
        """Records a signal and delivers it to its handler."""
        self._registry = registry
        self._resolve(SignalReceived(name, args), now, fx)

    def accept_update(
        self,
        update_id: str,
        name: str,
        args: list[Payload],
        reply_to: str,
        request_id: str,
        now: int,
        registry: Registry,
        fx: Effects,
    ) -> None:
        """Records a validated update and runs its handler; the outcome is replied when
        the handler finishes (possibly in a later transaction)."""
        self._registry = registry
        self._resolve(UpdateAccepted(update_id, name, args, reply_to, request_id), now, fx)

    def terminate(self, reason: str, now: int, fx: Effects) -> bool:
        """Ends the run at once; no workflow code runs."""
        if self.closed:
            return False
        self._append(WorkflowTerminated(reason), now, fx)
        self._close(now, fx)
        return True

    def fire_timer(self, timer: Timer, now: int, registry: Registry, fx: Effects) -> bool:
        """Fires a due timer if the run still waits on it; False if it is stale."""
        if self.closed or timer.run_id != self.run_id:
            return False
        self._registry = registry
        if timer.kind is TimerKind.USER_TIMER:
            if timer.seq not in self.timers:
                return False
            fx.timer_ops.append((timer.key, None))
            self._resolve(TimerFired(timer.seq), now, fx)
            return True
        if timer.kind in (TimerKind.WORKFLOW_RUN_TIMEOUT, TimerKind.WORKFLOW_EXECUTION_TIMEOUT):
            kind = "run" if timer.kind is TimerKind.WORKFLOW_RUN_TIMEOUT else "execution"
            self._append(WorkflowTimedOut(kind), now, fx)
            self._close(now, fx)
            return True
        return self.fire_activity_timer(timer, now, fx)

    # ---- running the code ---------------------------------------------------------------------
    def _advance(self, event: HistoryEvent, fx: Effects) -> None:
        if self.instance is None:  # blocked: the event is recorded, the code waits for a fix
            return
        step = self.instance.activate(event)
        self._apply_step(step, event.time, fx)

    def _apply_step(self, step: Step, now: int, fx: Effects) -> None:
        for command in in_record_order(step.decisions):
            self._record_decision(command, now, fx)
        if step.blocked is not None and not self.closed:
            self._block("workflow_error", step.blocked, now, fx)

    def _record_decision(self, command: Decision, now: int, fx: Effects) -> None:
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
                    schedule_to_start_timeout_ms=_ms(o.schedule_to_start_timeout),
                    heartbeat_timeout_ms=_ms(o.heartbeat_timeout),
                    cancellation_type=o.cancellation_type,
                )
                self._append(scheduled, now, fx)
                self.dispatch(self.activities[command.activity_id], now, fx, first=True)
            case StartTimer():
                fire_at = now + (_ms(command.delay) or 0)
                self._append(TimerStarted(command.timer_id, fire_at), now, fx)
                self._set_timer(
                    Timer(
                        self.workflow_id,
                        self.run_id,
                        TimerKind.USER_TIMER,
                        command.timer_id,
                        0,
                        fire_at,
                    ),
                    fx,
                )
            case CancelTimer():
                self._append(TimerCanceled(command.timer_id), now, fx)
                fx.timer_ops.append((self._user_timer_key(command.timer_id), None))
            case CompleteRun():
                self._append(WorkflowCompleted(command.result), now, fx)
                self._close(now, fx)
            case FailRun():
                self._append(WorkflowFailed(command.failure), now, fx)
                self._close(now, fx)
            case CancelRun():
                self._append(WorkflowCanceled(), now, fx)
                self._close(now, fx)
            case RequestCancelActivity():
                self.request_cancel_activity(command.activity_id, now, fx)
            case CompleteUpdate():
                self._append(
                    UpdateCompleted(command.update_id, command.result, command.failure), now, fx
                )
            case RecordMarker():
                self._append(MarkerRecorded(command.patch_id, command.deprecated), now, fx)
            case StartChild():
                child = command.options
                queue = child.task_queue or self.task_queue
                initiated = ChildWorkflowInitiated(
                    command.seq,
                    child.workflow_id,
                    child.workflow_type,
                    queue,
                    command.args,
                    child.parent_close_policy,
                )
                self._append(initiated, now, fx)
                child_run = uuid.uuid5(uuid.NAMESPACE_URL, f"everflow:{self.run_id}:{command.seq}")
                start = StartWorkflow(
                    str(child_run),
                    child.workflow_type,
                    queue,
                    command.args,
                    parent_workflow_id=self.workflow_id,
                    parent_run_id=self.run_id,
                    parent_seq=command.seq,
                )
                command_id = f"{self.run_id}/child/{command.seq}"
                fx.commands.append(Command(command_id, child.workflow_id, now, start))
            case ContinueAsNewRun():
                new_run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"everflow:{self.run_id}:next"))
                self._append(WorkflowContinuedAsNew(new_run_id, command.args), now, fx)
                self._close(now, fx)
            case _:
                assert_never(command)

    def _workflow_deadlines(self) -> list[Timer]:
        started = self.events[0].attributes
        assert isinstance(started, WorkflowStarted)
        timers = []
        for kind, ms in (
            (TimerKind.WORKFLOW_RUN_TIMEOUT, started.run_timeout_ms),
            (TimerKind.WORKFLOW_EXECUTION_TIMEOUT, started.execution_timeout_ms),
        ):
            if ms is not None:
                fire_at = self.start_time + ms
                timers.append(Timer(self.workflow_id, self.run_id, kind, 0, 0, fire_at))
        return timers

    def derived_timers(self) -> list[Timer]:
        """Timers that follow from the state (timeouts), recomputed after a restore."""
        if self.closed or not self.events:
            return []
        return self._workflow_deadlines() + self.activity_deadlines()

    def _set_timer(self, timer: Timer, fx: Effects) -> None:
        fx.timer_ops.append((timer.key, timer))

    def _user_timer_key(self, timer_id: int) -> str:
        return Timer(self.workflow_id, self.run_id, TimerKind.USER_TIMER, timer_id, 0, 0).key

    def _close(self, now: int, fx: Effects) -> None:
        for timer_id in list(self.timers):
            fx.timer_ops.append((self._user_timer_key(timer_id), None))
        self.clear_all_activity_timers(fx)
        self._close_children(now, fx)
        self._notify_parent(now, fx)
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
            first_offset=self.first_offset,
        )


def _ms(d: timedelta | None) -> int | None:
    return None if d is None else int(d / timedelta(milliseconds=1))
