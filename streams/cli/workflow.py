"""`everflow workflow describe|result|show|reset|unblock`: look at one run, or repair it."""

from __future__ import annotations

import argparse
import json

from streams.cli.common import (
    Action,
    SubParsers,
    add_connection_arguments,
    add_group,
    add_subparser,
    on_run,
)
from streams.client import WorkflowHandle
from streams.wire.history_json import event_to_json


def add_parser(subparsers: SubParsers) -> None:
    """Register the `workflow` subcommands."""
    workflow_commands = add_group(subparsers, "workflow", "look at and repair workflow runs")
    looks: tuple[tuple[str, Action, str], ...] = (
        ("describe", workflow_describe, "print the status, times, result or failure of a run"),
        ("result", workflow_result, "wait for a run's result and print it"),
        ("show", workflow_show, "print a run's history events, as JSON lines"),
    )
    for name, run, summary in looks:
        parser = add_subparser(workflow_commands, name, summary)
        add_connection_arguments(parser)
        parser.add_argument("workflow_id")
        parser.add_argument("--run-id")
        parser.set_defaults(run=run)

    reset = add_subparser(
        workflow_commands, "reset", "start a new run from events 1..N of the current one"
    )
    add_connection_arguments(reset)
    reset.add_argument("workflow_id")
    reset.add_argument("--to-event", type=int, required=True)
    reset.add_argument("--reason", default="", help="recorded in the new run's history")
    reset.set_defaults(run=workflow_reset)

    unblock = add_subparser(
        workflow_commands,
        "unblock",
        "replay a blocked run with the code deployed now; resume it if it fits",
    )
    add_connection_arguments(unblock)
    unblock.add_argument("workflow_id")
    unblock.add_argument("--reason", default="")
    unblock.set_defaults(run=workflow_unblock)


def workflow_describe(args: argparse.Namespace) -> int:
    """`everflow workflow describe`: the run's description, as a JSON object."""

    async def describe(handle: WorkflowHandle) -> None:
        d = await handle.describe()
        conv = handle.client.converter
        print(
            json.dumps(
                {
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
                },
                indent=2,
                default=str,
            )
        )

    return on_run(args, args.run_id, describe)


def workflow_result(args: argparse.Namespace) -> int:
    """`everflow workflow result`: wait for the run's result; print it as JSON."""

    async def result(handle: WorkflowHandle) -> None:
        print(json.dumps(await handle.result(), default=str))

    return on_run(args, args.run_id, result)


def workflow_show(args: argparse.Namespace) -> int:
    """`everflow workflow show`: the run's history, one JSON object per event."""

    async def show(handle: WorkflowHandle) -> None:
        for event in await handle.fetch_history():
            print(json.dumps(event_to_json(event, handle.client.converter), default=str))

    return on_run(args, args.run_id, show)


def workflow_reset(args: argparse.Namespace) -> int:
    """`everflow workflow reset`: a new run replaying events 1..N of the current one."""

    async def reset(handle: WorkflowHandle) -> None:
        new_run = await handle.reset(args.to_event, args.reason)
        print(f"reset {args.workflow_id} to event {args.to_event}: new run {new_run}")

    return on_run(args, None, reset)


def workflow_unblock(args: argparse.Namespace) -> int:
    """`everflow workflow unblock`: retry a blocked run with the code deployed now."""

    async def unblock(handle: WorkflowHandle) -> None:
        d = await handle.unblock(args.reason)
        print(f"unblocked {d.workflow_id} run {d.run_id}: {d.status.value}")

    return on_run(args, None, unblock)
