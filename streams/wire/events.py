"""History events: the facts of a run, on the `history` topic (past-tense names)."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.options import ActivityCancellationType, ParentClosePolicy
from streams.payload import Payload
from streams.retry import RetryPolicy
from streams.wire.avro import avro
from streams.wire.records import Failure, SearchAttribute, SourceLocation


@avro("everflow.history.WorkflowStarted")
@dataclass(frozen=True, slots=True)
class WorkflowStarted:
    workflow_type: str
    task_queue: str
    args: list[Payload]
    start_command_id: str
    execution_timeout_ms: int | None = None
    run_timeout_ms: int | None = None
    continued_from_run_id: str | None = None
    parent_workflow_id: str | None = None
    parent_run_id: str | None = None
    parent_seq: int = 0
    search_attributes: list[SearchAttribute] = field(default_factory=list)
    trace: dict[str, str] = field(default_factory=dict)


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
    schedule_to_start_timeout_ms: int | None = None
    heartbeat_timeout_ms: int | None = None
    cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL
    source: SourceLocation | None = None
    trace: dict[str, str] = field(default_factory=dict)
    # set only for a local activity: a backoff up to this waits in the hosting worker
    local_retry_threshold_ms: int | None = None

    @property
    def local(self) -> bool:
        """A local activity: run by the worker that hosts the run, no task on a topic."""
        return self.local_retry_threshold_ms is not None


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
    source: SourceLocation | None = None


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


@avro("everflow.history.TimerCanceled")
@dataclass(frozen=True, slots=True)
class TimerCanceled:
    timer_id: int


@avro("everflow.history.ActivityStarted")
@dataclass(frozen=True, slots=True)
class ActivityStarted:
    activity_id: int
    attempt: int


@avro("everflow.history.ActivityHeartbeatRecorded")
@dataclass(frozen=True, slots=True)
class ActivityHeartbeatRecorded:
    activity_id: int
    attempt: int
    details: list[Payload] = field(default_factory=list)


@avro("everflow.history.ActivityCancelRequested")
@dataclass(frozen=True, slots=True)
class ActivityCancelRequested:
    activity_id: int


@avro("everflow.history.ActivityCanceled")
@dataclass(frozen=True, slots=True)
class ActivityCanceled:
    activity_id: int
    attempt: int


@avro("everflow.history.WorkflowCancelRequested")
@dataclass(frozen=True, slots=True)
class WorkflowCancelRequested:
    reason: str = ""


@avro("everflow.history.WorkflowCanceled")
@dataclass(frozen=True, slots=True)
class WorkflowCanceled:
    note: str = ""


@avro("everflow.history.WorkflowTerminated")
@dataclass(frozen=True, slots=True)
class WorkflowTerminated:
    reason: str = ""


@avro("everflow.history.WorkflowTimedOut")
@dataclass(frozen=True, slots=True)
class WorkflowTimedOut:
    timeout_type: str


@avro("everflow.history.SignalReceived")
@dataclass(frozen=True, slots=True)
class SignalReceived:
    signal_name: str
    args: list[Payload] = field(default_factory=list)
    trace: dict[str, str] = field(default_factory=dict)


@avro("everflow.history.UpdateAccepted")
@dataclass(frozen=True, slots=True)
class UpdateAccepted:
    update_id: str
    update_name: str
    args: list[Payload] = field(default_factory=list)
    reply_to: str | None = None
    request_id: str = ""
    trace: dict[str, str] = field(default_factory=dict)


@avro("everflow.history.UpdateCompleted")
@dataclass(frozen=True, slots=True)
class UpdateCompleted:
    update_id: str
    result: Payload | None = None
    failure: Failure | None = None


@avro("everflow.history.WorkflowContinuedAsNew")
@dataclass(frozen=True, slots=True)
class WorkflowContinuedAsNew:
    new_run_id: str
    args: list[Payload] = field(default_factory=list)


@avro("everflow.history.ChildWorkflowInitiated")
@dataclass(frozen=True, slots=True)
class ChildWorkflowInitiated:
    seq: int
    workflow_id: str
    workflow_type: str
    task_queue: str
    args: list[Payload] = field(default_factory=list)
    parent_close_policy: ParentClosePolicy = ParentClosePolicy.TERMINATE
    source: SourceLocation | None = None
    trace: dict[str, str] = field(default_factory=dict)


@avro("everflow.history.ChildWorkflowStarted")
@dataclass(frozen=True, slots=True)
class ChildWorkflowStarted:
    seq: int
    run_id: str


@avro("everflow.history.ChildWorkflowStartFailed")
@dataclass(frozen=True, slots=True)
class ChildWorkflowStartFailed:
    seq: int
    message: str


@avro("everflow.history.ChildWorkflowClosed")
@dataclass(frozen=True, slots=True)
class ChildWorkflowClosed:
    seq: int
    status: str
    result: Payload | None = None
    failure: Failure | None = None


@avro("everflow.history.MarkerRecorded")
@dataclass(frozen=True, slots=True)
class MarkerRecorded:
    """The run took the new branch of a versioned change (`workflow.patched`)."""

    patch_id: str
    deprecated: bool = False


@avro("everflow.history.ActivityPaused")
@dataclass(frozen=True, slots=True)
class ActivityPaused:
    """An operator paused the activity: no new attempt starts, and a failed attempt waits
    for an operator instead of failing the activity."""

    activity_id: int
    reason: str = ""


@avro("everflow.history.ActivityUnpaused")
@dataclass(frozen=True, slots=True)
class ActivityUnpaused:
    activity_id: int
    reason: str = ""


@avro("everflow.history.ActivityReset")
@dataclass(frozen=True, slots=True)
class ActivityReset:
    """An operator asked for a new attempt now, with a fresh attempt budget."""

    activity_id: int
    reason: str = ""


@avro("everflow.history.WorkflowReset")
@dataclass(frozen=True, slots=True)
class WorkflowReset:
    """This run was made from events 1..to_event of another run (reset by an operator)."""

    from_run_id: str
    to_event: int
    reason: str = ""


@avro("everflow.history.SearchAttributesUpserted")
@dataclass(frozen=True, slots=True)
class SearchAttributesUpserted:
    """The run set or removed custom search attributes (`workflow.upsert_search_attributes`)."""

    attributes: list[SearchAttribute]


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
    | TimerCanceled
    | ActivityStarted
    | ActivityHeartbeatRecorded
    | ActivityCancelRequested
    | ActivityCanceled
    | WorkflowCancelRequested
    | WorkflowCanceled
    | WorkflowTerminated
    | WorkflowTimedOut
    | SignalReceived
    | UpdateAccepted
    | UpdateCompleted
    | WorkflowContinuedAsNew
    | ChildWorkflowInitiated
    | ChildWorkflowStarted
    | ChildWorkflowStartFailed
    | ChildWorkflowClosed
    | MarkerRecorded
    | ActivityPaused
    | ActivityUnpaused
    | ActivityReset
    | WorkflowReset
    | SearchAttributesUpserted
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
