"""`everflow visibility`: run the run index's projector on its own.

    everflow visibility                                   # the default SQLite index
    everflow visibility --visibility postgresql://everflow@db/everflow
    everflow visibility --rebuild                         # empty the index, replay history

`everflow worker` runs a projector by default; this command is for a worker started with
`--no-visibility`, or a dedicated indexing process.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from processors.visibility.projector import Projector
from streams.cli.common import (
    SubParsers,
    add_connection_arguments,
    add_subparser,
    add_visibility_argument,
    kafka_config,
)
from streams.settings import VisibilitySettings, visibility_url

DESCRIPTION = """\
Run the run index's projector: it folds the `history` topic into the index that
`everflow workflow list` and `count` (and Client.list_workflows / count_workflows) read,
writing each batch and the Kafka offsets it consumed in one SQL transaction, so it can be
stopped or killed at any point and restarted.

With SQLite (the default: one file per topic prefix) one projector indexes at a time; with
PostgreSQL, run several (here or in workers): they share the partitions of `history`.
A new, empty index (or --rebuild) replays `history` from the start and shows its progress.
`everflow worker` runs a projector by default (turn it off with --no-visibility)."""


def add_parser(subparsers: SubParsers) -> None:
    """Register `visibility`."""
    parser = add_subparser(
        subparsers, "visibility", "run the run index's projector", description=DESCRIPTION
    )
    add_connection_arguments(parser)
    add_visibility_argument(parser)
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="empty the index first, then rebuild it from the start of history",
    )
    parser.set_defaults(run=run_projector)


def run_projector(args: argparse.Namespace) -> int:
    """`everflow visibility`: project `history` into the index until SIGINT/SIGTERM."""
    config = kafka_config(args)
    settings = VisibilitySettings.from_env(url=args.visibility)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    url = visibility_url(config.topic_prefix, settings.url)
    logging.getLogger(__name__).info("indexing into %s", url.split("@")[-1])
    print(f"projecting {config.topic_prefix}history into {url.split('@')[-1]}", flush=True)
    Projector(config, settings, rebuild=args.rebuild, progress_out=sys.stderr).run(stop)
    return 0
