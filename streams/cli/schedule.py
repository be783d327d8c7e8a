"""`everflow schedule create|list|describe|pause|unpause|trigger|update|delete`: schedules
(`streams.schedules`) from the command line, through the client's schedule methods."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.cli.common import EXIT_OK, SubParsers, add_group, connected
from streams.cli.output import Output, short_duration
from streams.cli.workflow_args import add_command, add_input_arguments, duration, inputs
from streams.client import Client
from streams.schedules import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from streams.schedules.model import schedule_to_json

ABOUT = (
    "A schedule starts a workflow at each due time of its spec (cron expressions, intervals, "
    "UTC), at most once per due time, even across worker crashes. It runs as the workflow "
    "'everflow-schedule:<ID>' on any worker."
)
OVERLAPS = [str(p) for p in ScheduleOverlapPolicy]


def add_parser(subparsers: SubParsers) -> None:
    """Register the `schedule` commands."""
    commands = add_group(subparsers, "schedule", "create and manage schedules", ABOUT)
    created = add_command(
        commands,
        "create",
        "create a schedule",
        schedule_create,
        "everflow schedule create nightly --workflow Report --task-queue reports \\\n"
        "      --workflow-id report --cron '0 2 * * *' -i '\"eu\"'",
        f"Create a schedule. {ABOUT} Each run's workflow ID is '<--workflow-id>-<due time>'.",
    )
    created.add_argument("schedule_id", metavar="SCHEDULE_ID")
    created.add_argument("--workflow", required=True, help="the workflow type to start")
    created.add_argument("--task-queue", required=True, help="the task queue of its runs")
    created.add_argument(
        "--workflow-id", required=True, help="prefix of the runs' IDs ('<prefix>-<due time>')"
    )
    add_input_arguments(created)
    add_spec_arguments(created)
    created.add_argument("--paused", action="store_true", help="create it paused")
    created.add_argument("--note", default="", help="why it is paused (with --paused)")

    add_command(
        commands,
        "list",
        "list the schedules",
        schedule_list,
        "everflow schedule list",
        "List the schedules the run index knows (a new one shows up within about a second).",
    )
    described = add_command(
        commands,
        "describe",
        "show a schedule: spec, policy, state, counts, next and recent runs",
        schedule_describe,
        "everflow schedule describe nightly",
    )
    described.add_argument("schedule_id", metavar="SCHEDULE_ID")
    deleted = add_command(
        commands,
        "delete",
        "delete a schedule (the runs it started go on)",
        schedule_delete,
        "everflow schedule delete nightly",
    )
    deleted.add_argument("schedule_id", metavar="SCHEDULE_ID")
    for name, summary in (
        ("pause", "pause a schedule: no due time starts a run until it is unpaused"),
        ("unpause", "unpause a schedule: due times from now on start runs again"),
    ):
        parser = add_command(
            commands, name, summary, schedule_pause, f"everflow schedule {name} nightly --note why"
        )
        parser.add_argument("schedule_id", metavar="SCHEDULE_ID")
        parser.add_argument("--note", default=f"{name}d from the command line")
        parser.set_defaults(verb=name)
    triggered = add_command(
        commands,
        "trigger",
        "start the schedule's action now (also while paused)",
        schedule_trigger,
        "everflow schedule trigger nightly --overlap allow_all",
    )
    triggered.add_argument("schedule_id", metavar="SCHEDULE_ID")
    triggered.add_argument(
        "--overlap", choices=OVERLAPS, help="overlap policy for this run (default: the schedule's)"
    )
    updated = add_command(
        commands,
        "update",
        "change a schedule's spec, policy or inputs",
        schedule_update,
        "everflow schedule update nightly --cron '30 2 * * *' --overlap buffer_one",
        "Change a schedule: the spec flags given replace its whole spec, a policy flag its "
        "setting, -i its inputs. Due times from now on follow the new spec.",
    )
    updated.add_argument("schedule_id", metavar="SCHEDULE_ID")
    add_input_arguments(updated)
    add_spec_arguments(updated, defaults=False)


def add_spec_arguments(parser: argparse.ArgumentParser, defaults: bool = True) -> None:
    """The spec and policy flags of `create` (and `update`, where unset means unchanged)."""
    parser.add_argument(
        "--cron",
        action="append",
        default=[],
        metavar="EXPR",
        help="a cron expression, 'minute hour day-of-month month day-of-week' (UTC), or "
        "@daily, @hourly ...; repeat for several",
    )
    parser.add_argument(
        "--interval",
        action="append",
        type=interval,
        default=[],
        metavar="EVERY[/OFFSET]",
        help="due every EVERY from the Unix epoch plus OFFSET (e.g. 1h/5m: five past each "
        "hour, 30s); repeat for several",
    )
    parser.add_argument("--start-at", type=instant, help="no due time before (ISO 8601)")
    parser.add_argument("--end-at", type=instant, help="no due time after (ISO 8601)")
    parser.add_argument(
        "--overlap",
        choices=OVERLAPS,
        default="skip" if defaults else None,
        help="while a run it started is running, a due time is: skipped (skip, the default), "
        "held until it closes (buffer_one, buffer_all), or started anyway (allow_all)",
    )
    parser.add_argument(
        "--catchup-window",
        type=duration,
        default=timedelta(days=365) if defaults else None,
        help="a due time found later than this (workers down) is skipped (default 365d)",
    )
    parser.add_argument(
        "--pause-on-failure",
        action=argparse.BooleanOptionalAction,
        default=False if defaults else None,
        help="pause the schedule when a run it started fails",
    )


def interval(text: str) -> ScheduleIntervalSpec:
    """argparse type: EVERY or EVERY/OFFSET, each a duration (30s, 5m, 1h, 1d)."""
    every, _, offset = text.partition("/")
    return ScheduleIntervalSpec(duration(every), duration(offset) if offset else timedelta(0))


def instant(text: str) -> datetime:
    """argparse type: an ISO 8601 instant; one without a zone is UTC."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _spec(args: argparse.Namespace, old: ScheduleSpec | None) -> ScheduleSpec:
    if old is not None and not (args.cron or args.interval or args.start_at or args.end_at):
        return old
    return ScheduleSpec(
        intervals=args.interval,
        cron_expressions=args.cron,
        start_at=args.start_at,
        end_at=args.end_at,
    )


def _policy(args: argparse.Namespace, old: SchedulePolicy) -> SchedulePolicy:
    changes: dict[str, Any] = {}
    if args.overlap is not None:
        changes["overlap"] = ScheduleOverlapPolicy(args.overlap)
    if args.catchup_window is not None:
        changes["catchup_window"] = args.catchup_window
    if args.pause_on_failure is not None:
        changes["pause_on_failure"] = args.pause_on_failure
    return replace(old, **changes)


def _with_client(args: argparse.Namespace, body: Callable[[Client], Awaitable[None]]) -> int:
    async def main() -> None:
        async with connected(args) as client:
            await body(client)

    asyncio.run(main())
    return EXIT_OK


def _on_schedule(
    args: argparse.Namespace, body: Callable[[ScheduleHandle], Awaitable[None]]
) -> int:
    async def on_handle(client: Client) -> None:
        await body(client.get_schedule_handle(args.schedule_id))

    return _with_client(args, on_handle)


def schedule_create(args: argparse.Namespace) -> int:
    """`everflow schedule create`."""
    action = ScheduleActionStartWorkflow(
        args.workflow, *inputs(args), id=args.workflow_id, task_queue=args.task_queue
    )
    schedule = Schedule(
        action,
        _spec(args, None),
        _policy(args, SchedulePolicy()),
        ScheduleState(args.paused, args.note),
    )

    async def create(client: Client) -> None:
        await client.create_schedule(args.schedule_id, schedule)
        Output.of(args).line(f"created schedule {args.schedule_id}")

    return _with_client(args, create)


def schedule_list(args: argparse.Namespace) -> int:
    """`everflow schedule list`: ID, workflow ID, task queue, current run's start."""
    out = Output.of(args)

    async def show(client: Client) -> None:
        entries = [e async for e in client.list_schedules()]
        if not out.text:
            for e in entries:
                out.json(
                    {
                        "id": e.id,
                        "workflow_id": e.workflow_id,
                        "task_queue": e.task_queue,
                        "run_started_at": e.run_started_at,
                    }
                )
            return
        rows = [(e.id, e.task_queue, e.workflow_id, out.time(e.run_started_at)) for e in entries]
        out.table(("SCHEDULE ID", "TASK QUEUE", "WORKFLOW ID", "RUN STARTED"), rows)

    return _with_client(args, show)


def schedule_describe(args: argparse.Namespace) -> int:
    """`everflow schedule describe`: the schedule as its run knows it."""
    out = Output.of(args)

    async def show(handle: ScheduleHandle) -> None:
        print_description(out, await handle.describe())

    return _on_schedule(args, show)


def print_description(out: Output, d: ScheduleDescription) -> None:
    if not out.text:
        out.json({**schedule_to_json(d.schedule), **_counts(d), "id": d.id})
        return
    s = d.schedule
    state = f"paused: {s.state.note}" if s.state.paused else "active"
    info = [
        ("ScheduleId", d.id),
        ("State", state),
        ("Action", f"start {s.action.workflow} on {s.action.task_queue} as {s.action.id}-<time>"),
        ("Spec", _spec_text(s.spec)),
        ("Overlap", str(s.policy.overlap)),
        ("CatchupWindow", short_duration(s.policy.catchup_window)),
        ("PauseOnFailure", str(s.policy.pause_on_failure).lower()),
        ("Created", out.time(d.created_at)),
        ("Actions", str(d.action_count)),
        ("MissedCatchupWindow", str(d.missed_catchup_window)),
        ("OverlapSkipped", str(d.overlap_skipped)),
        ("Buffered", str(d.buffered)),
        ("Running", ", ".join(d.running_workflow_ids) or "none"),
        ("NextRuns", ", ".join(out.time(t) for t in d.next_action_times) or "none"),
    ]
    out.line("Schedule")
    out.table(None, [(f"  {k}", v) for k, v in info])
    out.line()
    out.line(f"Recent Runs: {len(d.recent_actions)}")
    rows = [
        (f"  {a.workflow_id}", out.status(a.status.upper()), out.time(a.scheduled_at))
        for a in d.recent_actions
    ]
    if rows:
        out.table(("  WORKFLOW ID", "STATUS", "DUE"), rows)


def _counts(d: ScheduleDescription) -> dict[str, Any]:
    return {
        "action_count": d.action_count,
        "missed_catchup_window": d.missed_catchup_window,
        "overlap_skipped": d.overlap_skipped,
        "buffered": d.buffered,
        "running_workflow_ids": list(d.running_workflow_ids),
        "next_action_times": list(d.next_action_times),
        "recent_actions": [
            {
                "workflow_id": a.workflow_id,
                "status": a.status,
                "scheduled_at": a.scheduled_at,
                "started_at": a.started_at,
            }
            for a in d.recent_actions
        ],
        "created_at": d.created_at,
    }


def _spec_text(spec: ScheduleSpec) -> str:
    parts = [f"cron '{c}'" for c in spec.cron_expressions]
    for i in spec.intervals:
        offset = f" +{short_duration(i.offset)}" if i.offset else ""
        parts.append(f"every {short_duration(i.every)}{offset}")
    parts += [_calendar_text(c) for c in spec.calendars]
    if spec.start_at is not None:
        parts.append(f"from {spec.start_at.isoformat()}")
    if spec.end_at is not None:
        parts.append(f"until {spec.end_at.isoformat()}")
    return "; ".join(parts) + " (UTC)"


def _calendar_text(c: ScheduleCalendarSpec) -> str:
    return c.comment or "calendar"


def schedule_delete(args: argparse.Namespace) -> int:
    """`everflow schedule delete`."""

    async def delete(handle: ScheduleHandle) -> None:
        await handle.delete()
        Output.of(args).line(f"deleted schedule {args.schedule_id}")

    return _on_schedule(args, delete)


def schedule_pause(args: argparse.Namespace) -> int:
    """`everflow schedule pause|unpause`."""

    async def act(handle: ScheduleHandle) -> None:
        await (handle.pause if args.verb == "pause" else handle.unpause)(args.note)
        Output.of(args).line(f"{args.verb}d schedule {args.schedule_id}")

    return _on_schedule(args, act)


def schedule_trigger(args: argparse.Namespace) -> int:
    """`everflow schedule trigger`."""

    async def trigger(handle: ScheduleHandle) -> None:
        overlap = None if args.overlap is None else ScheduleOverlapPolicy(args.overlap)
        await handle.trigger(overlap)
        Output.of(args).line(f"triggered schedule {args.schedule_id}")

    return _on_schedule(args, trigger)


def schedule_update(args: argparse.Namespace) -> int:
    """`everflow schedule update`: the flags given replace their parts of the schedule."""

    def change(d: ScheduleDescription) -> Schedule:
        s, action = d.schedule, d.schedule.action
        given = inputs(args)
        if given:
            action = ScheduleActionStartWorkflow(
                action.workflow, *given, id=action.id, task_queue=action.task_queue
            )
        return Schedule(action, _spec(args, s.spec), _policy(args, s.policy), s.state)

    async def update(handle: ScheduleHandle) -> None:
        await handle.update(change)
        Output.of(args).line(f"updated schedule {args.schedule_id}")

    return _on_schedule(args, update)
