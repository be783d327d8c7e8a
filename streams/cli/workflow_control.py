"""`everflow workflow signal|query|update|cancel|terminate|stack|reset|unblock`: talk to
one run, or (`signal`, `cancel`, `terminate` with `-q QUERY --yes`) to every run a filter
matches."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from streams.cli.common import EXIT_OK, SubParsers, connected
from streams.cli.output import Output, dumps
from streams.cli.workflow_args import (
    add_command,
    add_input_arguments,
    add_run_arguments,
    inputs,
    workflow_id,
)
from streams.cli.workflow_list import run_batch
from streams.client import WorkflowHandle

STACK_QUERY = "__stack_trace"
"""The built-in query a run's processor answers with the file:line of each pending await."""


def add_parsers(commands: SubParsers) -> None:
    """Register `signal`, `query`, `update`, `cancel`, `terminate`, `stack`, `reset` and
    `unblock`."""
    signal = add_command(
        commands,
        "signal",
        "send a signal to a run, or to every run a filter matches",
        workflow_signal,
        "everflow workflow signal -w order-42 --name approve -i '\"alice\"'\n"
        "  everflow workflow signal -q \"WorkflowType = 'Collector'\" --name finish --yes",
    )
    add_run_arguments(signal, batch=True)
    signal.add_argument("--name", required=True, help="the signal's name")
    add_input_arguments(signal)
    query = add_command(
        commands,
        "query",
        "ask a run's state through a query handler and print the answer as JSON",
        workflow_query,
        "everflow workflow query -w onboarding-7 --name progress",
    )
    add_run_arguments(query)
    query.add_argument("--name", required=True, help="the query's name")
    add_input_arguments(query)
    update = add_command(
        commands,
        "update",
        "run an update handler on a run and print its result as JSON",
        workflow_update,
        "everflow workflow update -w onboarding-7 --name change_plan -i '\"pro\"'",
    )
    add_run_arguments(update)
    update.add_argument("--name", required=True, help="the update's name")
    update.add_argument("--update-id", help="the update's ID (default: a new one)")
    add_input_arguments(update)
    for name, run, summary in (
        ("cancel", workflow_cancel, "ask a run (or the runs a filter matches) to cancel"),
        ("terminate", workflow_terminate, "end a run (or the runs a filter matches) at once"),
    ):
        parser = add_command(
            commands,
            name,
            summary,
            run,
            f"everflow workflow {name} -w order-42 --reason 'customer asked'\n"
            f"  everflow workflow {name} -q \"ExecutionStatus = 'Running' AND "
            f"WorkflowType = 'Charge'\" --yes",
        )
        add_run_arguments(parser, batch=True)
        parser.add_argument("--reason", default="", help="recorded in the run's history")
    stack = add_command(
        commands,
        "stack",
        "print where a run's code waits: file:line and source of each pending await",
        workflow_stack,
        "everflow workflow stack -w order-42",
    )
    add_run_arguments(stack)
    add_repair_parsers(commands)


def add_repair_parsers(commands: SubParsers) -> None:
    reset = add_command(
        commands,
        "reset",
        "start a new run from events 1..N of the current one",
        workflow_reset,
        "everflow workflow reset -w order-42 -e 7 --reason 'fixed the fee'",
    )
    add_run_arguments(reset)
    reset.add_argument(
        "-e", "--event-id", "--to-event", dest="to_event", type=int, required=True,
        help="the last event the new run keeps",
    )  # fmt: skip
    reset.add_argument("--reason", default="", help="recorded in the new run's history")
    unblock = add_command(
        commands,
        "unblock",
        "replay a blocked run with the code deployed now; resume it if it fits",
        workflow_unblock,
        "everflow workflow unblock -w order-42 --reason 'deployed the fix'",
    )
    add_run_arguments(unblock)
    unblock.add_argument("--reason", default="")


def on_one_run(
    args: argparse.Namespace, act: Callable[[WorkflowHandle, Output], Awaitable[None]]
) -> int:
    """Runs `act` on the run the flags name, with a connected client."""
    out = Output.of(args)

    async def main() -> None:
        async with connected(args) as client:
            await act(client.get_workflow_handle(workflow_id(args), args.run_id), out)

    asyncio.run(main())
    return EXIT_OK


def done(out: Output, message: str, **fields: Any) -> None:
    """What a control command did: a sentence (text) or its fields (json)."""
    if out.text:
        out.line(message)
    else:
        out.json(fields)


def workflow_signal(args: argparse.Namespace) -> int:
    """`everflow workflow signal`: deliver a signal (recorded in the run's history)."""
    values = inputs(args)
    if args.query is not None:
        return run_batch(args, "signal", lambda h: h.signal(args.name, *values))

    async def signal(handle: WorkflowHandle, out: Output) -> None:
        await handle.signal(args.name, *values)
        done(out, f"Signal {args.name} sent to {handle.id}", workflow_id=handle.id,
             signal=args.name)  # fmt: skip

    return on_one_run(args, signal)


def workflow_query(args: argparse.Namespace) -> int:
    """`everflow workflow query`: the query handler's answer, as JSON."""

    async def query(handle: WorkflowHandle, out: Output) -> None:
        value = await handle.query(args.name, *inputs(args))
        out.json(value)

    return on_one_run(args, query)


def workflow_update(args: argparse.Namespace) -> int:
    """`everflow workflow update`: the update handler's result, as JSON."""

    async def update(handle: WorkflowHandle, out: Output) -> None:
        value = await handle.execute_update(args.name, *inputs(args), update_id=args.update_id)
        out.json(value)

    return on_one_run(args, update)


def workflow_cancel(args: argparse.Namespace) -> int:
    """`everflow workflow cancel`: the run's code gets a CancelledError and may clean up."""
    if args.query is not None:
        return run_batch(args, "cancel", lambda h: h.cancel(args.reason))

    async def cancel(handle: WorkflowHandle, out: Output) -> None:
        await handle.cancel(args.reason)
        done(out, f"Cancel requested for {handle.id}", workflow_id=handle.id, canceled=True)

    return on_one_run(args, cancel)


def workflow_terminate(args: argparse.Namespace) -> int:
    """`everflow workflow terminate`: the run ends at once as TERMINATED."""
    if args.query is not None:
        return run_batch(args, "terminate", lambda h: h.terminate(args.reason))

    async def terminate(handle: WorkflowHandle, out: Output) -> None:
        await handle.terminate(args.reason)
        done(out, f"Terminated {handle.id}", workflow_id=handle.id, terminated=True)

    return on_one_run(args, terminate)


def workflow_stack(args: argparse.Namespace) -> int:
    """`everflow workflow stack`: the `__stack_trace` query's text, as the run gives it."""

    async def stack(handle: WorkflowHandle, out: Output) -> None:
        trace = await handle.query(STACK_QUERY)
        if out.text:
            out.line(trace if isinstance(trace, str) else dumps(trace))
        else:
            out.json({"workflow_id": handle.id, "stack": trace})

    return on_one_run(args, stack)


def workflow_reset(args: argparse.Namespace) -> int:
    """`everflow workflow reset`: a new run replaying events 1..N of the current one."""

    async def reset(handle: WorkflowHandle, out: Output) -> None:
        new_run = await handle.reset(args.to_event, args.reason)
        done(out, f"reset {handle.id} to event {args.to_event}: new run {new_run}",
             workflow_id=handle.id, run_id=new_run, to_event=args.to_event)  # fmt: skip

    return on_one_run(args, reset)


def workflow_unblock(args: argparse.Namespace) -> int:
    """`everflow workflow unblock`: retry a blocked run with the code deployed now."""

    async def unblock(handle: WorkflowHandle, out: Output) -> None:
        d = await handle.unblock(args.reason)
        done(out, f"unblocked {d.workflow_id} run {d.run_id}: {d.status.value}",
             workflow_id=d.workflow_id, run_id=d.run_id, status=d.status.value)  # fmt: skip

    return on_one_run(args, unblock)
