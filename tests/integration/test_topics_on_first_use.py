"""A client connecting to a cluster without the prefix's topics makes them, as a worker does
(with the same checks), unless told not to; then it says to run `everflow topics create`."""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

from examples.money_transfer import MoneyTransferWorkflow, TransferOrder
from streams import BrokerError, Client, ConfigError, TopicMismatchError, kafka
from streams.dev.broker import LocalKafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import topic_specs, verify_topics
from tests.integration.workers import WorkerProcesses

pytestmark = pytest.mark.integration
QUEUE = "transfers"


def prefixed(bootstrap: str, prefix: str) -> list[str]:
    """The names of the topics under `prefix` on the cluster."""
    topics = kafka.admin(KafkaConfig(bootstrap=bootstrap)).list_topics(timeout=10).topics
    return sorted(name for name in topics if name.startswith(prefix))


def test_a_client_on_a_fresh_prefix_makes_the_topics_and_a_worker_runs_the_workflow(
    kafka_bootstrap: str,
    topic_prefix: str,
    workers: WorkerProcesses,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVERFLOW_PARTITIONS", "4")  # as the worker's environment
    monkeypatch.delenv("EVERFLOW_CREATE_TOPICS", raising=False)
    assert prefixed(kafka_bootstrap, topic_prefix) == []

    async def main() -> str:
        client = await Client.connect(kafka_bootstrap, namespace=topic_prefix)  # Temporal's name
        try:
            config = client.config
            specs = topic_specs(config)
            assert prefixed(kafka_bootstrap, topic_prefix) == sorted(s.name for s in specs)
            verify_topics(kafka.admin(config), specs)  # what a worker checks: they match
            workers.start("w1")  # on the topics the client made; it adds its task queue's
            order = TransferOrder("alice", "bob", 10, "first-use")
            result: str = await client.execute_workflow(
                MoneyTransferWorkflow,
                order,
                id="first-use",
                task_queue=QUEUE,
                timeout=timedelta(seconds=90),
            )
            return result
        finally:
            client.close()

    assert asyncio.run(main()) == "withdrew 10 from alice; deposited 10 into bob"


def test_told_not_to_a_client_says_to_run_topics_create_and_makes_nothing(
    kafka_bootstrap: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = rf"topic {topic_prefix}commands does not exist; run `everflow topics create`"
    with pytest.raises(BrokerError, match=missing):
        asyncio.run(Client.connect(kafka_bootstrap, topic_prefix=topic_prefix, create_topics=False))
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix)
    with pytest.raises(BrokerError, match=missing):
        Client(config, create_topics=False)
    monkeypatch.setenv("EVERFLOW_CREATE_TOPICS", "0")  # the same, from the environment
    with pytest.raises(BrokerError, match=missing):
        asyncio.run(Client.connect(kafka_bootstrap, topic_prefix=topic_prefix))
    assert prefixed(kafka_bootstrap, topic_prefix) == []


def test_a_client_meeting_a_topic_that_differs_refuses_as_a_worker_does(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=4)
    admin = kafka.admin(config)
    # someone made `history` by hand, with another partition count than the prefix's
    made = admin.create_topics([NewTopic(f"{topic_prefix}history", 3, 1)])
    made[f"{topic_prefix}history"].result(30)
    with pytest.raises(TopicMismatchError, match="the same partition count"):
        Client(config, create_topics=True)


def test_on_a_broker_that_creates_topics_it_is_asked_about_a_client_still_makes_its_own(
    tmp_path: Path,
) -> None:
    # Kafka's default, which the dev broker turns off: a metadata request naming a missing
    # topic may create it, with the broker's partition count and settings
    broker = LocalKafka(tmp_path / "kafka")
    broker._node.properties["auto.create.topics.enable"] = "true"  # noqa: SLF001 (set up)
    try:
        broker.start(timeout=120)
        config = KafkaConfig(bootstrap=broker.bootstrap, topic_prefix="auto.", partitions=4)
        Client(config).close()
        verify_topics(kafka.admin(config), topic_specs(config))  # Everflow's, not the broker's
    finally:
        broker.close()


def test_an_address_where_no_broker_listens_is_said_plainly(topic_prefix: str) -> None:
    with socket.socket() as probe:  # a port nothing listens on (e.g. a Temporal frontend's)
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(BrokerError, match=f"cannot reach a Kafka broker at {address}"):
        asyncio.run(Client.connect(address, namespace=topic_prefix))
    with pytest.raises(ConfigError, match="give one"):
        asyncio.run(Client.connect(address, namespace="a.", topic_prefix="b."))
