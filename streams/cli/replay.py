"""`everflow replay`: recorded histories replayed against the code you have now, before a
deploy; exit 1 if any run's code no longer matches its history."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.cli.common import SubParsers, add_connection_arguments, add_subparser, kafka_config
from streams.cli.history import histories_from_kafka, read_history_file, read_run
from streams.cli.progress import Progress
from streams.cli.worker import collect
from streams.errors import EverflowError
from streams.wire import wire
from streams.wire.events import HistoryEvent


def add_parser(subparsers: SubParsers) -> None:
    """Register `replay`."""
    replay = add_subparser(
        subparsers,
        "replay",
        "replay recorded histories against current code (exit 1 on a mismatch)",
    )
    add_connection_arguments(replay)
    replay.add_argument(
        "--workflows", action="append", required=True, help="module or module:attr (repeatable)"
    )
    source = replay.add_mutually_exclusive_group(required=True)
    source.add_argument("--workflow-id", help="the current run of this workflow")
    source.add_argument("--from-kafka", action="store_true", help="runs on the history topic")
    source.add_argument("--file", help="a file written by `everflow history export`")
    replay.add_argument("--workflow-type", help="with --from-kafka: only this type")
    replay.add_argument("--limit", type=int, default=100, help="with --from-kafka: at most N runs")
    replay.set_defaults(run=replay_run)


def replay_run(args: argparse.Namespace) -> int:
    """`everflow replay`: one line per run replayed, then a total; exit 1 on a mismatch."""
    from streams.replayer import Replayer  # the engine: loaded only to replay, not for --help

    workflows, _ = collect(args.workflows)
    histories: list[list[HistoryEvent]]
    with Progress() as progress:
        if args.file:
            histories = list(read_history_file(Path(args.file)))
        elif args.workflow_id:
            decode = wire().event.decode
            records = read_run(kafka_config(args), args.workflow_id)
            histories = [[decode(raw) for _, raw in records]]
        elif args.from_kafka:
            histories = histories_from_kafka(
                kafka_config(args), args.workflow_type, args.limit, progress
            )
        else:
            raise EverflowError("say which histories: --workflow-id, --from-kafka or --file")
        replayer, results = Replayer(workflows), []
        for done, history in enumerate(histories):
            progress(f"replay: {done:,} of {len(histories):,} runs replayed")
            results.append(replayer.replay(history))
    bad = [r for r in results if not r.ok]
    for r in results:
        state = "ok" if r.ok else f"NON-DETERMINISTIC: {r.error}"
        print(f"{r.workflow_id}/{r.run_id} ({r.workflow_type}, {r.events} events): {state}")
    print(f"replayed {len(results)} runs: {len(results) - len(bad)} ok, {len(bad)} failed")
    return 1 if bad else 0
