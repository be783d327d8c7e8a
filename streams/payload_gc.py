"""Removing stored payloads after their run's retention.

The payload store (EVERFLOW_PAYLOAD_STORE) keeps payloads past the threshold; their
references live in history events. A collection reads the history topic from its start
(read_committed) and keeps every object that an open run refers to, or a run closed less
than the retention ago (the closed-run retention, EVERFLOW_CLOSED_RUN_RETENTION: the run
still answers describe and result that long). Any other object last written more than the
retention ago goes: those of runs closed longer ago, and orphans (written by a client or an
activity whose message never committed). The age also spares an object whose message is
still on its way to the history. It assumes the history topic keeps every open run's events
(its retention outlives the runs).

Two ways to run one: `everflow payloads gc` (`streams.cli.payloads`), and every worker's
`PayloadCollector`, which collects every `gc_seconds` (EVERFLOW_PAYLOAD_GC_EVERY, default an
hour) in one worker of the cluster at a time: the member of the consumer group
`<prefix>payload-gc` that is assigned the one partition of the `workers` topic. A second
collection at once (a rebalance, the CLI) is harmless: a removal is idempotent and both keep
the same objects.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from confluent_kafka import KafkaException

from streams import kafka
from streams.errors import BrokerError, ConfigError, PayloadStoreError
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, read_whole
from streams.payload_settings import PayloadStoreSettings
from streams.payload_store import Collected, collect, open_store, stored_keys
from streams.visibility.history_fold import CLOSES
from streams.wire import wire

log = logging.getLogger(__name__)

FIRST_AFTER = 60.0  # seconds from a worker's start to its first collection, at most
# a collection of a long history may take minutes without polling: the group must not
# count the collector gone meanwhile (its heartbeats go on in librdkafka's thread)
MAX_POLL_INTERVAL_MS = 30 * 60 * 1000


class ProgressLine(Protocol):
    """What hears how far a collection got (the CLI's `streams.cli.progress.Progress`)."""

    def due(self) -> bool: ...

    def __call__(self, news: str) -> None: ...


def collector_group(config: KafkaConfig) -> str:
    """The consumer group whose one active member collects."""
    return f"{config.topic_prefix}payload-gc"


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


def read_references(config: KafkaConfig, progress: ProgressLine | None = None) -> References:
    """Every stored-payload reference on the history topic, run by run; the whole topic is
    read, with news of how far for `progress` (the CLI's progress line)."""
    topic = Topics(config.topic_prefix).history
    refs = References()
    decode = wire().event.decode
    records = read_whole(config, topic, {"fetch.max.bytes": 16 << 20})
    for read, msg in enumerate(records, 1):
        if progress is not None and progress.due():
            progress(f"payloads gc: {read:,} history events read, {len(refs.keys):,} runs")
        event = decode(msg.value())
        run = (event.workflow_id, event.run_id)
        refs.keys.setdefault(run, set()).update(stored_keys(event.attributes))
        if isinstance(event.attributes, CLOSES):
            refs.closed_at[run] = event.time
    return refs


def collect_payloads(
    config: KafkaConfig,
    store_settings: PayloadStoreSettings,
    older_than_ms: int,
    dry_run: bool = False,
    progress: ProgressLine | None = None,
) -> Collected:
    """Removes the stored payloads no run needs (see the module docstring); `progress` hears
    how far the read of the history topic got."""
    store = open_store(store_settings)
    if store is None:
        raise ConfigError("no payload store to collect: EVERFLOW_PAYLOAD_STORE is not set")
    refs = read_references(config, progress)
    now_ms = int(time.time() * 1000)  # after the read: a run closed meanwhile counts as open
    return collect(store, refs.needed(now_ms, older_than_ms), older_than_ms, now_ms, dry_run)


class PayloadCollector:
    """A worker's part in removing stored payloads: every `every` seconds (the first time
    after at most FIRST_AFTER), if this worker holds the workers topic's partition in the
    group `<prefix>payload-gc`, one collection with retention `retention_ms`. A failed one
    is logged and tried again next time; it never stops the worker."""

    def __init__(
        self,
        config: KafkaConfig,
        store_settings: PayloadStoreSettings,
        retention_ms: int,
        every: float,
    ) -> None:
        self.config = config
        self.store_settings = store_settings
        self.retention_ms = retention_ms
        self.every = every
        self.collections = 0
        self.removed = 0
        self.last: Collected | None = None

    def run(self, stop: threading.Event) -> None:
        consumer = kafka.consumer(
            self.config,
            group_id=collector_group(self.config),
            settings={"max.poll.interval.ms": MAX_POLL_INTERVAL_MS},
        )
        try:
            consumer.subscribe([Topics(self.config.topic_prefix).workers])
            due = time.monotonic() + min(self.every, FIRST_AFTER)
            while not stop.is_set():
                consumer.consume(100, 1.0)  # what the workers say is not read: only who leads
                if time.monotonic() >= due and consumer.assignment():
                    self.collect_once()
                    due = time.monotonic() + self.every
        finally:
            consumer.close()

    def collect_once(self) -> Collected | None:
        """One collection; None when it failed (logged)."""
        began = time.monotonic()
        try:
            done = collect_payloads(self.config, self.store_settings, self.retention_ms)
        except (PayloadStoreError, BrokerError, KafkaException, OSError) as e:
            log.error("payload store: collection failed, trying again in %.0f s: %s", self.every, e)
            return None
        self.collections += 1
        self.removed += len(done.removed)
        self.last = done
        log.info(
            "payload store: removed %d objects no run needs, kept %d referenced and %d "
            "younger than the retention (%.1f s)",
            len(done.removed),
            done.kept_referenced,
            done.kept_young,
            time.monotonic() - began,
        )
        return done
