"""A run's history as the `workflow` commands show it: one short row per event, the
pending activities and children folded from the events, and `follow`, which prints events
as they are written until the run closes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.cli.output import Output, dumps
from streams.client import Client
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
from streams.wire.history_json import event_to_json

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

EVENT_HEADERS = ("ID", "TIME", "TYPE", "DETAILS")
_WIDTHS = (4, 12, 26)  # fixed while following: rows print before the widest is known
_QUIET = {"workflow_id", "run_id", "event_id", "time", "type", "start_command_id"}
_QUIET |= {"retry_policy", "reply_to", "request_id", "cancellation_type", "parent_seq"}
_DETAILS_MAX = 100


@dataclass(frozen=True, slots=True)
class PendingChild:
    """A child workflow initiated and not yet closed."""

    workflow_id: str
    workflow_type: str
    run_id: str | None  # None until it started


def event_row(event: HistoryEvent, client: Client, out: Output) -> list[str]:
    """ID, time, type and the short details of an event, as text cells."""
    return [
        str(event.event_id),
        out.time(event.time),
        type(event.attributes).__name__,
        details(event_to_json(event, client.converter), out),
    ]


def details(event: dict[str, Any], out: Output) -> str:
    """The attributes of an event (as from `event_to_json`) on one line: `name=value`, empty
    ones left out, a failure by its message, instants (`*_at`) in the time format, cut at 100
    characters."""
    parts = []
    for name, value in event.items():
        if name in _QUIET or value in (None, "", [], {}):
            continue
        if isinstance(value, dict) and "message" in value:
            value = value["message"]
        elif name.endswith("_at") and isinstance(value, int):
            value = out.time(value)
        parts.append(f"{name}={value if isinstance(value, str) else dumps(value)}")
    text = " ".join(parts)
    return text if len(text) <= _DETAILS_MAX else text[: _DETAILS_MAX - 1] + "…"


def print_event(event: HistoryEvent, client: Client, out: Output) -> None:
    """One event as it comes: a fixed-width row (text) or one JSON line (json, jsonl)."""
    if out.text:
        out.line(fixed_row(event_row(event, client, out)))
    else:
        out.json(event_to_json(event, client.converter))


def print_event_header(out: Output) -> None:
    if out.text:
        out.line(fixed_row(list(EVENT_HEADERS)))


def fixed_row(cells: list[str]) -> str:
    """ID, time and type padded to fixed widths, then the details."""
    return "  ".join([*(c.ljust(w) for c, w in zip(cells, _WIDTHS, strict=False)), cells[3]])


async def follow(
    client: Client,
    workflow_id: str,
    run_id: str | None,
    on_event: Callable[[HistoryEvent], None],
    *,
    through_continue_as_new: bool = False,
    poll_seconds: float = 0.5,
) -> HistoryEvent | None:
    """Calls `on_event` for each event of the run as it is written (reading its history
    again every `poll_seconds`) until the run closes; returns the closing event. With
    `through_continue_as_new`, goes on with the new run of a continue-as-new."""
    seen = 0
    while True:
        events = await client.get_workflow_handle(workflow_id, run_id).fetch_history()
        for event in events[seen:]:
            on_event(event)
        seen = len(events)
        last = events[-1] if events else None
        if last is not None and isinstance(last.attributes, CLOSES):
            if through_continue_as_new and isinstance(last.attributes, WorkflowContinuedAsNew):
                run_id, seen = last.attributes.new_run_id, 0
                continue
            return last
        if run_id is None and last is not None:
            run_id = last.run_id  # stay on this run even if the ID starts another one
        await asyncio.sleep(poll_seconds)


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
