"""Replay: feed a run's recorded history to fresh workflow code and check that the code
issues the same decisions the history records. A mismatch is a NonDeterminismError naming
the event, what history has, what the code issued, and the file:line that issued it.
"""

from __future__ import annotations

from typing import assert_never

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
from streams.errors import NonDeterminismError
from streams.wire.events import (
    ActivityCanceled,
    ActivityCancelRequested,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
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
    WorkflowStarted,
    WorkflowUnblocked,
)
from streams.wire.records import Failure, SearchAttribute

# events that wake the code up, and events that record what the code decided
RESOLVING = (
    WorkflowStarted,
    ActivityCompleted,
    ActivityFailed,
    ActivityCanceled,
    TimerFired,
    WorkflowCancelRequested,
    SignalReceived,
    UpdateAccepted,
    ChildWorkflowStarted,
    ChildWorkflowStartFailed,
    ChildWorkflowClosed,
)
DECISION_EVENTS = (
    ActivityScheduled,
    TimerStarted,
    TimerCanceled,
    ActivityCancelRequested,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowCanceled,
    UpdateCompleted,
    WorkflowContinuedAsNew,
    ChildWorkflowInitiated,
    MarkerRecorded,
    SearchAttributesUpserted,
)
CHANGED = "the workflow code changed — guard the change with workflow.patched()"


def replay(workflow_id: str, events: list[HistoryEvent], instance: WorkflowInstance) -> Step:
    """Feeds `events` to `instance`; returns the decisions the code made beyond the record.

    Decisions made while the run was blocked (between WorkflowBlocked and WorkflowUnblocked,
    or after a WorkflowBlocked at the end) are not in the record yet: they are returned.
    Raises NonDeterminismError at the first event where code and history differ.
    """
    queue: list[Decision] = []
    blocked_tail: Failure | None = None
    in_block = False
    for i, event in enumerate(events):
        a = event.attributes
        if isinstance(a, RESOLVING):
            if queue and not in_block:
                raise NonDeterminismError(mismatch(workflow_id, event, queue[0], None))
            step = instance.activate(event, replaying=True)
            queue.extend(in_record_order(step.decisions))
            blocked_tail = step.blocked
            nxt = events[i + 1] if i + 1 < len(events) else None
            if step.blocked is not None and not in_block and nxt is not None:
                if not isinstance(nxt.attributes, WorkflowBlocked):
                    raise NonDeterminismError(
                        f"workflow {workflow_id!r} replayed event {event.event_id} and the "
                        f"code raised: {step.blocked.message}"
                    )
        elif isinstance(a, MarkerRecorded) and not (
            queue and isinstance(queue[0], RecordMarker) and queue[0].patch_id == a.patch_id
        ):
            continue  # a patch marker the code no longer asks about (its call was removed)
        elif isinstance(a, DECISION_EVENTS):
            if not queue:
                raise NonDeterminismError(mismatch(workflow_id, event, None, a))
            got = queue.pop(0)
            if not matches(got, a):
                raise NonDeterminismError(mismatch(workflow_id, event, got, a))
        elif isinstance(a, WorkflowBlocked):
            in_block = True
        elif isinstance(a, WorkflowUnblocked):
            in_block = False
    return Step(decisions=queue, blocked=blocked_tail)


def in_record_order(decisions: list[Decision]) -> list[Decision]:
    """A step's decisions in the order they are recorded: cancel requests after the others,
    since one may resolve its activity at once and that event must follow the step's other
    decisions; and a close (complete, fail, cancel) last, so nothing is lost after it."""
    if len(decisions) < 2:
        return decisions

    def rank(c: Decision) -> int:
        if isinstance(c, RequestCancelActivity):
            return 1
        return 2 if isinstance(c, CompleteRun | FailRun | CancelRun | ContinueAsNewRun) else 0

    return sorted(decisions, key=rank)  # stable: same-rank decisions keep their order


def mismatch(
    workflow_id: str, event: HistoryEvent, got: Decision | None, expected: EventAttributes | None
) -> str:
    exp = describe_event(expected) if expected is not None else "no command"
    gotten = (
        f"{describe_decision(got)} (issued at {location(got)})" if got is not None else "no command"
    )
    return (
        f"workflow {workflow_id!r} replayed event {event.event_id}: history has {exp} "
        f"but the code issued {gotten}; {CHANGED}"
    )


def matches(decision: Decision, recorded: EventAttributes) -> bool:
    match decision:
        case ScheduleActivity():
            return (
                isinstance(recorded, ActivityScheduled)
                and recorded.activity_id == decision.activity_id
                and recorded.activity_type == decision.options.activity_type
                # a local activity made regular (or the reverse) changes where it runs
                and recorded.local == (decision.options.local_retry_threshold is not None)
            )
        case StartTimer():
            return isinstance(recorded, TimerStarted) and recorded.timer_id == decision.timer_id
        case CancelTimer():
            return isinstance(recorded, TimerCanceled) and recorded.timer_id == decision.timer_id
        case RequestCancelActivity():
            return (
                isinstance(recorded, ActivityCancelRequested)
                and recorded.activity_id == decision.activity_id
            )
        case CompleteRun():
            return isinstance(recorded, WorkflowCompleted)
        case FailRun():
            return isinstance(recorded, WorkflowFailed)
        case CancelRun():
            return isinstance(recorded, WorkflowCanceled)
        case CompleteUpdate():
            return (
                isinstance(recorded, UpdateCompleted) and recorded.update_id == decision.update_id
            )
        case ContinueAsNewRun():
            return isinstance(recorded, WorkflowContinuedAsNew)
        case RecordMarker():
            return isinstance(recorded, MarkerRecorded) and recorded.patch_id == decision.patch_id
        case StartChild():
            return (
                isinstance(recorded, ChildWorkflowInitiated)
                and recorded.seq == decision.seq
                and recorded.workflow_type == decision.options.workflow_type
            )
        case UpsertSearchAttributes():
            # the same names, types and values in the same order: the index and every
            # later decision that reads them depend on the values, so a changed value is a
            # change of behaviour (Temporal's strict matching does the same)
            return (
                isinstance(recorded, SearchAttributesUpserted)
                and recorded.attributes == decision.attributes
            )
        case _:
            assert_never(decision)


def describe_decision(c: Decision | None) -> str:
    match c:
        case ScheduleActivity():
            local = ", local" if c.options.local_retry_threshold is not None else ""
            return f"ActivityScheduled({c.options.activity_type!r}{local})"
        case StartTimer():
            return f"TimerStarted({c.delay})"
        case CancelTimer():
            return f"TimerCanceled({c.timer_id})"
        case RequestCancelActivity():
            return f"ActivityCancelRequested({c.activity_id})"
        case CompleteRun():
            return "WorkflowCompleted"
        case FailRun():
            return "WorkflowFailed"
        case CancelRun():
            return "WorkflowCanceled"
        case CompleteUpdate():
            return f"UpdateCompleted({c.update_id!r})"
        case ContinueAsNewRun():
            return "WorkflowContinuedAsNew"
        case StartChild():
            return f"ChildWorkflowInitiated({c.options.workflow_type!r})"
        case RecordMarker():
            return f"MarkerRecorded({c.patch_id!r})"
        case UpsertSearchAttributes():
            return f"SearchAttributesUpserted({_attributes(c.attributes)})"
        case None:
            return "nothing"
        case _:
            assert_never(c)


def location(c: Decision | None) -> str:
    return getattr(c, "location", "") or "?"


def describe_event(a: EventAttributes) -> str:
    if isinstance(a, ActivityScheduled):
        return f"ActivityScheduled({a.activity_type!r}{', local' if a.local else ''})"
    if isinstance(a, SearchAttributesUpserted):
        return f"SearchAttributesUpserted({_attributes(a.attributes)})"
    return type(a).__name__


def _attributes(attributes: list[SearchAttribute]) -> str:
    return ", ".join(f"{a.name}={a.value}" for a in attributes)
