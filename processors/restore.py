"""Partition restore: rebuild a partition's runs and timers from the compacted topics.

Reads the partition's `snapshots` (latest record per workflow wins, tombstones delete) and
`timers` up to their committed end, with a consumer of its own, so the time it takes grows
with the number of runs and pending timers, not with all history ever written.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from processors.run import Run
from streams import kafka
from streams.config import KafkaConfig
from streams.errors import BrokerError, PayloadDecodeError
from streams.records import Snapshot, Timer
from streams.topics import Topics
from streams.wire import Wire

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RestoredPartition:
    partition: int
    runs: dict[str, Run] = field(default_factory=dict)
    timers: dict[str, Timer] = field(default_factory=dict)
    records_read: int = 0
    bytes_read: int = 0
    seconds: float = 0.0


def restore_partitions(
    config: KafkaConfig, wire: Wire, partitions: list[int], timeout: float = 120.0
) -> dict[int, RestoredPartition]:
    """Reads snapshots and timers of `partitions` to their end; returns the rebuilt state."""
    started = time.monotonic()
    topics = Topics(config.topic_prefix)
    out = {p: RestoredPartition(p) for p in partitions}
    if not partitions:
        return out
    consumer = kafka.consumer(config, settings={"enable.partition.eof": True})
    try:
        assignment = [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for p in partitions
            for t in (topics.snapshots, topics.timers)
        ]
        consumer.assign(assignment)
        pending = {(tp.topic, tp.partition) for tp in assignment}
        snapshots: dict[int, dict[str, Snapshot | None]] = {p: {} for p in partitions}
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"restore of partitions {partitions} did not finish in {timeout}s"
                )
            for msg in consumer.consume(1000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard((msg.topic(), msg.partition()))
                        continue
                    raise BrokerError(f"restore failed reading {msg.topic()}: {err.str()}")
                topic, partition, offset = kafka.where(msg)
                part = out[partition]
                value = msg.value()
                part.records_read += 1
                part.bytes_read += len(value or b"")
                raw_key = msg.key()
                key = raw_key.decode() if isinstance(raw_key, bytes) else (raw_key or "")
                try:
                    if topic == topics.snapshots:
                        snapshots[partition][key] = (
                            None if value is None else wire.snapshot.decode(value)
                        )
                    elif value is None:
                        part.timers.pop(key, None)
                    else:
                        part.timers[key] = wire.timer.decode(value)
                except PayloadDecodeError as e:
                    # our own compacted topics: a record we cannot read is a bug or foreign
                    # data; keep going and say so loudly rather than lose the partition
                    log.error(
                        "skipping unreadable record %s",
                        e.at(topic, partition, offset),
                    )
        for p, by_key in snapshots.items():
            for workflow_id, snap in by_key.items():
                if snap is not None:
                    out[p].runs[workflow_id] = run_from_snapshot(snap, p, wire)
    finally:
        consumer.close()
    elapsed = time.monotonic() - started
    for part in out.values():
        part.seconds = elapsed
        log.info(
            "restored partition=%d runs=%d timers=%d records=%d bytes=%d seconds=%.3f",
            part.partition,
            len(part.runs),
            len(part.timers),
            part.records_read,
            part.bytes_read,
            elapsed,
        )
    return out


def run_from_snapshot(snapshot: Snapshot, partition: int, wire: Wire) -> Run:
    run = Run(snapshot.workflow_id, snapshot.run_id, partition)
    for raw in snapshot.events:
        run.apply(wire.event.decode(raw))
    run.encoded = list(snapshot.events)
    return run
