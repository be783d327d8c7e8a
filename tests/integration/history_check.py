"""Reading a whole topic back in tests, and checking a history topic's shape."""

from __future__ import annotations

from collections import defaultdict

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streams import kafka
from streams.kafka.config import KafkaConfig
from streams.wire import wire
from streams.wire.events import HistoryEvent


def read_topic(
    config: KafkaConfig, topic: str, isolation: str = "read_committed"
) -> list[tuple[int, int, bytes | None]]:
    """Every record of `topic` as (partition, offset, value), read to the end."""
    meta = kafka.admin(config).list_topics(topic, timeout=10).topics[topic]
    consumer = kafka.consumer(
        config, settings={"enable.partition.eof": True, "isolation.level": isolation}
    )
    out: list[tuple[int, int, bytes | None]] = []
    try:
        parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        for msg in kafka.read_to_end(consumer, parts):
            out.append((msg.partition(), msg.offset(), msg.value()))
    finally:
        consumer.close()
    return out


def history_runs(
    config: KafkaConfig, isolation: str = "read_committed"
) -> dict[tuple[str, str], list[HistoryEvent]]:
    """The history topic's events by (workflow ID, run ID), in topic order."""
    runs: dict[tuple[str, str], list[HistoryEvent]] = defaultdict(list)
    topic = f"{config.topic_prefix}history"
    for _, _, value in read_topic(config, topic, isolation):
        event = wire().event.decode(value)
        runs[(event.workflow_id, event.run_id)].append(event)
    return runs


def history_problems(runs: dict[tuple[str, str], list[HistoryEvent]]) -> list[str]:
    """Runs whose event IDs are not exactly 1..n in order (duplicates, gaps)."""
    problems = []
    for (wf, run_id), events in runs.items():
        ids = [e.event_id for e in events]
        if ids != list(range(1, len(ids) + 1)):
            problems.append(f"{wf}/{run_id}: event ids {ids[:20]}")
    return problems
