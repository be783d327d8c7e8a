"""What the run index answers: a run as listed, its pending activities, counts by status."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class PendingActivity:
    """An activity scheduled and not yet closed, at its current attempt."""

    activity_id: int
    activity_type: str
    attempt: int
    maximum_attempts: int  # 0 = unlimited
    last_failure: str | None
    next_retry_time: datetime | None


@dataclass(frozen=True, slots=True)
class WorkflowExecution:
    """One run as the index knows it (times are UTC-aware)."""

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    status: str  # Running, Blocked, Completed, Failed, Canceled, Terminated, TimedOut, ...
    start_time: datetime
    close_time: datetime | None
    execution_duration: timedelta | None
    history_length: int
    parent_workflow_id: str | None
    parent_run_id: str | None
    search_attributes: dict[str, object] = field(default_factory=dict)
    pending_activities: tuple[PendingActivity, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkflowCount:
    """How many runs match, and (when grouped) how many per status."""

    count: int
    groups: dict[str, int] = field(default_factory=dict)
