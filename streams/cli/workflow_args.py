"""The flags the `workflow` commands share, defined once: which run (`WORKFLOW_ID` or
`-w/--workflow-id`, `-r/--run-id`), or which runs (`-q/--query`), the inputs
(`-i/--input` JSON, `--input-file`), durations, search attributes, and `add_command`, which
gives each command its connection and output flags and an epilog with an example and the
exit codes."""

from __future__ import annotations

import argparse
import re
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from streams.cli.common import (
    EXIT_CODES,
    Action,
    SubParsers,
    add_connection_arguments,
    add_subparser,
)
from streams.cli.output import add_output_arguments

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def add_command(
    commands: SubParsers,
    name: str,
    summary: str,
    run: Action,
    example: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """`everflow workflow <name>`, run by `run`, with the connection and output flags and an
    epilog giving `example` (lines of shell) and the exit codes."""
    parser = add_subparser(commands, name, summary, description)
    # raw, to keep the example's lines; the description is wrapped here instead
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = textwrap.fill(parser.description or "", 88)
    parser.epilog = f"example:\n  {example.strip()}\n\n{EXIT_CODES}"
    add_connection_arguments(parser)
    add_output_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def add_run_arguments(parser: argparse.ArgumentParser, *, batch: bool = False) -> None:
    """Which run: `WORKFLOW_ID` (or `-w`), `-r/--run-id`; with `batch`, `-q QUERY` instead
    of an ID, plus `--yes` and `--reason`-free batch flags."""
    which = parser.add_mutually_exclusive_group(required=True)
    # the positional and -w fill the same attribute; SUPPRESS keeps an absent positional from
    # overwriting -w (argparse then does not call its action at all)
    which.add_argument(
        "workflow_id",
        nargs="?",
        default=argparse.SUPPRESS,
        metavar="WORKFLOW_ID",
        help="the workflow ID",
    )
    which.add_argument("-w", "--workflow-id", help="the workflow ID (or give it as WORKFLOW_ID)")
    if batch:
        which.add_argument(
            "-q",
            "--query",
            help="act on every run this list filter matches (see `everflow workflow list`)",
        )
        parser.add_argument(
            "-y", "--yes", action="store_true", help="with -q: act (else only count the matches)"
        )
    parser.add_argument("-r", "--run-id", help="the run (default: the ID's latest run)")


def workflow_id(args: argparse.Namespace) -> str:
    """The workflow ID the command names (positional or `-w`)."""
    return str(args.workflow_id)


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """`-i/--input JSON` (repeatable, one per argument) or `--input-file FILE` (repeatable)."""
    given = parser.add_mutually_exclusive_group()
    given.add_argument(
        "-i",
        "--input",
        action="append",
        type=json_value,
        default=[],
        metavar="JSON",
        help="an argument as JSON; repeat for several ('\"text\"', '3', '{\"a\": 1}')",
    )
    given.add_argument(
        "--input-file",
        action="append",
        type=json_file,
        default=[],
        metavar="FILE",
        help="a file holding one argument as JSON; repeat for several",
    )


def inputs(args: argparse.Namespace) -> list[Any]:
    """The arguments given by `-i` or `--input-file`, decoded."""
    return [*args.input, *args.input_file]


def json_value(text: str) -> Any:
    """argparse type: a JSON value, or a usage error saying what is wrong with it."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(
            f"not JSON: {text!r} ({e}); quote strings: '\"text\"'"
        ) from None


def json_file(path: str) -> Any:
    """argparse type: the JSON value in the file at `path`."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {e.strerror}") from None
    return json_value(text)


def duration(text: str) -> timedelta:
    """argparse type: '90s', '5m', '2h', '1d', '250ms' or plain seconds ('30')."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r}; write e.g. 30s, 5m, 2h, 1d, 250ms"
        )
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


def search_attribute(text: str) -> tuple[str, Any]:
    """argparse type: `NAME=VALUE`, the value as JSON (a bare word is taken as a string)."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"not NAME=VALUE: {text!r}")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    return name.strip(), value


def policy(choices: dict[str, str]) -> Any:
    """argparse type: Temporal's spelling (`AllowDuplicate`) or ours (`allow_duplicate`),
    as ours."""

    def parse(text: str) -> str:
        key = text.replace("_", "").replace("-", "").lower()
        for spelling, value in choices.items():
            if spelling.lower() == key:
                return value
        accepted = ", ".join(choices)
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {accepted}")

    return parse
