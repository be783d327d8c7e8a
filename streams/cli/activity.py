"""`everflow activity retry|pause|unpause`: an operator's hand on one activity of a run."""

from __future__ import annotations

import argparse

from streams.cli.common import (
    SubParsers,
    add_connection_arguments,
    add_group,
    add_subparser,
    on_run,
)
from streams.client import WorkflowHandle

REPAIRS = {
    "retry": "start the activity's next attempt now, with a fresh attempt budget (unpaused)",
    "pause": "start no new attempt of the activity; a failed one waits for an operator",
    "unpause": "let the activity's attempts go on (a waiting one starts now)",
}


def add_parser(subparsers: SubParsers) -> None:
    """Register `activity retry`, `activity pause` and `activity unpause`."""
    activity_commands = add_group(subparsers, "activity", "repair one activity of a run")
    for action, summary in REPAIRS.items():
        parser = add_subparser(activity_commands, action, summary)
        add_connection_arguments(parser)
        parser.add_argument("workflow_id")
        parser.add_argument("activity_id", type=int)
        parser.add_argument("--reason", default="")
        parser.set_defaults(run=activity_control, action=action)


def activity_control(args: argparse.Namespace) -> int:
    """`everflow activity <action>`: send the repair command to the current run."""

    async def control(handle: WorkflowHandle) -> None:
        method = getattr(handle, f"{args.action}_activity")
        await method(args.activity_id, args.reason)
        print(f"{args.action}: activity {args.activity_id} of {args.workflow_id}")

    return on_run(args, None, control)
