"""`everflow payloads gc`: remove the stored payloads no run needs any more, now.

Workers do this on their own every EVERFLOW_PAYLOAD_GC_EVERY seconds; this command runs one
collection at once, with `--older-than` as the retention (by default the closed-run
retention, EVERFLOW_CLOSED_RUN_RETENTION), or lists what would go (`--dry-run`). What is
kept and what goes: `streams.payload_gc`.
"""

from __future__ import annotations

import argparse

from streams.cli.common import (
    SubParsers,
    add_connection_arguments,
    add_group,
    add_subparser,
    kafka_config,
)
from streams.cli.progress import Progress
from streams.cli.workflow_args import duration
from streams.payload_settings import PayloadStoreSettings
from streams.settings import CacheSettings


def add_parser(subparsers: SubParsers) -> None:
    """Register `payloads gc`."""
    group = add_group(subparsers, "payloads", "the payload store (EVERFLOW_PAYLOAD_STORE)")
    gc = add_subparser(
        group,
        "gc",
        "remove stored payloads that no open run, nor one closed within --older-than, "
        "refers to, once they are older than --older-than",
    )
    add_connection_arguments(gc)
    gc.add_argument(
        "--older-than",
        type=duration,
        help="age and closed-run retention, e.g. 24h "
        "(default: EVERFLOW_CLOSED_RUN_RETENTION, else 24h)",
    )
    gc.add_argument("--dry-run", action="store_true", help="list what would go, remove nothing")
    gc.set_defaults(run=payloads_gc)


def payloads_gc(args: argparse.Namespace) -> int:
    """`everflow payloads gc`: one line per removed object, then a summary."""
    if args.older_than is None:
        older_than_ms = CacheSettings.from_env().closed_retention_ms
    else:
        older_than_ms = int(args.older_than.total_seconds() * 1000)
    from streams.payload_gc import collect_payloads  # reads Kafka: loaded only to run it

    settings = PayloadStoreSettings.from_env()
    with Progress() as progress:
        done = collect_payloads(kafka_config(args), settings, older_than_ms, args.dry_run, progress)
    for key in done.removed:
        print(f"{'would remove' if args.dry_run else 'removed'} {key}")
    print(
        f"{len(done.removed)} {'to remove' if args.dry_run else 'removed'}, "
        f"{done.kept_referenced} kept (referenced), {done.kept_young} kept (younger)"
    )
    return 0
