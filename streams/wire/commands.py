"""Commands: requests on the `commands` topic, keyed by workflow ID (imperative names)."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.options import IdConflictPolicy, IdReusePolicy
from streams.payload import Payload
from streams.wire.avro import avro
from streams.wire.records import Failure, SearchAttribute


@avro("everflow.command.StartWorkflow")
@dataclass(frozen=True, slots=True)
class StartWorkflow:
    run_id: str
    workflow_type: str
    task_queue: str
    args: list[Payload] = field(default_factory=list)
    reply_to: str | None = None
    execution_timeout_ms: int | None = None
    run_timeout_ms: int | None = None
    start_signal: str | None = None
    start_signal_args: list[Payload] = field(default_factory=list)
    id_reuse_policy: IdReusePolicy = IdReusePolicy.ALLOW_DUPLICATE
    id_conflict_policy: IdConflictPolicy = IdConflictPolicy.FAIL
    parent_workflow_id: str | None = None
    parent_run_id: str | None = None
    parent_seq: int = 0
    search_attributes: list[SearchAttribute] = field(default_factory=list)


@avro("everflow.command.DescribeWorkflow")
@dataclass(frozen=True, slots=True)
class DescribeWorkflow:
    reply_to: str
    run_id: str | None = None
    include_history: bool = False


@avro("everflow.command.CompleteActivity")
@dataclass(frozen=True, slots=True)
class CompleteActivity:
    run_id: str
    activity_id: int
    attempt: int
    result: Payload


@avro("everflow.command.FailActivity")
@dataclass(frozen=True, slots=True)
class FailActivity:
    run_id: str
    activity_id: int
    attempt: int
    failure: Failure


@avro("everflow.command.CancelWorkflow")
@dataclass(frozen=True, slots=True)
class CancelWorkflow:
    reason: str = ""
    reply_to: str | None = None


@avro("everflow.command.TerminateWorkflow")
@dataclass(frozen=True, slots=True)
class TerminateWorkflow:
    reason: str = ""
    reply_to: str | None = None


@avro("everflow.command.StartActivity")
@dataclass(frozen=True, slots=True)
class StartActivity:
    """A runner picked an attempt up (sent only when a schedule-to-start timeout is set)."""

    run_id: str
    activity_id: int
    attempt: int


@avro("everflow.command.HeartbeatActivity")
@dataclass(frozen=True, slots=True)
class HeartbeatActivity:
    run_id: str
    activity_id: int
    attempt: int
    details: list[Payload] = field(default_factory=list)
    reply_to: str | None = None


@avro("everflow.command.SignalWorkflow")
@dataclass(frozen=True, slots=True)
class SignalWorkflow:
    signal_name: str
    args: list[Payload] = field(default_factory=list)
    run_id: str | None = None
    reply_to: str | None = None


@avro("everflow.command.QueryWorkflow")
@dataclass(frozen=True, slots=True)
class QueryWorkflow:
    query_name: str
    args: list[Payload]
    run_id: str | None
    reply_to: str


@avro("everflow.command.UpdateWorkflow")
@dataclass(frozen=True, slots=True)
class UpdateWorkflow:
    update_name: str
    args: list[Payload]
    update_id: str
    reply_to: str


@avro("everflow.command.ReportChildStarted")
@dataclass(frozen=True, slots=True)
class ReportChildStarted:
    parent_run_id: str
    seq: int
    child_run_id: str


@avro("everflow.command.ReportChildStartFailed")
@dataclass(frozen=True, slots=True)
class ReportChildStartFailed:
    parent_run_id: str
    seq: int
    message: str


@avro("everflow.command.ReportChildClosed")
@dataclass(frozen=True, slots=True)
class ReportChildClosed:
    parent_run_id: str
    seq: int
    child_run_id: str
    status: str
    result: Payload | None = None
    failure: Failure | None = None


@avro("everflow.command.ControlActivity")
@dataclass(frozen=True, slots=True)
class ControlActivity:
    """Operator: `retry` (an attempt now, fresh budget), `pause` or `unpause` an activity."""

    activity_id: int
    action: str
    reason: str = ""
    reply_to: str | None = None


@avro("everflow.command.ResetWorkflow")
@dataclass(frozen=True, slots=True)
class ResetWorkflow:
    """Operator: a new run from the current run's events 1..to_event."""

    to_event: int
    new_run_id: str
    reason: str = ""
    reply_to: str | None = None


@avro("everflow.command.UnblockWorkflow")
@dataclass(frozen=True, slots=True)
class UnblockWorkflow:
    """Operator: replay a blocked run with the code deployed now; resume it if it fits."""

    reason: str = ""
    reply_to: str | None = None


CommandBody = (
    StartWorkflow
    | DescribeWorkflow
    | CompleteActivity
    | FailActivity
    | CancelWorkflow
    | TerminateWorkflow
    | StartActivity
    | HeartbeatActivity
    | SignalWorkflow
    | QueryWorkflow
    | UpdateWorkflow
    | ReportChildStarted
    | ReportChildStartFailed
    | ReportChildClosed
    | ControlActivity
    | ResetWorkflow
    | UnblockWorkflow
)


@avro("everflow.Command")
@dataclass(frozen=True, slots=True)
class Command:
    """A request to the workflow processors; `command_id` de-duplicates retries."""

    command_id: str
    workflow_id: str
    sent_at: int
    body: CommandBody
