"""What workflow code decides to do: the records a `WorkflowInstance` step returns.

Each decision becomes a history event (`processors.run.state` records it, or on replay
checks it against the event recorded); they are not `commands`-topic requests (those are
`streams.wire.commands`). `Step` is one event's outcome: its decisions, or why the code
cannot go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from processors.workflow_code.handlers import CompleteUpdate
from processors.workflow_code.patches import RecordMarker
from streams._runtime import ActivityOptions, ChildOptions
from streams.payload import Payload
from streams.wire.records import Failure, SearchAttribute, SourceLocation


@dataclass(frozen=True, slots=True)
class ScheduleActivity:
    activity_id: int
    options: ActivityOptions
    args: list[Payload]
    location: str
    source: SourceLocation | None = None  # recorded on the event (location is for errors)


@dataclass(frozen=True, slots=True)
class StartTimer:
    timer_id: int
    delay: timedelta
    location: str
    source: SourceLocation | None = None


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer_id: int
    location: str = ""


@dataclass(frozen=True, slots=True)
class RequestCancelActivity:
    activity_id: int
    location: str = ""


@dataclass(frozen=True, slots=True)
class CancelRun:
    location: str = ""


@dataclass(frozen=True, slots=True)
class StartChild:
    seq: int
    options: ChildOptions
    args: list[Payload]
    location: str = ""
    source: SourceLocation | None = None


@dataclass(frozen=True, slots=True)
class UpsertSearchAttributes:
    attributes: list[SearchAttribute]
    location: str = ""


@dataclass(frozen=True, slots=True)
class ContinueAsNewRun:
    args: list[Payload]
    location: str = ""


@dataclass(frozen=True, slots=True)
class CompleteRun:
    result: Payload
    location: str = ""


@dataclass(frozen=True, slots=True)
class FailRun:
    failure: Failure
    location: str = ""


# what the workflow code decides to do, recorded as history events (not `commands`-topic
# requests: those are `streams.wire.commands`)
Decision = (
    ScheduleActivity
    | StartTimer
    | CancelTimer
    | RequestCancelActivity
    | CompleteRun
    | FailRun
    | CancelRun
    | CompleteUpdate
    | ContinueAsNewRun
    | StartChild
    | RecordMarker
    | UpsertSearchAttributes
)


@dataclass(slots=True)
class Step:
    """What one event made the code do: its decisions, or why it cannot go on."""

    decisions: list[Decision] = field(default_factory=list)
    blocked: Failure | None = None
