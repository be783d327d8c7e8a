"""What a run's history says is open right now, rebuilt from its events (pure, no I/O): the
activities pending (at which attempt, of how many, with the last failure and next retry),
those an operator paused, and the child workflows not yet closed. The CLI's `describe` and
the Web UI's run page both read a run through these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from streams.visibility.records import PendingActivity
from streams.wire.events import (
    ActivityAttemptFailed,
    ActivityCanceled,
    ActivityCompleted,
    ActivityFailed,
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
    WorkflowCanceled,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowFailed,
    WorkflowTerminated,
    WorkflowTimedOut,
)

CLOSES = (
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowCanceled,
    WorkflowTerminated,
    WorkflowTimedOut,
    WorkflowContinuedAsNew,
)
"""The events that close a run: nothing follows them."""

_Move = ActivityAttemptFailed | ActivityRetried | ActivityStarted | ActivityReset


@dataclass(frozen=True, slots=True)
class PendingChild:
    """A child workflow initiated and not yet closed."""

    workflow_id: str
    workflow_type: str
    run_id: str | None  # None until it started


def pending_activities(events: list[HistoryEvent]) -> list[PendingActivity]:
    """The activities of the history not yet closed, each at its current attempt (during a
    retry backoff: the attempt to come), with its budget, last failure and next retry."""
    pending: dict[int, PendingActivity] = {}
    budget: dict[int, int] = {}  # the retry policy's maximum_attempts (0 = unlimited)
    dispatched: dict[int, int] = {}  # the attempt last sent to a runner
    for event in events:
        a = event.attributes
        if isinstance(a, CLOSES):
            return []
        if isinstance(a, ActivityScheduled):
            budget[a.activity_id] = a.retry_policy.maximum_attempts
            dispatched[a.activity_id] = 1
            pending[a.activity_id] = PendingActivity(
                a.activity_id, a.activity_type, 1, budget[a.activity_id], None, None
            )
        elif isinstance(a, ActivityCompleted | ActivityFailed | ActivityCanceled):
            pending.pop(a.activity_id, None)
        elif isinstance(a, _Move) and a.activity_id in pending:
            pending[a.activity_id] = _moved(pending[a.activity_id], a, budget, dispatched)
    return list(pending.values())


def _moved(
    p: PendingActivity,
    a: _Move,
    budget: dict[int, int],
    dispatched: dict[int, int],
) -> PendingActivity:
    attempt, failure, retry = p.attempt, p.last_failure, p.next_retry_time
    maximum = p.maximum_attempts
    if isinstance(a, ActivityAttemptFailed):
        attempt, failure = a.attempt + 1, a.failure.message
        retry = datetime.fromtimestamp(a.retry_at / 1000, UTC)
    elif isinstance(a, ActivityRetried | ActivityStarted):
        attempt = dispatched[a.activity_id] = a.attempt
        retry = None if isinstance(a, ActivityRetried) else retry
    elif budget[a.activity_id]:  # a reset: a fresh budget counted from the last attempt
        maximum = dispatched[a.activity_id] + budget[a.activity_id]
    return PendingActivity(p.activity_id, p.activity_type, attempt, maximum, failure, retry)


def paused_activities(events: list[HistoryEvent]) -> set[int]:
    """The IDs of the activities an operator paused and did not unpause."""
    paused: set[int] = set()
    for event in events:
        a = event.attributes
        if isinstance(a, ActivityPaused):
            paused.add(a.activity_id)
        elif isinstance(a, ActivityUnpaused):
            paused.discard(a.activity_id)
    return paused


def pending_children(events: list[HistoryEvent]) -> list[PendingChild]:
    """The child workflows of the history initiated and not yet closed."""
    children: dict[int, PendingChild] = {}
    for event in events:
        a = event.attributes
        if isinstance(a, ChildWorkflowInitiated):
            children[a.seq] = PendingChild(a.workflow_id, a.workflow_type, None)
        elif isinstance(a, ChildWorkflowStarted) and a.seq in children:
            c = children[a.seq]
            children[a.seq] = PendingChild(c.workflow_id, c.workflow_type, a.run_id)
        elif isinstance(a, ChildWorkflowClosed | ChildWorkflowStartFailed):
            children.pop(a.seq, None)
    return list(children.values())
