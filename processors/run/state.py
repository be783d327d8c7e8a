"""The pure core: one run's state machine. Command or timer in → history events and
outbound messages out; it never touches a socket.

A run's state is a fold of its history events (`apply`). Handling a command appends new
events (each applied at once) and collects what must leave the processor in the same
transaction: activity tasks, timer records, the completion. The run owns its parts —
`Activities`, `Timers`, `Children` — each of which sees the run only as a `RunLog`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import assert_never

from processors.run.activities import Activities, ActivityState
from processors.run.children import Children, ChildReport, report_to_parent
from processors.run.code import load_code, replay_code, unrecorded
from processors.run.effects import Effects
from processors.run.limits import limit_failure, near_limits
from processors.run.timers import Timers, run_deadlines
from processors.workflow_code.decisions import (
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
    UpsertSearchAttributes,
)
from processors.workflow_code.handlers import CompleteUpdate
from processors.workflow_code.instance import WorkflowInstance
from processors.workflow_code.patches import RecordMarker
from processors.workflow_code.registry import Registry
from processors.workflow_code.replay import in_record_order, replay
from streams.errors import NonDeterminismError, UnknownWorkflowError
from streams.payload import Payload
from streams.retry import RetryPolicy
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
    ChildWorkflowClosed,
    ChildWorkflowInitiated,
    ChildWorkflowStarted,
    ChildWorkflowStartFailed,
    EventAttributes,
    HistoryEvent,
    MarkerRecorded,
    SearchAttributesUpserted,
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
    SearchAttribute,
    Timer,
    TimerKind,
    UpdateResult,
    millis,
)

log = logging.getLogger(__name__)

DEFAULT_RETRY = RetryPolicy()
# a run blocked by one of these waits for the payload store (an object put back, the store
# reachable again), not for a code fix: `workflow unblock` or a restore resumes it
PAYLOAD_STORE_ERRORS = frozenset(
    {"PayloadStoreError", "PayloadNotFoundError", "PayloadChecksumError"}
)
__all__ = [
    "ActivityState",
    "Effects",
    "NonDeterminismError",
    "ReplayOutcome",
    "Run",
    "replay_history",
]


class Run:
    """One run: its history, the state folded from it, and (when loaded) its live code.

    `registry` is the worker's code: the run loads its workflow from it when the code is
    first needed (at start, or by replay on the first event after a restore)."""

    __slots__ = (
        "activities",
        "blocked",
        "cancel_requested",
        "children",
        "close_time",
        "events",
        "failure",
        "instance",
        "limit_warned",
        "next_run",
        "partition",
        "registry",
        "result",
        "run_id",
        "search_attributes",
        "signals",
        "start_command_id",
        "start_time",
        "status",
        "task_queue",
        "timers",
        "trace",
        "updates",
        "workflow_id",
        "workflow_type",
    )

    def __init__(self, workflow_id: str, run_id: str, partition: int, registry: Registry) -> None:
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.partition = partition
        self.registry = registry
        self.events: list[HistoryEvent] = []
        self.limit_warned = False
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
        self.signals = 0  # SignalReceived events in the history (held to max_signals)
        self.updates: dict[str, tuple[str | None, str]] = {}  # id -> (reply_to, request id)
        self.next_run: tuple[str, list[Payload]] | None = None
        self.activities = Activities(self, partition)
        self.timers = Timers(self)
        self.children = Children(self)
        self.instance: WorkflowInstance | None = None
        # custom search attributes as they stand (JSON "null" removed one)
        self.search_attributes: dict[str, SearchAttribute] = {}
        # the trace context of the run's RunWorkflow span (empty: the run is not traced),
        # the parent of the spans of what the run starts
        self.trace: dict[str, str] = {}

    def _set_search_attributes(self, attributes: list[SearchAttribute]) -> None:
        for attribute in attributes:
            if attribute.value == "null":
                self.search_attributes.pop(attribute.name, None)
            else:
                self.search_attributes[attribute.name] = attribute

    @property
    def closed(self) -> bool:
        return self.status is not RunStatus.RUNNING

    # ---- the fold ---------------------------------------------------------------------------
    def apply(self, event: HistoryEvent) -> None:
        """Folds one event into the state (no side effects; used live and on restore)."""
        self.events.append(event)
        a = event.attributes
        match a:
            case (
                ActivityScheduled()
                | ActivityCompleted()
                | ActivityStarted()
                | ActivityHeartbeatRecorded()
                | ActivityAttemptFailed()
                | ActivityRetried()
                | ActivityFailed()
                | ActivityCancelRequested()
                | ActivityCanceled()
                | ActivityPaused()
                | ActivityUnpaused()
                | ActivityReset()
            ):
                self.activities.fold(a, event.time, event.event_id)
            case WorkflowStarted():
                self.workflow_type, self.task_queue = a.workflow_type, a.task_queue
                self.start_command_id, self.start_time = a.start_command_id, event.time
                if a.trace:
                    self.trace = workflow_carrier(a.trace, self.run_id, event.event_id)
                self._set_search_attributes(a.search_attributes)
            case TimerStarted() | TimerFired() | TimerCanceled():
                self.timers.fold(a)
            case WorkflowCompleted():
                self._set_closed(RunStatus.COMPLETED, event.time, result=a.result)
            case WorkflowFailed():
                self._set_closed(RunStatus.FAILED, event.time, failure=a.failure)
            case WorkflowCanceled():
                failure = Failure("the run was canceled", "CancelledError", "canceled")
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
                self.signals += 1
            case UpdateAccepted():
                self.updates[a.update_id] = (a.reply_to, a.request_id)
            case UpdateCompleted():
                self.updates.pop(a.update_id, None)
            case (
                ChildWorkflowInitiated()
                | ChildWorkflowStarted()
                | ChildWorkflowStartFailed()
                | ChildWorkflowClosed()
            ):
                self.children.fold(a)
            case WorkflowContinuedAsNew():
                self._set_closed(RunStatus.CONTINUED_AS_NEW, event.time)
                self.next_run = (a.new_run_id, a.args)
            case WorkflowBlocked():
                self.blocked = a.failure
            case WorkflowUnblocked():
                self.blocked = None
            case MarkerRecorded() | WorkflowReset():
                pass
            case SearchAttributesUpserted():
                self._set_search_attributes(a.attributes)
            case _:
                assert_never(a)

    def _set_closed(
        self,
        status: RunStatus,
        time: int,
        result: Payload | None = None,
        failure: Failure | None = None,
    ) -> None:
        self.status, self.close_time, self.result, self.failure = status, time, result, failure

    def append(self, attrs: EventAttributes, now: int, fx: Effects) -> HistoryEvent:
        """Records an event: folds it into the state and adds it to what `fx` writes (an
        update's outcome is replied to its caller, too)."""
        event = HistoryEvent(self.workflow_id, self.run_id, len(self.events) + 1, now, attrs)
        if isinstance(attrs, UpdateCompleted) and attrs.update_id in self.updates:
            reply_to, request_id = self.updates[attrs.update_id]
            if reply_to:
                result = UpdateResult(attrs.update_id, attrs.result, attrs.failure)
                fx.replies.append(Reply(reply_to, request_id, result))
        self.apply(event)
        fx.events.append(event)
        return event

    def resolve(self, attrs: EventAttributes, now: int, fx: Effects) -> None:
        """Appends an event the code waits on, and lets the code go on."""
        self._ensure_instance(now, fx)
        event = self.append(attrs, now, fx)
        self._advance(event, fx)

    # ---- what moves the run on --------------------------------------------------------------
    def start(self, started: WorkflowStarted, now: int, fx: Effects) -> None:
        """Records the start and runs the code until it waits."""
        event = self.append(started, now, fx)
        fx.derived_timers.extend(self._workflow_deadlines())
        try:
            self.instance = load_code(self.registry, self.workflow_id, self.run_id, self.events)
        except UnknownWorkflowError as e:
            self._block(
                "workflow_error", Failure(str(e), "UnknownWorkflowError", "workflow"), now, fx
            )
            return
        self._advance(event, fx)

    def complete_activity(
        self, activity_id: int, attempt: int, result: Payload, now: int, fx: Effects
    ) -> bool:
        """Records an attempt's result; False if it is late, duplicate or unknown (dropped)."""
        return self.activities.finish(activity_id, attempt, result, None, now, fx)

    def fail_activity(
        self, activity_id: int, attempt: int, failure: Failure, now: int, fx: Effects
    ) -> bool:
        """Records a failed attempt: retried per policy, or the activity fails for good."""
        return self.activities.finish(activity_id, attempt, None, failure, now, fx)

    def start_activity(self, activity_id: int, attempt: int, now: int, fx: Effects) -> bool:
        """A runner picked the attempt up (see `Activities.start`)."""
        return self.activities.start(activity_id, attempt, now, fx)

    def heartbeat_activity(
        self, activity_id: int, attempt: int, details: list[Payload], now: int, fx: Effects
    ) -> bool:
        """Records a heartbeat; True if the attempt should stop (see `Activities.heartbeat`)."""
        return self.activities.heartbeat(activity_id, attempt, details, now, fx)

    def cancel(self, reason: str, now: int, fx: Effects) -> bool:
        """Asks the code to stop: asyncio cancellation of the run's main task."""
        if self.closed:
            return False
        self.resolve(WorkflowCancelRequested(reason), now, fx)
        return True

    def signal(
        self,
        name: str,
        args: list[Payload],
        now: int,
        fx: Effects,
        trace: dict[str, str] | None = None,
    ) -> None:
        """Records a signal and delivers it to its handler (`trace`: the sender's trace
        context, kept on the event)."""
        self.resolve(SignalReceived(name, args, trace or {}), now, fx)

    def accept_update(
        self,
        update_id: str,
        name: str,
        args: list[Payload],
        reply_to: str,
        request_id: str,
        now: int,
        fx: Effects,
        trace: dict[str, str] | None = None,
    ) -> None:
        """Records a validated update and runs its handler; the outcome is replied when
        the handler finishes (possibly in a later transaction)."""
        accepted = UpdateAccepted(update_id, name, args, reply_to, request_id, trace or {})
        self.resolve(accepted, now, fx)

    def child_reported(self, attrs: ChildReport, now: int, fx: Effects) -> bool:
        """A child reported in (started, could not start, closed); False if stale."""
        return self.children.report(attrs, now, fx)

    def fail(self, failure: Failure, now: int, fx: Effects) -> bool:
        """Fails the run at once, for a reason outside its code (a limit it reached); none
        of its code runs any more."""
        if self.closed:
            return False
        self.instance = None
        self.append(WorkflowFailed(failure), now, fx)
        self._close(now, fx)
        return True

    def terminate(self, reason: str, now: int, fx: Effects) -> bool:
        """Ends the run at once; no workflow code runs."""
        if self.closed:
            return False
        self.append(WorkflowTerminated(reason), now, fx)
        self._close(now, fx)
        return True

    def fire_timer(self, timer: Timer, now: int, fx: Effects) -> bool:
        """Fires a due timer if the run still waits on it; False if it is stale."""
        if self.closed or timer.run_id != self.run_id:
            return False
        match timer.kind:
            case TimerKind.USER_TIMER:
                return self.timers.fire(timer, now, fx)
            case TimerKind.WORKFLOW_RUN_TIMEOUT | TimerKind.WORKFLOW_EXECUTION_TIMEOUT:
                kind = "run" if timer.kind is TimerKind.WORKFLOW_RUN_TIMEOUT else "execution"
                self.append(WorkflowTimedOut(kind), now, fx)
                self._close(now, fx)
                return True
            case (
                TimerKind.ACTIVITY_RETRY
                | TimerKind.ACTIVITY_START_TO_CLOSE
                | TimerKind.ACTIVITY_SCHEDULE_TO_START
                | TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE
                | TimerKind.ACTIVITY_HEARTBEAT
            ):
                return self.activities.fire_timer(timer, now, fx)
            case _:
                assert_never(timer.kind)

    def check_history_limits(
        self, history_bytes: int, now: int, effects: Callable[[Run], Effects]
    ) -> None:
        """Fails the run if its history (`history_bytes` encoded) reached a limit; warns
        once when it comes near. `effects` gives what to write, asked only if needed."""
        length, r = len(self.events), self.registry
        limits = (r.max_history_events, r.max_history_bytes)
        failure = limit_failure(self.workflow_id, self.run_id, length, history_bytes, *limits)
        if failure is not None:
            self.fail(failure, now, effects(self))
        elif not self.limit_warned and near_limits(
            self.workflow_id, self.run_id, length, history_bytes, *limits
        ):
            self.limit_warned = True

    # ---- running the code ---------------------------------------------------------------------
    def _advance(self, event: HistoryEvent, fx: Effects) -> None:
        if self.instance is None:  # blocked: the event is recorded, the code waits for a fix
            return
        step = self.instance.activate(event)
        self._apply_step(step, event.time, fx)

    def _apply_step(self, step: Step, now: int, fx: Effects) -> None:
        for decision in in_record_order(step.decisions):
            self._record_decision(decision, now, fx)
        if step.blocked is not None and not self.closed:
            store = step.blocked.type in PAYLOAD_STORE_ERRORS  # waits for the store, no fix
            self._block("payload_store" if store else "workflow_error", step.blocked, now, fx)

    def _record_decision(self, decision: Decision, now: int, fx: Effects) -> None:
        if self.closed:
            return
        match decision:
            case ScheduleActivity():
                o = decision.options
                scheduled = ActivityScheduled(
                    activity_id=decision.activity_id,
                    activity_type=o.activity_type,
                    task_queue=o.task_queue or self.task_queue,
                    args=decision.args,
                    start_to_close_timeout_ms=millis(o.start_to_close_timeout),
                    schedule_to_close_timeout_ms=millis(o.schedule_to_close_timeout),
                    retry_policy=o.retry_policy or DEFAULT_RETRY,
                    schedule_to_start_timeout_ms=millis(o.schedule_to_start_timeout),
                    heartbeat_timeout_ms=millis(o.heartbeat_timeout),
                    cancellation_type=o.cancellation_type,
                    source=decision.source,
                    trace=self.trace,
                    local_retry_threshold_ms=millis(o.local_retry_threshold),
                )
                self.activities.schedule(scheduled, now, fx)
            case StartTimer():
                delay = millis(decision.delay) or 0
                self.timers.start(decision.timer_id, delay, now, fx, decision.source)
            case CancelTimer():
                self.timers.cancel(decision.timer_id, now, fx)
            case CompleteRun():
                self.append(WorkflowCompleted(decision.result), now, fx)
                self._close(now, fx)
            case FailRun():
                self.append(WorkflowFailed(decision.failure), now, fx)
                self._close(now, fx)
            case CancelRun():
                self.append(WorkflowCanceled(), now, fx)
                self._close(now, fx)
            case RequestCancelActivity():
                self.activities.request_cancel(decision.activity_id, now, fx)
            case CompleteUpdate():
                completed = UpdateCompleted(decision.update_id, decision.result, decision.failure)
                self.append(completed, now, fx)
            case RecordMarker():
                self.append(MarkerRecorded(decision.patch_id, decision.deprecated), now, fx)
            case StartChild():
                self.children.start(decision, self.task_queue, now, fx)
            case ContinueAsNewRun():
                new_run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"everflow:{self.run_id}:next"))
                self.append(WorkflowContinuedAsNew(new_run_id, decision.args), now, fx)
                self._close(now, fx)
            case UpsertSearchAttributes():
                self.append(SearchAttributesUpserted(decision.attributes), now, fx)
            case _:
                assert_never(decision)

    def _ensure_instance(self, now: int, fx: Effects) -> None:
        """Rebuilds the live code by replay if it is not in memory (after restore)."""
        if self.instance is not None or self.closed or self.blocked is not None:
            return
        try:
            pending = self.replay()
        except NonDeterminismError as e:
            self._block(
                "non_determinism", Failure(str(e), "NonDeterminismError", "workflow"), now, fx
            )
            return
        except UnknownWorkflowError as e:
            self._block(
                "workflow_error", Failure(str(e), "UnknownWorkflowError", "workflow"), now, fx
            )
            return
        failure = unrecorded(self.workflow_id, len(self.events), pending)
        if failure is not None:  # history ends with a step whose decisions it lacks
            self._block("non_determinism", failure, now, fx)

    def replay(self) -> Step:
        """Rebuilds the run's code by replaying its history; returns what the code decided
        beyond the record (nothing is recorded). Raises NonDeterminismError where code and
        history differ, UnknownWorkflowError if this worker lacks the workflow."""
        self.instance = None
        self.instance, step = replay_code(self.registry, self.workflow_id, self.run_id, self.events)
        return step

    def try_unblock(self, now: int, fx: Effects, code: Registry | None = None) -> bool:
        """For a blocked run: replays with the code deployed now (`code`, when it is not
        the run's registry any more), and resumes if it fits."""
        if self.blocked is None or self.closed:
            return False
        if code is not None:
            self.registry = code
        try:
            pending = self.replay()
        except (NonDeterminismError, UnknownWorkflowError):
            self.instance = None
            return False
        if pending.blocked is not None:
            self.instance = None
            return False
        self.append(WorkflowUnblocked("code replayed cleanly"), now, fx)
        self._apply_step(pending, now, fx)
        return True

    def resume(self, now: int, fx: Effects) -> None:
        """After a reset: replays the copied events and goes on live from their end."""
        try:
            pending = self.replay()
        except (NonDeterminismError, UnknownWorkflowError) as e:
            kind = type(e).__name__
            self._block("non_determinism", Failure(str(e), kind, "workflow"), now, fx)
            return
        self._apply_step(pending, now, fx)

    def live_instance(self) -> WorkflowInstance:
        """The run's code with its current state, rebuilt by replay if it is not loaded
        (also for a closed run: queries read its final state). Records nothing."""
        if self.instance is not None:
            return self.instance
        instance = load_code(self.registry, self.workflow_id, self.run_id, self.events)
        self.instance = instance
        try:
            replay(self.workflow_id, self.events, instance)
        finally:
            if self.closed or self.blocked is not None:
                self.instance = None  # only running runs keep their code loaded
        return instance

    # ---- timers and closing -------------------------------------------------------------------
    def _workflow_deadlines(self) -> list[Timer]:
        started = self.events[0].attributes
        assert isinstance(started, WorkflowStarted)
        return run_deadlines(self.workflow_id, self.run_id, started, self.start_time)

    def derived_timers(self) -> list[Timer]:
        """Timers that follow from the state (timeouts), recomputed after a restore."""
        if self.closed or not self.events:
            return []
        return self._workflow_deadlines() + self.activities.deadlines()

    def _close(self, now: int, fx: Effects) -> None:
        self.timers.clear(fx)
        self.activities.clear_timers(fx)
        self.children.close(now, fx)
        started = self.events[0].attributes
        assert isinstance(started, WorkflowStarted)
        report_to_parent(started, self.run_id, self.status, self.result, self.failure, now, fx)
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
        self.append(WorkflowBlocked(reason, failure), now, fx)

    # ---- views ----------------------------------------------------------------------------------
    def describe(
        self, with_history: list[bytes] | None = None, first_offset: int = -1
    ) -> RunDescription:
        """The run's status for a reply; `with_history` and `first_offset` (of its first
        event in the history partition) come from storage, which the run knows nothing of."""
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
            first_offset=first_offset,
        )


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """What replaying a recorded history with today's code found."""

    workflow_type: str
    error: str | None = None  # None: the code matches the history


def replay_history(events: Sequence[HistoryEvent], registry: Registry) -> ReplayOutcome:
    """Replays one run's recorded events (in event ID order) against the code in
    `registry`, writing nothing; the error says where and how code and history differ."""
    first = events[0]
    run = Run(first.workflow_id, first.run_id, 0, registry)
    for event in events:
        run.apply(event)
    try:
        step = run.replay()
    except (NonDeterminismError, UnknownWorkflowError) as e:
        return ReplayOutcome(run.workflow_type, str(e))
    if step.blocked is not None and run.blocked is None:
        return ReplayOutcome(
            run.workflow_type, f"the code raised on replay: {step.blocked.message}"
        )
    if step.decisions and run.blocked is None:
        extra = ", ".join(type(c).__name__ for c in step.decisions)
        return ReplayOutcome(
            run.workflow_type,
            f"workflow {run.workflow_id!r} replayed to the end of its history (event "
            f"{len(events)}) and then issued commands the history does not have: {extra}",
        )
    return ReplayOutcome(run.workflow_type)
