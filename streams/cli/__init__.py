"""The `everflow` command line (`everflow = "streams.cli:main"`, or `python -m streams.cli`).

`main()` parses the arguments and runs the function the chosen subcommand names; an
`EverflowError` (or a Kafka error) becomes a one-line message and the exit code
`common.exit_code` gives it: 3 for a workflow not found, 4 for a broker or worker that does
not answer, 1 otherwise (2 is argparse's, for usage errors). One module per command group,
each with an `add_parser(subparsers)` that registers its subcommands and the `Action`s that
run them (`set_defaults(run=...)`):

- `dev`: a local Kafka broker or cluster;
- `topics`: create the topic set;
- `worker`: run workflows and activities;
- `workflow`: start, execute, signal, query, update, cancel, terminate, list, count,
  describe, show, result, stack, reset, unblock (in `workflow` and the `workflow_*`
  modules, printing through `output`);
- `schedule`: create, list, describe, pause, unpause, trigger, update, delete schedules;
- `workers`: who owns which partitions, lag, cache, restores;
- `history`: export one run's events (and read exports and the history topic back);
- `audit`: check the history topic's invariants;
- `replay`: replay recorded histories against current code;
- `activity`: retry, pause, unpause one activity;
- `visibility`: run the run index's projector (or rebuild the index);
- `payloads`: collect the payload store's objects no run needs (`payloads gc`);
- `ui`: serve the Web UI (`streams.ui`);
- `keys`: make payload encryption keys;
- `codec`: `codec-server`, payload decoding over HTTP for those without keys;
- `common`: the connection flags, defined once, the `KafkaConfig` and client they give,
  the logging set-up, and the helpers that register a group or command with its
  description;
- `progress`: the progress line on stderr of the commands that read a whole topic.

Logging: `--log-level` (debug, info, warning, error; `-v` is debug) before the command, or
after `worker`, sets what every command logs to stderr; librdkafka's own lines
(`streams.kafka.logs`) show at debug only.

May import anything: the CLI is a composition root, like `streams.worker` and
`streams.replayer`. To keep `everflow --help` fast, the engine (`streams.worker`,
`streams.replayer`, hence `processors`' workflow processor and activity runner) is imported
inside the function that runs it; everything else at module top.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from confluent_kafka import KafkaException

from streams.cli import (
    acls,
    activity,
    audit,
    codec,
    dev,
    history,
    keys,
    payloads,
    replay,
    schedule,
    topics,
    ui,
    visibility,
    worker,
    workers,
    workflow,
)
from streams.cli.common import Action, add_log_level_argument, configure_logging, exit_code
from streams.errors import EverflowError

__all__ = ["Action", "build_parser", "main"]

GROUPS = (
    dev,
    topics,
    acls,
    worker,
    visibility,
    ui,
    workflow,
    schedule,
    workers,
    history,
    audit,
    replay,
    activity,
    keys,
    codec,
    payloads,
)
"""The command groups, in the order `everflow --help` lists them."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `everflow` command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    configure_logging("DEBUG" if args.verbose else args.log_level)
    run: Action = args.run
    try:
        return run(args)
    except (EverflowError, KafkaException) as e:
        print(f"everflow: {e}", file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser, with one subparser per command group."""
    parser = argparse.ArgumentParser(
        prog="everflow", description="Durable workflows on Apache Kafka."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    add_log_level_argument(parser, "INFO")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.add_parser(subparsers)
    return parser


if __name__ == "__main__":
    sys.exit(main())
