"""History events: the facts of a run, on the `history` topic (past-tense names)."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.codec import avro
from streams.payload import Payload
from streams.records import Failure
from streams.retry import RetryPolicy


@avro("everflow.history.WorkflowStarted")
@dataclass(frozen=True, slots=True)
class WorkflowStarted:
    workflow_type: str
    task_queue: str
    args: list[Payload]
    start_command_id: str


@avro("everflow.history.ActivityScheduled")
@dataclass(frozen=True, slots=True)
class ActivityScheduled:
    activity_id: int
    activity_type: str
    task_queue: str
    args: list[Payload]
    start_to_close_timeout_ms: int | None
    schedule_to_close_timeout_ms: int | None
    retry_policy: RetryPolicy


@avro("everflow.history.ActivityAttemptFailed")
@dataclass(frozen=True, slots=True)
class ActivityAttemptFailed:
    activity_id: int
    attempt: int
    failure: Failure
    retry_at: int


@avro("everflow.history.ActivityRetried")
@dataclass(frozen=True, slots=True)
class ActivityRetried:
    activity_id: int
    attempt: int


@avro("everflow.history.ActivityCompleted")
@dataclass(frozen=True, slots=True)
class ActivityCompleted:
    activity_id: int
    attempt: int
    result: Payload


@avro("everflow.history.ActivityFailed")
@dataclass(frozen=True, slots=True)
class ActivityFailed:
    activity_id: int
    attempt: int
    failure: Failure


@avro("everflow.history.TimerStarted")
@dataclass(frozen=True, slots=True)
class TimerStarted:
    timer_id: int
    fire_at: int


@avro("everflow.history.TimerFired")
@dataclass(frozen=True, slots=True)
class TimerFired:
    timer_id: int


@avro("everflow.history.WorkflowCompleted")
@dataclass(frozen=True, slots=True)
class WorkflowCompleted:
    result: Payload


@avro("everflow.history.WorkflowFailed")
@dataclass(frozen=True, slots=True)
class WorkflowFailed:
    failure: Failure


@avro("everflow.history.WorkflowBlocked")
@dataclass(frozen=True, slots=True)
class WorkflowBlocked:
    reason: str
    failure: Failure


@avro("everflow.history.WorkflowUnblocked")
@dataclass(frozen=True, slots=True)
class WorkflowUnblocked:
    note: str = field(default="")


EventAttributes = (
    WorkflowStarted
    | ActivityScheduled
    | ActivityAttemptFailed
    | ActivityRetried
    | ActivityCompleted
    | ActivityFailed
    | TimerStarted
    | TimerFired
    | WorkflowCompleted
    | WorkflowFailed
    | WorkflowBlocked
    | WorkflowUnblocked
)


@avro("everflow.HistoryEvent")
@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One fact of a run; `event_id` counts from 1 without gaps within the run."""

    workflow_id: str
    run_id: str
    event_id: int
    time: int
    attributes: EventAttributes
