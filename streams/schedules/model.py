"""What a schedule is (spec, action, policy, state) and what describing one tells; each as
a plain JSON document too, the form the schedule's run receives and answers in."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from streams.errors import ScheduleSpecError
from streams.schedules.spec import (
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleRange,
    ScheduleSpec,
    check_spec,
)
from streams.workflow import WorkflowDefinition

WORKFLOW_ID_PREFIX = "everflow-schedule:"
"""A schedule `id` runs as the workflow `everflow-schedule:<id>` (an ID prefix reserved)."""

SCHEDULE_WORKFLOW = "everflow.Schedule"
"""The workflow type of every schedule's run, registered in every worker."""


class ScheduleOverlapPolicy(enum.StrEnum):
    """What a due time does while an action the schedule started is still running."""

    SKIP = "skip"
    """nothing: the due time is skipped (counted as `overlap_skipped`); the default"""
    BUFFER_ONE = "buffer_one"
    """start once the running one closes; at most one waits, others are skipped"""
    BUFFER_ALL = "buffer_all"
    """start once the running one closes, every one of them in turn"""
    ALLOW_ALL = "allow_all"
    """start at once, beside the running ones"""


@dataclass(frozen=True, slots=True, init=False)
class ScheduleActionStartWorkflow:
    """Start a run of `workflow` (a @workflow.defn class, its run method, or a type name)
    with `args` on `task_queue`. Each run's ID is `<id>-<due time>`, the due time in
    ISO 8601 UTC to the second (`report-2026-12-03T09:00:00Z`; a triggered run's to the
    millisecond), so a due time starts at most one run."""

    workflow: str
    args: tuple[Any, ...]
    id: str
    task_queue: str

    def __init__(
        self,
        workflow: Any,
        *arg_values: Any,
        id: str,
        task_queue: str,
        args: Sequence[Any] | None = None,
    ) -> None:
        # the arguments as positionals, or as `args=[...]` (Temporal's spelling, and how
        # dataclasses.replace passes them); not both
        if args is not None and arg_values:
            raise TypeError("give the workflow's arguments as positionals or as args=, not both")
        name = workflow if isinstance(workflow, str) else WorkflowDefinition.of(workflow).name
        object.__setattr__(self, "workflow", name)
        object.__setattr__(self, "args", tuple(arg_values if args is None else args))
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "task_queue", task_queue)


@dataclass(frozen=True, slots=True)
class SchedulePolicy:
    """How due times turn into runs: `overlap` while one runs; `catchup_window`: a due time
    found more than this late (the workers were down) is skipped (counted as
    `missed_catchup_window`), a later one still starts; `pause_on_failure`: pause the schedule
    when a run it started fails."""

    overlap: ScheduleOverlapPolicy = ScheduleOverlapPolicy.SKIP
    catchup_window: timedelta = timedelta(days=365)
    pause_on_failure: bool = False


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """Whether the schedule is paused, and a note saying why."""

    paused: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule: what to start (`action`), when (`spec`), how (`policy`), and whether it
    is paused (`state`)."""

    action: ScheduleActionStartWorkflow
    spec: ScheduleSpec
    policy: SchedulePolicy = SchedulePolicy()
    state: ScheduleState = ScheduleState()


@dataclass(frozen=True, slots=True)
class ScheduleActionResult:
    """One run a schedule started: when it was due, when it started, and how it ended
    (`running`, `completed`, `failed`, `canceled`, `terminated`, `timed_out`, or
    `start_failed` when the run could not start)."""

    scheduled_at: datetime
    started_at: datetime
    workflow_id: str
    status: str


@dataclass(frozen=True, slots=True)
class ScheduleDescription:
    """A schedule as its run knows it now."""

    id: str
    schedule: Schedule
    recent_actions: Sequence[ScheduleActionResult]
    running_workflow_ids: Sequence[str]
    next_action_times: Sequence[datetime]
    action_count: int
    missed_catchup_window: int
    overlap_skipped: int
    buffered: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ScheduleListEntry:
    """A schedule as the run index lists it (`client.list_schedules()`): its ID, the
    workflow ID it runs as, its task queue, and when its current run started (a schedule
    continues as new every few dozen actions, to keep its history short)."""

    id: str
    workflow_id: str
    task_queue: str
    run_started_at: datetime


def created_carry(created_at: datetime) -> dict[str, Any]:
    """The state a new schedule's run starts from: created at `created_at`, nothing taken."""
    at = created_at.isoformat()
    return {
        "cursor": at,
        "created_at": at,
        "recent": [],
        "action_count": 0,
        "missed": 0,
        "skipped": 0,
    }


def schedule_id_of(workflow_id: str) -> str:
    return workflow_id.removeprefix(WORKFLOW_ID_PREFIX)


def check_schedule(schedule: Schedule) -> None:
    """Raises ScheduleSpecError for a schedule that cannot run (see `check_spec`)."""
    check_spec(schedule.spec)
    if schedule.policy.catchup_window < timedelta(seconds=1):
        raise ScheduleSpecError(
            f"catchup_window={schedule.policy.catchup_window} is under one second"
        )
    ScheduleOverlapPolicy(schedule.policy.overlap)
    if not schedule.action.id or not schedule.action.task_queue:
        raise ScheduleSpecError("the schedule's action needs an id and a task_queue")


# ---- as JSON ------------------------------------------------------------------------------
def schedule_to_json(schedule: Schedule) -> dict[str, Any]:
    a, s, p = schedule.action, schedule.spec, schedule.policy
    return {
        "action": {
            "workflow": a.workflow,
            "args": list(a.args),
            "id": a.id,
            "task_queue": a.task_queue,
        },
        "spec": {
            "calendars": [_calendar_to_json(c) for c in s.calendars],
            "intervals": [
                {"every_ms": _ms(i.every), "offset_ms": _ms(i.offset)} for i in s.intervals
            ],
            "cron_expressions": list(s.cron_expressions),
            "start_at": _time_to_json(s.start_at),
            "end_at": _time_to_json(s.end_at),
        },
        "policy": {
            "overlap": str(p.overlap),
            "catchup_window_ms": _ms(p.catchup_window),
            "pause_on_failure": p.pause_on_failure,
        },
        "state": {"paused": schedule.state.paused, "note": schedule.state.note},
    }


def schedule_from_json(doc: dict[str, Any]) -> Schedule:
    a, s, p, st = doc["action"], doc["spec"], doc["policy"], doc["state"]
    return Schedule(
        action=ScheduleActionStartWorkflow(
            a["workflow"], *a["args"], id=a["id"], task_queue=a["task_queue"]
        ),
        spec=ScheduleSpec(
            calendars=tuple(_calendar_from_json(c) for c in s["calendars"]),
            intervals=tuple(
                ScheduleIntervalSpec(
                    timedelta(milliseconds=i["every_ms"]), timedelta(milliseconds=i["offset_ms"])
                )
                for i in s["intervals"]
            ),
            cron_expressions=tuple(s["cron_expressions"]),
            start_at=time_from_json(s["start_at"]),
            end_at=time_from_json(s["end_at"]),
        ),
        policy=SchedulePolicy(
            ScheduleOverlapPolicy(p["overlap"]),
            timedelta(milliseconds=p["catchup_window_ms"]),
            p["pause_on_failure"],
        ),
        state=ScheduleState(st["paused"], st["note"]),
    )


_CALENDAR_FIELDS = ("second", "minute", "hour", "day_of_month", "month", "day_of_week")


def _calendar_to_json(c: ScheduleCalendarSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {
        name: [[r.start, r.end, r.step] for r in getattr(c, name)] for name in _CALENDAR_FIELDS
    }
    doc["comment"] = c.comment
    return doc


def _calendar_from_json(doc: dict[str, Any]) -> ScheduleCalendarSpec:
    fields = {
        name: tuple(ScheduleRange(r[0], r[1], r[2]) for r in doc[name]) for name in _CALENDAR_FIELDS
    }
    return ScheduleCalendarSpec(**fields, comment=doc.get("comment", ""))


def _ms(span: timedelta) -> int:
    return span // timedelta(milliseconds=1)


def _time_to_json(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def time_from_json(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def description_from_json(schedule_id: str, doc: dict[str, Any]) -> ScheduleDescription:
    """The describe query's answer as a ScheduleDescription."""
    return ScheduleDescription(
        id=schedule_id,
        schedule=schedule_from_json(doc["schedule"]),
        recent_actions=tuple(
            ScheduleActionResult(
                datetime.fromisoformat(r["scheduled_at"]),
                datetime.fromisoformat(r["started_at"]),
                r["workflow_id"],
                r["status"],
            )
            for r in doc["recent_actions"]
        ),
        running_workflow_ids=tuple(doc["running_workflow_ids"]),
        next_action_times=tuple(datetime.fromisoformat(t) for t in doc["next_action_times"]),
        action_count=doc["action_count"],
        missed_catchup_window=doc["missed_catchup_window"],
        overlap_skipped=doc["overlap_skipped"],
        buffered=doc["buffered"],
        created_at=datetime.fromisoformat(doc["created_at"]),
    )
