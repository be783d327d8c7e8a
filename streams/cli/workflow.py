"""`everflow workflow …`: start, signal, query, update, cancel, terminate, list, count,
describe, show, result, stack, reset and unblock runs, like `temporal workflow`.

The commands live by what they do: `workflow_start` (start, execute), `workflow_control`
(signal, query, update, cancel, terminate, stack, reset, unblock), `workflow_view`
(describe, show, result) and `workflow_list` (list, count, and the batch form of cancel,
terminate and signal); the flags they share are in `workflow_args`, how they print in
`output`. Every command takes `-o text|json|jsonl`, `--time-format` and `--color`, and its
`--help` ends with an example and the exit codes.
"""

from __future__ import annotations

from streams.cli import workflow_control, workflow_list, workflow_start, workflow_view
from streams.cli.common import SubParsers, add_group


def add_parser(subparsers: SubParsers) -> None:
    """Register the `workflow` subcommands."""
    commands = add_group(
        subparsers,
        "workflow",
        "start, signal, query, cancel, list and look at workflow runs",
    )
    workflow_start.add_parsers(commands)
    workflow_view.add_parsers(commands)
    workflow_list.add_parsers(commands)
    workflow_control.add_parsers(commands)
