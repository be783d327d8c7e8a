"""Wire records other than commands and history events: failures, tasks, timers,
snapshots, completions and replies. Each mirrors a schema in `schemas/`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, overload

from streams.payload import Payload
from streams.retry import RetryPolicy
from streams.wire.avro import avro, avro_record

# classes of the user API that travel as records: registered here, left untouched
avro_record("everflow.Payload", Payload)


def retry_policy_to_avro(p: RetryPolicy) -> dict[str, Any]:
    """The `everflow.RetryPolicy` record of a policy (durations in milliseconds)."""
    return {
        "initial_interval_ms": millis(p.initial_interval),
        "backoff_coefficient": p.backoff_coefficient,
        "maximum_interval_ms": None if p.maximum_interval is None else millis(p.maximum_interval),
        "maximum_attempts": p.maximum_attempts,
        "non_retryable_error_types": list(p.non_retryable_error_types),
    }


def retry_policy_from_avro(r: dict[str, Any]) -> RetryPolicy:
    """The policy of an `everflow.RetryPolicy` record."""
    maximum = r["maximum_interval_ms"]
    return RetryPolicy(
        initial_interval=timedelta(milliseconds=r["initial_interval_ms"]),
        backoff_coefficient=r["backoff_coefficient"],
        maximum_interval=None if maximum is None else timedelta(milliseconds=maximum),
        maximum_attempts=r["maximum_attempts"],
        non_retryable_error_types=tuple(r["non_retryable_error_types"]),
    )


@overload
def millis(d: timedelta) -> int: ...
@overload
def millis(d: None) -> None: ...
def millis(d: timedelta | None) -> int | None:
    """A duration as the whole milliseconds the wire carries (None stays None)."""
    return None if d is None else int(d / timedelta(milliseconds=1))


avro_record("everflow.RetryPolicy", RetryPolicy, retry_policy_to_avro, retry_policy_from_avro)


class RunStatus(enum.StrEnum):
    """Where a run is in its life; every status but RUNNING is a close."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    TERMINATED = "TERMINATED"
    TIMED_OUT = "TIMED_OUT"
    CONTINUED_AS_NEW = "CONTINUED_AS_NEW"


class SearchAttributeType(enum.StrEnum):
    """The type of a custom search attribute: how the run index stores and compares it."""

    KEYWORD = "keyword"  # exact string: =, IN, STARTS_WITH
    TEXT = "text"  # words: = matches a word of it
    INT = "int"
    DOUBLE = "double"
    BOOL = "bool"
    DATETIME = "datetime"  # epoch milliseconds on the wire and in the index
    KEYWORD_LIST = "keyword_list"  # list of strings: = and IN mean "contains"


@avro("everflow.SearchAttribute")
@dataclass(frozen=True, slots=True)
class SearchAttribute:
    """One custom search attribute as it travels: its name, its type, and its value as JSON
    text (datetime as epoch milliseconds, keyword list as an array; `null` removes it)."""

    name: str
    type: SearchAttributeType
    value: str


@avro("everflow.SourceLocation")
@dataclass(frozen=True, slots=True)
class SourceLocation:
    """Where in the workflow's source a command was issued: file, line, function."""

    file: str
    line: int
    function: str


@avro("everflow.Failure")
@dataclass(frozen=True, slots=True)
class Failure:
    """Why something failed, as it travels: message, type name, stack, cause."""

    message: str
    type: str
    kind: str = "application"
    stack: str = ""
    non_retryable: bool = False
    timeout_type: str | None = None
    details: list[Payload] = field(default_factory=list)
    cause: Failure | None = None

    @property
    def is_canceled(self) -> bool:
        """Whether this failure is a cancellation (`kind` "canceled").

        Messages written before the wire settled on one spelling say "cancelled".
        """
        return self.kind in ("canceled", "cancelled")


@avro("everflow.ActivityTask")
@dataclass(frozen=True, slots=True)
class ActivityTask:
    """One attempt of an activity, for the runners of its task queue."""

    workflow_id: str
    run_id: str
    workflow_type: str
    activity_id: int
    activity_type: str
    attempt: int
    args: list[Payload]
    partition: int
    scheduled_at: int
    start_to_close_timeout_ms: int | None
    idempotency_key: str
    heartbeat_timeout_ms: int | None = None
    report_start: bool = False
    heartbeat_details: list[Payload] = field(default_factory=list)


class TimerKind(enum.StrEnum):
    USER_TIMER = "USER_TIMER"
    ACTIVITY_RETRY = "ACTIVITY_RETRY"
    ACTIVITY_START_TO_CLOSE = "ACTIVITY_START_TO_CLOSE"
    ACTIVITY_SCHEDULE_TO_START = "ACTIVITY_SCHEDULE_TO_START"
    ACTIVITY_SCHEDULE_TO_CLOSE = "ACTIVITY_SCHEDULE_TO_CLOSE"
    ACTIVITY_HEARTBEAT = "ACTIVITY_HEARTBEAT"
    WORKFLOW_RUN_TIMEOUT = "WORKFLOW_RUN_TIMEOUT"
    WORKFLOW_EXECUTION_TIMEOUT = "WORKFLOW_EXECUTION_TIMEOUT"


@avro("everflow.Timer")
@dataclass(frozen=True, slots=True)
class Timer:
    """A pending durable timer (compacted `timers` topic)."""

    workflow_id: str
    run_id: str
    kind: TimerKind
    seq: int
    attempt: int
    fire_at: int

    @property
    def key(self) -> str:
        return timer_key(self.workflow_id, self.run_id, self.kind, self.seq)


_TAGS = {
    TimerKind.USER_TIMER: "t",
    TimerKind.ACTIVITY_RETRY: "r",
    TimerKind.ACTIVITY_START_TO_CLOSE: "a",
    TimerKind.ACTIVITY_SCHEDULE_TO_START: "q",
    TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE: "c",
    TimerKind.ACTIVITY_HEARTBEAT: "h",
    TimerKind.WORKFLOW_RUN_TIMEOUT: "w",
    TimerKind.WORKFLOW_EXECUTION_TIMEOUT: "x",
}


def timer_key(workflow_id: str, run_id: str, kind: TimerKind, seq: int) -> str:
    """The compaction key of a timer: one live record per timer."""
    return f"{workflow_id}\x00{run_id}\x00{_TAGS[kind]}{seq}"


@avro("everflow.Snapshot")
@dataclass(frozen=True, slots=True)
class Snapshot:
    """A run's resumable state (its history events, each already encoded), or a partition's
    checkpoint (empty workflow ID; history before `history_offset` is in snapshots)."""

    workflow_id: str
    run_id: str
    closed: bool
    events: list[bytes]
    first_offset: int = -1
    history_offset: int = -1
    chunk_count: int = 0


@avro("everflow.Completion")
@dataclass(frozen=True, slots=True)
class Completion:
    """One record per closed run, for downstream consumers."""

    workflow_id: str
    run_id: str
    workflow_type: str
    status: RunStatus
    result: Payload | None
    failure: Failure | None
    start_time: int
    close_time: int
    history_length: int


@avro("everflow.reply.StartAccepted")
@dataclass(frozen=True, slots=True)
class StartAccepted:
    run_id: str


class RejectionCode(enum.StrEnum):
    """Why a processor refused a request: the `code` of Rejected and StartRejected.

    The field stays a string on the wire, so a client reads a code newer than itself."""

    ALREADY_STARTED = "already_started"  # StartRejected: the ID is running, or may not rerun
    NOT_FOUND = "not_found"  # no run of the workflow ID is known
    NOT_RUNNING = "not_running"  # the run closed
    INVALID_ARGUMENT = "invalid_argument"
    UNKNOWN_SIGNAL = "unknown_signal"
    UNKNOWN_QUERY = "unknown_query"
    QUERY_FAILED = "query_failed"
    UNKNOWN_UPDATE = "unknown_update"
    UPDATE_FAILED = "update_failed"
    NOT_BLOCKED = "not_blocked"  # unblock: the run is not blocked
    STILL_BLOCKED = "still_blocked"  # unblock: the code deployed still does not fit
    SIGNAL_LIMIT = "signal_limit"  # the run has received the maximum number of signals
    READ_ONLY = "read_only"  # a query or validator tried to schedule work
    UPDATE_LIMIT = "update_limit"  # the run has the maximum of updates in flight


@avro("everflow.reply.StartRejected")
@dataclass(frozen=True, slots=True)
class StartRejected:
    code: str  # a RejectionCode
    message: str
    existing_run_id: str | None = None


@avro("everflow.reply.RunDescription")
@dataclass(frozen=True, slots=True)
class RunDescription:
    """What a processor knows of a run, for describe/result/history."""

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    status: RunStatus
    blocked: Failure | None
    start_time: int
    close_time: int | None
    history_length: int
    result: Payload | None
    failure: Failure | None
    history: list[bytes] = field(default_factory=list)
    first_offset: int = -1  # of the run's first event in its history partition


@avro("everflow.reply.NotFound")
@dataclass(frozen=True, slots=True)
class NotFound:
    message: str


@avro("everflow.reply.ActivityCancelRequest")
@dataclass(frozen=True, slots=True)
class ActivityCancelRequest:
    """To a runner: the workflow asks the running attempt to stop."""

    workflow_id: str
    run_id: str
    activity_id: int
    attempt: int


@avro("everflow.reply.Rejected")
@dataclass(frozen=True, slots=True)
class Rejected:
    """The request cannot be done in the run's state (e.g. the run is not running)."""

    code: str  # a RejectionCode
    message: str


@avro("everflow.reply.QueryResult")
@dataclass(frozen=True, slots=True)
class QueryResult:
    result: Payload


@avro("everflow.reply.UpdateResult")
@dataclass(frozen=True, slots=True)
class UpdateResult:
    update_id: str
    result: Payload | None = None
    failure: Failure | None = None


ReplyBody = (
    StartAccepted
    | StartRejected
    | RunDescription
    | NotFound
    | ActivityCancelRequest
    | Rejected
    | QueryResult
    | UpdateResult
)


@avro("everflow.Reply")
@dataclass(frozen=True, slots=True)
class Reply:
    """An answer to a client request, keyed by the client's ID."""

    client_id: str
    request_id: str
    body: ReplyBody


@avro("everflow.ProcessorStats")
@dataclass(frozen=True, slots=True)
class ProcessorStats:
    """A workflow processor's counters since it started."""

    transactions: int = 0  # committed
    commands: int = 0  # read
    events: int = 0  # history events written
    timers_fired: int = 0
    history_bytes: int = 0
    snapshot_bytes: int = 0
    checkpoints: int = 0
    runs_expired: int = 0  # closed runs past their retention, tombstoned
    cache_loads: int = 0  # runs read back from their snapshots (owned partitions)
    cache_evictions: int = 0  # runs evicted from the run cache (owned partitions)


@avro("everflow.RestoreReport")
@dataclass(frozen=True, slots=True)
class RestoreReport:
    """How the restore of one partition went."""

    partition: int
    runs_open: int  # open runs rebuilt
    runs_indexed: int  # runs known: open, and closed within retention
    snapshot_records: int
    snapshot_bytes: int
    tail_records: int  # history records read after the checkpoint watermark
    tail_bytes: int
    timers: int  # pending timers read
    waited_s: float  # waited for a previous owner's open transaction
    seconds: float  # the whole restore


@avro("everflow.WorkerStatus")
@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """A workflow processor's periodic report about itself (the `workers` topic)."""

    instance_id: str
    host: str
    pid: int
    time: int
    partitions: list[int]
    runs_loaded: int
    runs_known: int
    counters: ProcessorStats = field(default_factory=ProcessorStats)
    restore_reports: list[RestoreReport] = field(default_factory=list)
