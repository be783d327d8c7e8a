"""Everything the run page shows of one run, gathered from the run index, the run's
history (read in pages from Kafka) and, when the index does not know the run yet, its
processor.

- The facts (type, queue, times, parent, search attributes) come from the index; a run it
  does not have yet is described by its processor (`describe`, a short timeout).
- The cards (pending activities, timers, children, blocked) are folded from the history: the
  whole of it up to `FOLD_LIMIT` events, beyond that its first event and last `TAIL_EVENTS`
  (the index's pending activities stay complete).
- The status is the history's when it has a close or a block; else the index's.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from streams.errors import (
    RPCTimeoutError,
    VisibilityUnavailableError,
    WorkflowNotFoundError,
)
from streams.payload import DataConverter
from streams.ui.context import Ui
from streams.ui.history import (
    Blocked,
    PendingTimer,
    blocked,
    pending_timers,
    show_payload,
    show_payloads,
)
from streams.ui.history_pages import HistoryReader, Start, decode_records
from streams.visibility.history_fold import (
    PendingChild,
    paused_activities,
    pending_activities,
    pending_children,
)
from streams.visibility.records import PendingActivity, WorkflowExecution
from streams.wire.events import (
    ActivityAttemptFailed,
    ActivityHeartbeatRecorded,
    HistoryEvent,
    WorkflowCanceled,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowTerminated,
    WorkflowTimedOut,
)
from streams.wire.records import Failure, RunDescription

FOLD_LIMIT = 5000
TAIL_EVENTS = 1000
PAGE_SIZE = 200
ASK_TIMEOUT = timedelta(seconds=3)
START_MARGIN = timedelta(minutes=5)  # clocks of the host that started a run and the broker's
T = TypeVar("T")

_CLOSED = {
    WorkflowCompleted: "Completed",
    WorkflowFailed: "Failed",
    WorkflowCanceled: "Canceled",
    WorkflowTerminated: "Terminated",
    WorkflowTimedOut: "TimedOut",
    WorkflowContinuedAsNew: "ContinuedAsNew",
}
_PROCESSOR_STATUS = {
    "RUNNING": "Running",
    "COMPLETED": "Completed",
    "FAILED": "Failed",
    "CANCELED": "Canceled",
    "TERMINATED": "Terminated",
    "TIMED_OUT": "TimedOut",
    "CONTINUED_AS_NEW": "ContinuedAsNew",
}


@dataclass(slots=True)
class RunFacts:
    """What the index (or the run's processor) says of the run."""

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    status: str
    start_time: int  # epoch ms
    close_time: int | None
    history_length: int
    parent_workflow_id: str | None = None
    parent_run_id: str | None = None
    search_attributes: dict[str, object] = field(default_factory=dict)
    indexed_activities: tuple[PendingActivity, ...] = ()
    first_offset: int = -1
    indexed: bool = False


@dataclass(frozen=True, slots=True)
class Heartbeat:
    attempt: int
    details: str


@dataclass(slots=True)
class ActivityCard:
    """One pending activity as its card shows it."""

    activity: PendingActivity
    paused: bool
    failure_stack: str
    heartbeat: Heartbeat | None

    @property
    def activity_id(self) -> int:
        return self.activity.activity_id

    @property
    def activity_type(self) -> str:
        return self.activity.activity_type

    @property
    def attempt(self) -> int:
        return self.activity.attempt

    @property
    def of(self) -> str:
        """`N of M`, or `N of unlimited`."""
        m = self.activity.maximum_attempts
        return f"{self.activity.attempt} of {m if m else 'unlimited'}"


@dataclass(slots=True)
class RunView:
    """The run page's model."""

    facts: RunFacts
    status: str
    history_length: int
    events: list[HistoryEvent]  # those the cards were folded from
    partial: bool  # the cards read the head and tail of a long history
    input: str
    result: str
    failure: Failure | None
    blocked: Blocked | None
    activities: list[ActivityCard]
    paused: set[int]
    timers: list[PendingTimer]
    children: list[PendingChild]
    continued_from: str | None
    continued_to: str | None
    as_of: int  # epoch ms

    @property
    def open(self) -> bool:
        return self.status in ("Running", "Blocked")


def facts_from_index(e: WorkflowExecution) -> RunFacts:
    return RunFacts(
        workflow_id=e.workflow_id,
        run_id=e.run_id,
        workflow_type=e.workflow_type,
        task_queue=e.task_queue,
        status=e.status,
        start_time=int(e.start_time.timestamp() * 1000),
        close_time=None if e.close_time is None else int(e.close_time.timestamp() * 1000),
        history_length=e.history_length,
        parent_workflow_id=e.parent_workflow_id,
        parent_run_id=e.parent_run_id,
        search_attributes=dict(e.search_attributes),
        indexed_activities=e.pending_activities,
        indexed=True,
    )


def facts_from_processor(d: RunDescription) -> RunFacts:
    return RunFacts(
        workflow_id=d.workflow_id,
        run_id=d.run_id,
        workflow_type=d.workflow_type,
        task_queue=d.task_queue,
        status="Blocked" if d.blocked else _PROCESSOR_STATUS.get(d.status.value, "Running"),
        start_time=d.start_time,
        close_time=d.close_time,
        history_length=d.history_length,
        first_offset=d.first_offset,
    )


class RunLoader:
    """Reads runs for the run page: facts, pages of history, the whole view."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui
        self.reader = HistoryReader(ui.config)

    # ---- the index and the processor ---------------------------------------------------------
    async def indexed(self, run_id: str) -> WorkflowExecution | None:
        try:
            return await asyncio.to_thread(lambda: self.ui.store().describe_run(run_id))
        except VisibilityUnavailableError:
            return None

    async def described(self, workflow_id: str, run_id: str | None) -> RunDescription | None:
        """The processor's description, or None when it does not know the run or no worker
        answers within ASK_TIMEOUT."""
        try:
            handle = self.ui.client.get_workflow_handle(workflow_id, run_id)
            return await handle.describe(timeout=ASK_TIMEOUT)
        except (WorkflowNotFoundError, RPCTimeoutError):
            return None

    async def facts(self, workflow_id: str, run_id: str) -> RunFacts | None:
        e = await self.indexed(run_id)
        if e is not None and e.workflow_id == workflow_id:
            return facts_from_index(e)
        d = await self.described(workflow_id, run_id)
        return None if d is None or d.run_id != run_id else facts_from_processor(d)

    async def latest_run(self, workflow_id: str) -> str | None:
        """The run ID of the workflow's newest run in the index, else its processor's."""

        def newest() -> str | None:
            store = self.ui.store()
            runs = store.list_runs(
                f"workflow_id = {store.placeholder}", [workflow_id], "start_time DESC", limit=1
            )
            return runs[0].run_id if runs else None

        try:
            found = await asyncio.to_thread(newest)
        except VisibilityUnavailableError:
            found = None
        if found is not None:
            return found
        d = await self.described(workflow_id, None)
        return None if d is None else d.run_id

    async def children(self, facts: RunFacts) -> list[WorkflowExecution]:
        def listed() -> list[WorkflowExecution]:
            store = self.ui.store()
            p = store.placeholder
            return store.list_runs(
                f"parent_workflow_id = {p} AND parent_run_id = {p}",
                [facts.workflow_id, facts.run_id],
                "start_time",
                limit=100,
            )

        try:
            return await asyncio.to_thread(listed)
        except VisibilityUnavailableError:
            return []

    # ---- history pages -------------------------------------------------------------------------
    async def on_reader(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the reader's own threads (as many as its consumers), so reads that
        wait for a consumer never hold the event loop's default executor."""
        return await asyncio.get_running_loop().run_in_executor(
            self.reader.executor, functools.partial(fn, *args)
        )

    async def start_for(self, facts: RunFacts, event_id: int) -> Start:
        """Where to read from to find `event_id`: the index's page, else the run's first
        offset as its processor knows it, else the first offset written at or after the
        run's start time (less `START_MARGIN`), never the partition's beginning."""

        def page() -> Any:
            try:
                return self.ui.store().history_page(facts.run_id, event_id)
            except VisibilityUnavailableError:
                return None

        found = await asyncio.to_thread(page)
        if found is not None:
            return Start(found.partition, found.offset, found.first_event_id)
        partition = await self.on_reader(self.reader.partition_of, facts.workflow_id)
        if facts.first_offset < 0 and facts.status in ("Running", "Blocked"):
            d = await self.described(facts.workflow_id, facts.run_id)
            if d is not None:
                facts.first_offset = d.first_offset
        if facts.first_offset < 0:
            since = facts.start_time - int(START_MARGIN.total_seconds() * 1000)
            facts.first_offset = await self.on_reader(self.reader.offset_at, partition, since)
        return Start(partition, facts.first_offset, 1)

    async def records(
        self, facts: RunFacts, first: int, size: int, last: int | None = None
    ) -> list[tuple[int, bytes]]:
        """The run's records with event IDs first..first+size-1, up to `last` (default: the
        run's history length as known, so a read never scans past the run's last event to
        the partition's end; events written since are read once the index has them)."""
        if last is None and facts.history_length > 0:
            last = facts.history_length
        start = await self.start_for(facts, first)
        return await self.on_reader(
            self.reader.read, facts.workflow_id, facts.run_id, start, first, size, last
        )

    async def length_now(self, facts: RunFacts) -> int:
        """The run's history length now: the index's (and its status when it says the run
        closed), else its processor's."""
        e = await self.indexed(facts.run_id)
        if e is not None:
            if e.status not in ("Running", "Blocked"):
                facts.status = e.status  # closed since the facts were read
            return e.history_length
        d = await self.described(facts.workflow_id, facts.run_id)
        return facts.history_length if d is None else d.history_length

    async def events(
        self, facts: RunFacts, first: int, size: int, last: int | None = None
    ) -> list[HistoryEvent]:
        return await asyncio.to_thread(decode_records, await self.records(facts, first, size, last))

    async def card_events(self, facts: RunFacts) -> tuple[list[HistoryEvent], bool]:
        """The events the cards fold: all of them, or the head and tail of a long history."""
        length = facts.history_length
        if length <= FOLD_LIMIT:
            return await self.events(facts, 1, FOLD_LIMIT), False
        head = await self.events(facts, 1, 1)
        tail = await self.events(facts, max(2, length - TAIL_EVENTS + 1), 10 * TAIL_EVENTS)
        return head + tail, True

    # ---- the whole view ------------------------------------------------------------------------
    async def view(self, facts: RunFacts) -> RunView:
        events, partial = await self.card_events(facts)
        return await asyncio.to_thread(build_view, facts, events, partial, self.ui.converter)


def history_status(events: list[HistoryEvent], fallback: str) -> str:
    """The status the history shows: its close, Blocked when blocked, else `fallback`."""
    if events and type(events[-1].attributes) in _CLOSED:
        return _CLOSED[type(events[-1].attributes)]
    if blocked(events) is not None:
        return "Blocked"
    if fallback == "Blocked" and events:
        return "Running"  # unblocked since the index saw it
    return fallback


def build_view(
    facts: RunFacts, events: list[HistoryEvent], partial: bool, converter: DataConverter
) -> RunView:
    """The run page's model from the run's facts and the events the cards fold (pure)."""
    length = max(facts.history_length, events[-1].event_id if events else 0)
    status = history_status(events, facts.status)
    started = next(
        (e.attributes for e in events if isinstance(e.attributes, WorkflowStarted)), None
    )
    last = events[-1].attributes if events else None
    result = failure = None
    if status not in ("Running", "Blocked") and facts.close_time is None and events:
        facts.close_time = events[-1].time  # closed since the index (or processor) said
    if isinstance(last, WorkflowCompleted):
        result = show_payload(converter, last.result)
    elif isinstance(last, WorkflowFailed):
        failure = last.failure
    paused = paused_activities(events)
    folded = [] if partial else pending_activities(events)
    activities = folded if folded or not facts.indexed else list(facts.indexed_activities)
    if status not in ("Running", "Blocked"):
        activities = []
    cards = [activity_card(a, events, paused, converter) for a in activities]
    if started is not None and started.parent_workflow_id and not facts.parent_workflow_id:
        facts.parent_workflow_id = started.parent_workflow_id
        facts.parent_run_id = started.parent_run_id
    return RunView(
        facts=facts,
        status=status,
        history_length=length,
        events=events,
        partial=partial,
        input=show_payloads(converter, started.args) if started is not None else "",
        result=result or "",
        failure=failure,
        blocked=blocked(events) if status == "Blocked" else None,
        activities=cards,
        paused=paused,
        timers=pending_timers(events),
        children=pending_children(events),
        continued_from=started.continued_from_run_id if started is not None else None,
        continued_to=last.new_run_id if isinstance(last, WorkflowContinuedAsNew) else None,
        as_of=int(time.time() * 1000),
    )


def activity_card(
    activity: PendingActivity,
    events: list[HistoryEvent],
    paused: set[int],
    converter: DataConverter,
) -> ActivityCard:
    """A pending activity with its last failure's stack and last heartbeat, from history."""
    stack = ""
    heartbeat = None
    for event in events:
        a = event.attributes
        if isinstance(a, ActivityAttemptFailed) and a.activity_id == activity.activity_id:
            stack = a.failure.stack
        elif isinstance(a, ActivityHeartbeatRecorded) and a.activity_id == activity.activity_id:
            heartbeat = Heartbeat(a.attempt, show_payloads(converter, a.details))
    return ActivityCard(activity, activity.activity_id in paused, stack, heartbeat)
