"""The Kafka I/O layer and topic set on a real broker."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic

from streams import kafka
from streams.errors import TopicMismatchError
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, ensure_topics, topic_specs

pytestmark = pytest.mark.integration


@pytest.fixture
def config(kafka_bootstrap: str, topic_prefix: str) -> KafkaConfig:
    return KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=3)


def drain(config: KafkaConfig, topic: str, partitions: int) -> list[bytes]:
    consumer = kafka.consumer(config, settings={"enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values, eof, deadline = [], set(), time.monotonic() + 30
    while len(eof) < partitions and time.monotonic() < deadline:
        for msg in consumer.consume(100, 0.5):
            if msg.error():
                eof.add(msg.partition())
            else:
                values.append(msg.value())
    consumer.close()
    return values


def test_read_committed_sees_committed_transactions_and_nothing_of_aborted_ones(
    config: KafkaConfig,
) -> None:
    ensure_topics(kafka.admin(config), topic_specs(config))
    topic = Topics(config.topic_prefix).history
    producer = kafka.transactional_producer(config, f"test-{uuid.uuid4().hex[:6]}")
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, f"aborted-{i}".encode(), b"wf-1")
    producer.abort_transaction(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, f"committed-{i}".encode(), b"wf-1")
    producer.commit_transaction(30)
    values = drain(config, topic, config.partitions)
    assert values == [f"committed-{i}".encode() for i in range(5)]


def test_topics_are_created_with_their_settings_and_a_second_run_changes_nothing(
    config: KafkaConfig,
) -> None:
    admin = kafka.admin(config)
    specs = topic_specs(config, ["payments"])
    created = ensure_topics(admin, specs)
    assert sorted(created) == sorted(s.name for s in specs)
    t = Topics(config.topic_prefix)
    described = admin.describe_configs(
        [ConfigResource("topic", t.snapshots), ConfigResource("topic", t.commands)]
    )
    configs = {r.name: f.result() for r, f in described.items()}
    assert configs[t.snapshots]["cleanup.policy"].value == "compact"
    assert configs[t.snapshots]["min.compaction.lag.ms"].value == "0"
    assert configs[t.commands]["cleanup.policy"].value == "delete"
    metadata = admin.list_topics(timeout=10).topics
    assert len(metadata[t.timers].partitions) == 3
    assert ensure_topics(admin, specs) == []  # idempotent


def test_an_existing_topic_with_wrong_settings_is_reported(config: KafkaConfig) -> None:
    admin = kafka.admin(config)
    t = Topics(config.topic_prefix)
    admin.create_topics([NewTopic(t.snapshots, 3, 1, config={"cleanup.policy": "delete"})])[
        t.snapshots
    ].result(30)
    with pytest.raises(
        TopicMismatchError, match=r"snapshots: cleanup.policy=delete, expected compact"
    ):
        ensure_topics(admin, topic_specs(config))


def test_workflow_keyed_topics_with_different_partition_counts_refuse_to_start(
    config: KafkaConfig,
) -> None:
    admin = kafka.admin(config)
    t = Topics(config.topic_prefix)
    admin.create_topics([NewTopic(t.history, 5, 1, config={"cleanup.policy": "delete"})])[
        t.history
    ].result(30)
    with pytest.raises(TopicMismatchError, match="same partition count"):
        ensure_topics(admin, topic_specs(config))


def test_our_partitioner_matches_the_producers_murmur2(config: KafkaConfig) -> None:
    ensure_topics(kafka.admin(config), topic_specs(config))
    topic = Topics(config.topic_prefix).commands
    producer = kafka.producer(config)
    landed: dict[str, int] = {}
    keys = [f"workflow-{i}" for i in range(30)]
    for key in keys:
        producer.produce(
            topic,
            b"x",
            key.encode(),
            on_delivery=lambda err, msg: landed.__setitem__(msg.key().decode(), msg.partition()),
        )
    producer.flush(30)
    assert landed == {k: kafka.partition_for(k, config.partitions) for k in keys}
