"""`everflow payloads gc`: remove the stored payloads no run needs any more.

The payload store (EVERFLOW_PAYLOAD_STORE) keeps payloads past the threshold; their
references live in history events. `gc` reads the history topic from its start
(read_committed) and keeps every object that an open run refers to, or a run closed less
than `--older-than` ago (the closed-run retention, EVERFLOW_CLOSED_RUN_RETENTION, by
default: the run still answers describe and result that long). Any other object last
written more than `--older-than` ago goes: those of runs closed longer ago, and orphans
(written by a client or activity whose message never committed). The age also spares an
object whose message is still on its way to the history. It assumes the history topic
keeps every open run's events (its retention outlives the runs).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streams import kafka
from streams.cli.common import (
    SubParsers,
    add_connection_arguments,
    add_group,
    add_subparser,
    kafka_config,
)
from streams.cli.workflow_args import duration
from streams.errors import ConfigError
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, partition_count
from streams.payload_store import Collected, collect, open_store, stored_keys
from streams.settings import CacheSettings, PayloadStoreSettings
from streams.visibility.history_fold import CLOSES
from streams.wire import wire


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


@dataclass
class References:
    """What the history says about stored payloads: each run's keys and close time."""

    keys: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    closed_at: dict[tuple[str, str], int] = field(default_factory=dict)

    def needed(self, now_ms: int, retention_ms: int) -> set[str]:
        """Keys of the runs still open, or closed less than `retention_ms` ago."""
        out: set[str] = set()
        for run, keys in self.keys.items():
            closed = self.closed_at.get(run)
            if closed is None or now_ms - closed < retention_ms:
                out |= keys
        return out


def read_references(config: KafkaConfig) -> References:
    """Every stored-payload reference on the history topic, run by run."""
    topic = Topics(config.topic_prefix).history
    refs = References()
    consumer = kafka.consumer(
        config, settings={"enable.partition.eof": True, "fetch.max.bytes": 16 << 20}
    )
    try:
        n = partition_count(kafka.admin(config), topic)
        decode = wire().event.decode
        assignment = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(n)]
        for msg in kafka.read_to_end(consumer, assignment):
            event = decode(msg.value())
            run = (event.workflow_id, event.run_id)
            refs.keys.setdefault(run, set()).update(stored_keys(event.attributes))
            if isinstance(event.attributes, CLOSES):
                refs.closed_at[run] = event.time
    finally:
        consumer.close()
    return refs


def collect_payloads(
    config: KafkaConfig,
    store_settings: PayloadStoreSettings,
    older_than_ms: int,
    dry_run: bool = False,
) -> Collected:
    """Removes the stored payloads no run needs (see the module docstring)."""
    store = open_store(store_settings)
    if store is None:
        raise ConfigError("no payload store to collect: EVERFLOW_PAYLOAD_STORE is not set")
    refs = read_references(config)
    now_ms = int(time.time() * 1000)  # after the read: a run closed meanwhile counts as open
    return collect(store, refs.needed(now_ms, older_than_ms), older_than_ms, now_ms, dry_run)


def payloads_gc(args: argparse.Namespace) -> int:
    """`everflow payloads gc`: one line per removed object, then a summary."""
    if args.older_than is None:
        older_than_ms = CacheSettings.from_env().closed_retention_ms
    else:
        older_than_ms = int(args.older_than.total_seconds() * 1000)
    settings = PayloadStoreSettings.from_env()
    done = collect_payloads(kafka_config(args), settings, older_than_ms, args.dry_run)
    for key in done.removed:
        print(f"{'would remove' if args.dry_run else 'removed'} {key}")
    print(
        f"{len(done.removed)} {'to remove' if args.dry_run else 'removed'}, "
        f"{done.kept_referenced} kept (referenced), {done.kept_young} kept (younger)"
    )
    return 0
