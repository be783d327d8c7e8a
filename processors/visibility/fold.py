"""The run index's core: a history event folded into the row of its run (pure, no I/O).

`fold(row, event)` is the new row, or the same object when the event changes nothing: an
event applies only if its ID is greater than the row's `last_event_id`, so a replayed or
re-read event never moves a run back (a closed run stays closed, an attempt never goes
down). A run's row begins with its `WorkflowStarted`; any other event of a run the index
has no row for is skipped (its start is gone from `history`, or it is not a run at all).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import assert_never

from streams.visibility.query import is_attribute_name
from streams.visibility.records import ActivityRow, RunRow
from streams.visibility.schema import PAGE_EVENTS
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
from streams.wire.records import SearchAttribute, SearchAttributeType

_CLOSES: dict[type, str] = {
    WorkflowCompleted: "Completed",
    WorkflowFailed: "Failed",
    WorkflowCanceled: "Canceled",
    WorkflowTerminated: "Terminated",
    WorkflowTimedOut: "TimedOut",
    WorkflowContinuedAsNew: "ContinuedAsNew",
}


def fold(row: RunRow | None, event: HistoryEvent) -> RunRow | None:
    """The row after `event` (None: the index keeps no row for this run yet)."""
    a = event.attributes
    if row is None:
        if not isinstance(a, WorkflowStarted):
            return None
        row = RunRow(
            run_id=event.run_id,
            workflow_id=event.workflow_id,
            workflow_type=a.workflow_type,
            task_queue=a.task_queue,
            status="Running",
            start_time=event.time,
            last_event_id=0,
            parent_workflow_id=a.parent_workflow_id,
            parent_run_id=a.parent_run_id,
        )
    if event.event_id <= row.last_event_id:
        return row
    changed = _apply(row, event)
    return replace(changed, last_event_id=event.event_id)


def starts_page(before: RunRow | None, after: RunRow | None, event: HistoryEvent) -> bool:
    """Whether `event`, folded from `before` into `after`, starts a page of its run's history
    (events 1, 1 + PAGE_EVENTS, …): only an event the fold applied, so a re-read never adds
    a page twice nor one of a run the index does not keep."""
    if after is None or (before is not None and event.event_id <= before.last_event_id):
        return False
    return (event.event_id - 1) % PAGE_EVENTS == 0


def attribute_types(event: HistoryEvent) -> dict[str, SearchAttributeType]:
    """The search attributes the event sets or removes, with their types."""
    return {s.name: s.type for s in _attributes_of(event)}


def _attributes_of(event: HistoryEvent) -> list[SearchAttribute]:
    # a name the filter language could not address (a built-in, a keyword) is not indexed
    a = event.attributes
    if isinstance(a, WorkflowStarted | SearchAttributesUpserted):
        given = a.search_attributes if isinstance(a, WorkflowStarted) else a.attributes
        return [s for s in given if is_attribute_name(s.name)]
    return []


def _apply(row: RunRow, event: HistoryEvent) -> RunRow:
    a = event.attributes
    match a:
        case WorkflowStarted() | SearchAttributesUpserted():
            return _upsert_attributes(row, _attributes_of(event))
        case (
            WorkflowCompleted()
            | WorkflowFailed()
            | WorkflowCanceled()
            | WorkflowTerminated()
            | WorkflowTimedOut()
            | WorkflowContinuedAsNew()
        ):
            return replace(row, status=_CLOSES[type(a)], close_time=event.time, activities=())
        case WorkflowBlocked():
            return replace(row, status="Blocked") if row.close_time is None else row
        case WorkflowUnblocked():
            return replace(row, status="Running") if row.status == "Blocked" else row
        case ActivityScheduled():
            if row.close_time is not None:
                return row
            new = ActivityRow(a.activity_id, a.activity_type, 1, a.retry_policy.maximum_attempts)
            kept = tuple(x for x in row.activities if x.activity_id != a.activity_id)
            return replace(row, activities=(*kept, new))
        case ActivityStarted() | ActivityRetried():
            return _activity(row, a.activity_id, attempt=a.attempt, next_retry_time=None)
        case ActivityAttemptFailed():
            return _activity(
                row,
                a.activity_id,
                attempt=a.attempt,
                last_failure=a.failure.message,
                next_retry_time=a.retry_at,
            )
        case ActivityReset():
            return _activity(row, a.activity_id, next_retry_time=None)
        case ActivityCompleted() | ActivityFailed() | ActivityCanceled():
            kept = tuple(x for x in row.activities if x.activity_id != a.activity_id)
            return replace(row, activities=kept)
        case (
            ActivityHeartbeatRecorded()
            | ActivityCancelRequested()
            | ActivityPaused()
            | ActivityUnpaused()
            | TimerStarted()
            | TimerFired()
            | TimerCanceled()
            | WorkflowCancelRequested()
            | SignalReceived()
            | UpdateAccepted()
            | UpdateCompleted()
            | ChildWorkflowInitiated()
            | ChildWorkflowStarted()
            | ChildWorkflowStartFailed()
            | ChildWorkflowClosed()
            | MarkerRecorded()
            | WorkflowReset()
        ):
            return row  # the history length still grows (fold sets last_event_id)
        case _:
            assert_never(a)


def _activity(row: RunRow, activity_id: int, **changes: object) -> RunRow:
    activities = tuple(
        replace(x, **changes) if x.activity_id == activity_id else x  # type: ignore[arg-type]
        for x in row.activities
    )
    return replace(row, activities=activities)


def _upsert_attributes(row: RunRow, attributes: list[SearchAttribute]) -> RunRow:
    if not attributes:
        return row
    values = dict(row.search_attributes)
    for s in attributes:
        value = json.loads(s.value)
        if value is None:
            values.pop(s.name, None)
        else:
            values[s.name] = value
    return replace(row, search_attributes=values)
