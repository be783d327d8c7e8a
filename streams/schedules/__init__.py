"""Schedules: start a workflow on a calendar, a cron expression or an interval.

    from streams.schedules import (
        Schedule, ScheduleActionStartWorkflow, ScheduleIntervalSpec, ScheduleSpec,
    )

    handle = await client.create_schedule(
        "nightly-report",
        Schedule(
            action=ScheduleActionStartWorkflow(Report.run, "eu", id="report", task_queue="q"),
            spec=ScheduleSpec(cron_expressions=["0 2 * * *"]),
        ),
    )
    await handle.pause("release freeze")

A schedule runs as a workflow (`everflow.Schedule`, ID `everflow-schedule:<id>`) that every
worker hosts: durable like any run, it starts each due time's run exactly once across
worker crashes (`scheduler`). Times are UTC.

Modules: `spec` (calendars, intervals, cron, the next due time: pure), `model` (the
schedule, its policy and description, as JSON too), `scheduler` (the workflow), `handle`
(the client's side). May import the user API (`streams.workflow`, errors, options); never the
engine.
"""

from streams.schedules.handle import ScheduleHandle, ScheduleIterator
from streams.schedules.model import (
    Schedule,
    ScheduleActionResult,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleListEntry,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleState,
)
from streams.schedules.spec import (
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleRange,
    ScheduleSpec,
)

__all__ = [
    "Schedule",
    "ScheduleActionResult",
    "ScheduleActionStartWorkflow",
    "ScheduleCalendarSpec",
    "ScheduleDescription",
    "ScheduleHandle",
    "ScheduleIntervalSpec",
    "ScheduleIterator",
    "ScheduleListEntry",
    "ScheduleOverlapPolicy",
    "SchedulePolicy",
    "ScheduleRange",
    "ScheduleSpec",
    "ScheduleState",
]
