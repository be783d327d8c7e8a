"""A run's history as the `workflow` commands show it: one short row per event, the
pending activities and children folded from the events, and `follow`, which prints events
as they are written until the run closes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from streams.cli.output import Output
from streams.client import Client
from streams.visibility.history_fold import (
    CLOSES,
    PendingChild,
    paused_activities,
    pending_activities,
    pending_children,
)
from streams.wire.events import HistoryEvent, WorkflowContinuedAsNew
from streams.wire.history_json import event_summary, event_to_json

__all__ = [
    "CLOSES",
    "PendingChild",
    "details",
    "event_row",
    "fixed_row",
    "follow",
    "paused_activities",
    "pending_activities",
    "pending_children",
    "print_event",
    "print_event_header",
]

EVENT_HEADERS = ("ID", "TIME", "TYPE", "DETAILS")
_WIDTHS = (4, 12, 26)  # fixed while following: rows print before the widest is known
_DETAILS_MAX = 100


def event_row(event: HistoryEvent, client: Client, out: Output) -> list[str]:
    """ID, time, type and the short details of an event, as text cells."""
    return [
        str(event.event_id),
        out.time(event.time),
        type(event.attributes).__name__,
        details(event_to_json(event, client.converter), out),
    ]


def details(event: dict[str, Any], out: Output) -> str:
    """The attributes of an event (as from `event_to_json`) on one line (`event_summary`),
    instants in the time format, cut at 100 characters."""
    return event_summary(event, instant=out.time, limit=_DETAILS_MAX)


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
