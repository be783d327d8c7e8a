"""Re-publishing dead letters against a real broker: two re-publishes of one dead letter at
once produce it once (the other is refused as a repeat), and a dead letter whose source
header names a topic outside this deployment is refused, nothing produced."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import TopicPartition

from streams import kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.dead_letters import (
    REASON,
    REPUBLISHED_FROM,
    SOURCE,
    DeadLetterError,
    read_dead_letters,
    republish,
)
from streams.kafka.topics import Topics, TopicSpec, ensure_topics, topic_specs

pytestmark = pytest.mark.integration


@pytest.fixture
def config(kafka_bootstrap: str, topic_prefix: str) -> KafkaConfig:
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix)
    ensure_topics(kafka.admin(config), topic_specs(config))
    return config


def dead_letter(config: KafkaConfig, source: str, value: bytes) -> int:
    """Writes a dead letter to partition 0 as the workers do; returns its offset."""
    producer = kafka.producer(config)
    delivered: list[int] = []
    producer.produce(Topics(config.topic_prefix).dead_letters, value, b"wf-1", partition=0,
                     headers=[(REASON, b"poison"), (SOURCE, source.encode())],
                     on_delivery=lambda err, msg: delivered.append(msg.offset()))  # fmt: skip
    assert producer.flush(30) == 0
    return delivered[0]


def records(
    config: KafkaConfig, topic: str, partition: int
) -> list[tuple[bytes, dict[str, bytes]]]:
    reader = kafka.consumer(config, settings={"enable.partition.eof": True})
    try:
        assignment = [TopicPartition(topic, partition, 0)]
        found = kafka.read_to_end(reader, assignment, time.monotonic() + 20)
        return [(m.value(), dict(m.headers() or [])) for m in found]
    finally:
        reader.close()


def test_two_re_publishes_at_once_produce_it_once(config: KafkaConfig) -> None:
    commands = Topics(config.topic_prefix).commands
    offset = dead_letter(config, f"{commands}/1/7", b"poison-once")
    start = threading.Barrier(2)
    published: list[str] = []
    refused: list[str] = []

    def attempt() -> None:
        start.wait()
        try:
            published.append(republish(config, 0, offset))
        except DeadLetterError as e:
            refused.append(str(e))

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(published) == 1 and published[0].startswith(f"{commands}/1/")
    assert len(refused) == 1 and "re-published already" in refused[0]
    again = [(v, h) for v, h in records(config, commands, 1) if v == b"poison-once"]
    assert len(again) == 1
    assert again[0][1][REPUBLISHED_FROM] == f"{config.topic_prefix}dead-letters/0/{offset}".encode()


def test_a_source_outside_this_deployment_is_refused(config: KafkaConfig) -> None:
    outside = f"{config.topic_prefix}elsewhere"
    spec = TopicSpec(outside, 1, config.replication_factor, workflow_keyed=False)
    ensure_topics(kafka.admin(config), [spec])  # it exists: only the check stops the produce
    offset = dead_letter(config, f"{outside}/0/3", b"poison-elsewhere")
    with pytest.raises(DeadLetterError, match="not one of this deployment's topics"):
        republish(config, 0, offset)
    listed = read_dead_letters(config).letters
    assert [d.offset for d in listed if d.source_topic == outside] == [offset]
    assert not any(d.republished for d in listed)
    assert records(config, outside, 0) == []
