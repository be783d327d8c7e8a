"""`everflow workflow start|execute`: start a run; `execute` also prints its events as they
come and its result, and exits 1 if it did not complete."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from typing import Any

from streams.cli.common import EXIT_FAILED, EXIT_OK, SubParsers, connected
from streams.cli.output import Output, dumps
from streams.cli.workflow_args import (
    add_command,
    add_input_arguments,
    duration,
    inputs,
    policy,
    search_attribute,
)
from streams.cli.workflow_history import follow, print_event, print_event_header
from streams.client import Client, WorkflowHandle
from streams.errors import WorkflowFailureError
from streams.options import IdConflictPolicy, IdReusePolicy
from streams.wire.events import HistoryEvent
from streams.wire.history_json import event_to_json

REUSE = {
    "AllowDuplicate": IdReusePolicy.ALLOW_DUPLICATE.value,
    "AllowDuplicateFailedOnly": IdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY.value,
    "RejectDuplicate": IdReusePolicy.REJECT_DUPLICATE.value,
}
CONFLICT = {"Fail": IdConflictPolicy.FAIL.value, "UseExisting": IdConflictPolicy.USE_EXISTING.value}


def add_parsers(commands: SubParsers) -> None:
    """Register `start` and `execute`."""
    start = add_command(
        commands,
        "start",
        "start a run and print its workflow and run IDs",
        workflow_start,
        "everflow workflow start --type MoneyTransferWorkflow -t transfers -w order-42 \\\n"
        '      -i \'{"from_account": "a", "to_account": "b", "amount": 3}\'',
    )
    add_start_arguments(start)
    execute = add_command(
        commands,
        "execute",
        "start a run, print its events as they come and its result (exit 1 if it fails)",
        workflow_execute,
        "everflow workflow execute --type Onboarding -t onboarding -i 3",
    )
    add_start_arguments(execute)


def add_start_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", required=True, help="the workflow type (its registered name)")
    parser.add_argument("-t", "--task-queue", required=True, help="the task queue of its workers")
    parser.add_argument("-w", "--workflow-id", help="the workflow ID (default: a new UUID)")
    add_input_arguments(parser)
    parser.add_argument(
        "--execution-timeout", type=duration, help="end it as timed out after (e.g. 1h, 90s)"
    )
    parser.add_argument("--run-timeout", type=duration, help="end one run as timed out after")
    parser.add_argument(
        "--search-attribute",
        action="append",
        type=search_attribute,
        default=[],
        metavar="NAME=VALUE",
        help="a custom search attribute, the value as JSON (repeatable)",
    )
    parser.add_argument(
        "--id-reuse-policy",
        type=policy(REUSE),
        help="if a closed run has this ID: " + ", ".join(REUSE) + " (default AllowDuplicate)",
    )
    parser.add_argument(
        "--id-conflict-policy",
        type=policy(CONFLICT),
        help="if a running run has this ID: " + ", ".join(CONFLICT) + " (default Fail)",
    )


async def start_run(client: Client, args: argparse.Namespace) -> WorkflowHandle:
    """Starts the run the flags describe."""
    options: dict[str, Any] = {}
    for name in ("execution_timeout", "run_timeout", "id_reuse_policy", "id_conflict_policy"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if args.search_attribute:
        options["search_attributes"] = dict(args.search_attribute)
    return await client.start_workflow(
        args.type,
        *inputs(args),
        id=args.workflow_id or str(uuid.uuid4()),
        task_queue=args.task_queue,
        **options,
    )


def workflow_start(args: argparse.Namespace) -> int:
    """`everflow workflow start`: start a run, print its IDs."""
    out = Output.of(args)

    async def start() -> None:
        async with connected(args, create_topics=None) as client:  # a first run may make them
            handle = await start_run(client, args)
        ids = {"workflow_id": handle.id, "run_id": handle.run_id}
        if out.text:
            out.line(f"Started workflow {handle.id}, run {handle.run_id}")
        else:
            out.json(ids)

    asyncio.run(start())
    return EXIT_OK


def workflow_execute(args: argparse.Namespace) -> int:
    """`everflow workflow execute`: start a run, print its events until it closes (also
    through continue-as-new), then its result; exit code 1 if it did not complete."""
    out = Output.of(args)

    async def execute() -> int:
        async with connected(args, create_topics=None) as client:  # a first run may make them
            handle = await start_run(client, args)
            if out.text:
                out.line(f"Running workflow {handle.id}, run {handle.run_id}")
                out.line()
            if out.format != "json":
                print_event_header(out)
            events: list[dict[str, Any]] = []

            def on_event(event: HistoryEvent) -> None:
                if out.format == "json":
                    events.append(event_to_json(event, client.converter))
                else:
                    print_event(event, client, out)

            await follow(client, handle.id, handle.run_id, on_event, through_continue_as_new=True)
            try:
                value = await handle.result()
            except WorkflowFailureError as e:
                report(out, handle, e.status, None, str(e), events)
                return EXIT_FAILED
        report(out, handle, "COMPLETED", value, None, events)
        return EXIT_OK

    return asyncio.run(execute())


def report(
    out: Output,
    handle: WorkflowHandle,
    status: str,
    result: Any,
    failure: str | None,
    events: list[dict[str, Any]],
) -> None:
    """The end of `execute`: status and result or failure (text), or one JSON object."""
    if out.text:
        out.line()
        out.line(f"Status: {out.status(status)}")
        out.line(f"Result: {dumps(result)}" if failure is None else f"Failure: {failure}")
        return
    summary: dict[str, Any] = {"workflow_id": handle.id, "run_id": handle.run_id}
    summary |= {"status": status, "result": result, "failure": failure}
    out.json({**summary, "history": events} if out.format == "json" else summary)
