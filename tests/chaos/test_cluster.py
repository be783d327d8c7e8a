"""The three-node local cluster: it forms, and survives losing a node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams import KafkaAuthenticationError, kafka
from streams.dev.cluster import NODES, LocalCluster
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import ensure_topics, topic_specs
from tests.helpers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.cluster]

PARTITIONS = 3


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster() as cluster:
        yield cluster


def in_sync_replicas(admin: AdminClient, topic: str) -> list[int]:
    """The ISR size of each partition (empty while the topic is not in the metadata)."""
    partitions = admin.list_topics(topic, timeout=5).topics[topic].partitions
    return [len(partitions[p].isrs) for p in sorted(partitions)]


def test_three_nodes_form_one_cluster(cluster: LocalCluster) -> None:
    metadata = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(timeout=10)

    assert sorted(metadata.brokers) == [1, 2, 3]
    assert all(cluster.pid(i) is not None for i in range(NODES))


def test_acks_all_writes_succeed_with_one_node_killed(
    cluster: LocalCluster, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}replicated"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    new_topic = NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})
    admin.create_topics([new_topic], operation_timeout=30)[topic].result(timeout=35)
    wait_until(
        lambda: in_sync_replicas(admin, topic) == [3] * PARTITIONS,
        timeout=30,
        message=f"{topic} fully replicated",
    )
    leader = admin.list_topics(topic, timeout=5).topics[topic].partitions[0].leader
    victim = leader - 1  # node.id is index + 1: kill the leader of partition 0

    cluster.kill_node(victim)
    assert cluster.pid(victim) is None

    errors: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            errors.append(error)

    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "delivery.timeout.ms": 45000,
        }
    )
    for n in range(30):
        producer.produce(
            topic,
            f"m{n}".encode(),
            partition=n % PARTITIONS,
            on_delivery=on_delivery,
        )
    assert producer.flush(50) == 0, "acks=all writes did not complete with one node down"
    assert errors == []

    cluster.start_node(victim)
    wait_until(
        lambda: in_sync_replicas(admin, topic) == [3] * PARTITIONS,
        timeout=45,
        message=f"node {victim} back in the ISR of every partition of {topic}",
    )
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"{topic}reader"})
    try:
        ends = [kafka.end_offset(consumer, topic, p) for p in range(PARTITIONS)]
    finally:
        consumer.close()
    assert sum(ends) == 30


def test_topics_are_made_while_the_active_controller_fails_over(
    cluster: LocalCluster, topic_prefix: str
) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    controller = admin.describe_cluster(request_timeout=10).result(timeout=15).controller.id
    victim = controller - 1
    config = KafkaConfig(
        bootstrap=cluster.bootstrap, topic_prefix=topic_prefix, partitions=3, replication_factor=3
    )
    specs = topic_specs(config, ["q"])

    cluster.kill_node(victim)
    try:
        created = ensure_topics(kafka.admin(config), specs)
    finally:
        cluster.start_node(victim)

    assert sorted(created) == sorted(s.name for s in specs)


def test_a_secure_cluster_replicates_over_sasl_ssl_and_refuses_the_anonymous(
    tmp_path: Path, topic_prefix: str
) -> None:
    with LocalCluster(tmp_path / "secure", secure=True) as secure:
        config = KafkaConfig(
            bootstrap=secure.bootstrap,
            topic_prefix=topic_prefix,
            partitions=PARTITIONS,
            replication_factor=3,
            kafka=secure.client_settings(),  # the admin: SCRAM over TLS
        )
        ensure_topics(kafka.admin(config), topic_specs(config, ["q"]))
        topic = f"{topic_prefix}commands"
        admin = kafka.admin(config)
        # the brokers replicate to each other over their SASL_SSL listener
        wait_until(
            lambda: in_sync_replicas(admin, topic) == [3] * PARTITIONS,
            timeout=60,
            message=f"every partition of {topic} in sync on three nodes",
        )
        producer = Producer(config.client_settings(acks="all"))
        producer.produce(topic, b"over tls", partition=0)
        assert producer.flush(30) == 0
        consumer = kafka.consumer(config, settings={"enable.partition.eof": True})
        try:
            read = [m.value() for m in kafka.read_to_end(consumer, [TopicPartition(topic, 0, 0)])]
        finally:
            consumer.close()
        assert read == [b"over tls"]
        # no credentials: refused at once, by name
        anonymous = KafkaConfig(bootstrap=secure.bootstrap, topic_prefix=topic_prefix)
        with pytest.raises(KafkaAuthenticationError):
            kafka.admin(anonymous).list_topics(timeout=10)
