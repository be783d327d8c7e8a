"""`everflow workflow describe|show|result`: look at one run."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from typing import Any

from streams.cli.common import SubParsers, connected
from streams.cli.output import Output, dumps
from streams.cli.workflow_args import add_command, add_run_arguments, workflow_id
from streams.cli.workflow_history import (
    EVENT_HEADERS,
    event_row,
    follow,
    paused_activities,
    pending_activities,
    pending_children,
    print_event,
    print_event_header,
)
from streams.client import Client
from streams.visibility.records import PendingActivity
from streams.wire.events import HistoryEvent
from streams.wire.history_json import event_to_json
from streams.wire.records import RunDescription


def add_parsers(commands: SubParsers) -> None:
    """Register `describe`, `show` and `result`."""
    describe = add_command(
        commands,
        "describe",
        "print a run's status, times, result or failure, pending activities and children",
        workflow_describe,
        "everflow workflow describe -w order-42        # text sections\n"
        "  everflow workflow describe order-42 -o json  # one JSON object",
    )
    add_run_arguments(describe)
    show = add_command(
        commands,
        "show",
        "print a run's history events: ID, time, type and details (or JSON)",
        workflow_show,
        "everflow workflow show -w order-42 --follow   # until the run closes\n"
        "  everflow workflow show order-42 -o jsonl      # one JSON object per event",
    )
    add_run_arguments(show)
    show.add_argument(
        "-f", "--follow", action="store_true", help="print new events as they come until it closes"
    )
    result = add_command(
        commands,
        "result",
        "wait for a run's result and print it as JSON (exit 1 if it did not complete)",
        workflow_result,
        "everflow workflow result -w order-42",
    )
    add_run_arguments(result)


def workflow_describe(args: argparse.Namespace) -> int:
    """`everflow workflow describe`: the run's state, its pending activities and children."""
    out = Output.of(args)

    async def describe() -> None:
        async with connected(args) as client:
            handle = client.get_workflow_handle(workflow_id(args), args.run_id)
            d = await handle.describe()
            pinned = client.get_workflow_handle(d.workflow_id, d.run_id)
            events = await pinned.fetch_history()
        activities = pending_activities(events)
        children = [dataclasses.asdict(c) for c in pending_children(events)]
        paused = paused_activities(events)
        if not out.text:
            out.json(description_json(client, d, activities, children, paused))
            return
        print_description(out, client, d, activities, paused)
        out.line()
        out.line(f"Pending Child Workflows: {len(children)}")
        if children:
            rows = [[f"  {c['workflow_id']}", c["workflow_type"], c["run_id"] or "(starting)"]
                    for c in children]  # fmt: skip
            out.table(("  WORKFLOW ID", "TYPE", "RUN ID"), rows)

    asyncio.run(describe())
    return 0


def description_json(
    client: Client,
    d: RunDescription,
    activities: list[PendingActivity],
    children: list[dict[str, Any]],
    paused: set[int],
) -> dict[str, Any]:
    """What `describe -o json` prints: the run's fields, its pending activities (with
    `paused`) and children."""
    conv = client.converter
    return {
        "workflow_id": d.workflow_id,
        "run_id": d.run_id,
        "type": d.workflow_type,
        "task_queue": d.task_queue,
        "status": d.status.value,
        "blocked": d.blocked.message if d.blocked else None,
        "start_time": d.start_time,
        "close_time": d.close_time,
        "history_length": d.history_length,
        "result": conv.from_payload(d.result) if d.result else None,
        "failure": d.failure.message if d.failure else None,
        "pending_activities": [
            {**dataclasses.asdict(a), "paused": a.activity_id in paused} for a in activities
        ],
        "pending_children": children,
    }


def print_description(
    out: Output,
    client: Client,
    d: RunDescription,
    activities: list[PendingActivity],
    paused: set[int],
) -> None:
    """The Execution Info and Pending Activities sections, as aligned `name value` lines."""
    info = [
        ("WorkflowId", d.workflow_id),
        ("RunId", d.run_id),
        ("Type", d.workflow_type),
        ("TaskQueue", d.task_queue),
        ("Status", out.status(d.status.value)),
        ("StartTime", out.time(d.start_time)),
        ("CloseTime", out.time(d.close_time)),
        ("HistoryLength", str(d.history_length)),
    ]
    if d.result is not None:
        info.append(("Result", dumps(client.converter.from_payload(d.result))))
    if d.failure is not None:
        info.append(("Failure", f"{d.failure.type}: {d.failure.message}"))
    if d.blocked is not None:
        info.append(("Blocked", d.blocked.message))
    out.line("Execution Info")
    out.table(None, [(f"  {k}", v) for k, v in info])
    out.line()
    out.line(f"Pending Activities: {len(activities)}")
    for a in activities:
        of = f"{a.attempt} of {a.maximum_attempts}" if a.maximum_attempts else f"{a.attempt}"
        rows = [
            ("ActivityId", str(a.activity_id)),
            ("ActivityType", a.activity_type),
            ("Attempt", of if a.maximum_attempts else f"{of} (unlimited)"),
            ("LastFailure", a.last_failure or ""),
            ("NextRetry", out.time(a.next_retry_time)),
        ]
        if a.activity_id in paused:
            rows.append(("Paused", "yes: `everflow activity unpause` resumes it"))
        out.table(None, [(f"  {k}", v) for k, v in rows])


def workflow_show(args: argparse.Namespace) -> int:
    """`everflow workflow show`: the run's history (as it grows, with `--follow`)."""
    out = Output.of(args)

    async def show() -> None:
        async with connected(args) as client:
            wid = workflow_id(args)
            if args.follow:
                if out.format == "json":
                    events: list[HistoryEvent] = []
                    await follow(client, wid, args.run_id, events.append)
                    out.json([event_to_json(e, client.converter) for e in events])
                    return
                print_event_header(out)
                await follow(client, wid, args.run_id, lambda e: print_event(e, client, out))
                return
            events = await client.get_workflow_handle(wid, args.run_id).fetch_history()
            if out.text:
                out.table(EVENT_HEADERS, [event_row(e, client, out) for e in events])
            elif out.format == "json":
                out.json([event_to_json(e, client.converter) for e in events])
            else:
                for e in events:
                    out.json(event_to_json(e, client.converter))

    asyncio.run(show())
    return 0


def workflow_result(args: argparse.Namespace) -> int:
    """`everflow workflow result`: wait for the run's result; print it as JSON. A run that
    closed otherwise raises WorkflowFailureError (exit code 1)."""
    out = Output.of(args)

    async def result() -> None:
        async with connected(args) as client:
            value = await client.get_workflow_handle(workflow_id(args), args.run_id).result()
        out.json(value)

    asyncio.run(result())
    return 0
