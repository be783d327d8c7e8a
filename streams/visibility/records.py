"""What the run index holds and answers: a run as listed, its pending activities, counts, lag.

`RunRow` and `ActivityRow` are a run as the index stores it (epoch milliseconds, JSON-ready
values); the projector folds history events into them. `WorkflowExecution`,
`PendingActivity` and `WorkflowCount` are what `Client.list_workflows` and
`Client.count_workflows` return (aware datetimes, timedeltas).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

STATUSES = (
    "Running",
    "Blocked",
    "Completed",
    "Failed",
    "Canceled",
    "Terminated",
    "TimedOut",
    "ContinuedAsNew",
)
"""Every value of the `status` column; all but Running and Blocked are closes."""

OPEN_STATUSES = ("Running", "Blocked")


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """One pending activity of a run, as stored (`next_retry_time` in epoch ms)."""

    activity_id: int
    activity_type: str
    attempt: int
    maximum_attempts: int  # 0 = unlimited
    last_failure: str | None = None
    next_retry_time: int | None = None


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run as the index stores it: the columns of `runs` and its pending activities.

    `last_event_id` is the guard: an event applies only if its ID is greater. Times are epoch
    milliseconds; `search_attributes` maps a name to its JSON value (never mutated: a new
    row gets a new dict).
    """

    run_id: str
    workflow_id: str
    workflow_type: str
    task_queue: str
    status: str
    start_time: int
    last_event_id: int
    close_time: int | None = None
    parent_workflow_id: str | None = None
    parent_run_id: str | None = None
    search_attributes: dict[str, object] = field(default_factory=dict)
    activities: tuple[ActivityRow, ...] = ()

    @property
    def execution_duration(self) -> int | None:
        return None if self.close_time is None else self.close_time - self.start_time

    @property
    def max_attempt(self) -> int:
        return max((a.attempt for a in self.activities), default=0)


@dataclass(frozen=True, slots=True)
class PendingActivity:
    """An activity of a run that is scheduled and not yet closed."""

    activity_id: int
    activity_type: str
    attempt: int
    maximum_attempts: int  # 0 = unlimited
    last_failure: str | None
    next_retry_time: datetime | None


@dataclass(frozen=True, slots=True)
class WorkflowExecution:
    """One run as the index knows it (`Client.list_workflows`).

    `pending_activities` is filled when the run was described; a list leaves it empty.
    Datetime search attributes come back as aware datetimes.
    """

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    status: str
    start_time: datetime
    close_time: datetime | None
    execution_duration: timedelta | None
    history_length: int
    parent_workflow_id: str | None
    parent_run_id: str | None
    search_attributes: dict[str, object]
    pending_activity_count: int = 0
    pending_activities: tuple[PendingActivity, ...] = ()
    max_attempt: int = 0
    """The highest attempt among its pending activities (2 and up: one is retrying)."""


@dataclass(frozen=True, slots=True)
class WorkflowCount:
    """How many runs match a filter; `groups` by status when asked for (else empty)."""

    count: int
    groups: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Where a page of a run's history starts: its first event's ID and record's place."""

    run_id: str
    first_event_id: int
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class IndexLag:
    """How far the index is behind `history`: records per partition, and the age of the
    oldest record not yet applied (0 when caught up)."""

    records: dict[int, int]
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.records.values())


def from_millis(ms: int) -> datetime:
    """An epoch-milliseconds instant as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, UTC)
