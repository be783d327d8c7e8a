"""The processor's commit thread on a real broker: a committed transaction's delivery reports
are applied on the settling thread; a fenced one raises at settle, its reports are dropped,
and nothing it wrote becomes visible."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from processors.workflow_processor.stats import Timing
from processors.workflow_processor.transactions import Transactions
from streams import kafka
from streams.kafka.config import KafkaConfig

pytestmark = pytest.mark.integration


def _committed_values(config: KafkaConfig, topic: str) -> list[bytes]:
    reader = kafka.consumer(config, settings={"enable.partition.eof": True})
    try:
        return [m.value() for m in kafka.read_to_end(reader, [TopicPartition(topic, 0, 0)])]
    finally:
        reader.close()


def test_commit_thread_applies_reports_on_settle_and_a_fenced_commit_writes_nothing(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix)
    topic = f"{topic_prefix}out"
    admin = kafka.admin(config)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    txn_id = f"{topic_prefix}wp-test"
    producer = kafka.transactional_producer(config, txn_id)
    producer.init_transactions(30)
    transactions: Transactions[str] = Transactions(producer, Timing())
    applied: list[tuple[str, Any]] = []

    def report(err: Any, msg: Any) -> None:
        applied.append((threading.current_thread().name, err))

    try:
        transactions.begin()
        producer.produce(topic, b"first", on_delivery=transactions.deferred(report))
        transactions.hand_off([], None, "first committed")
        assert transactions.settle() == "first committed"
        assert applied == [(threading.current_thread().name, None)]
        assert transactions.settle() is None  # nothing in flight any more

        transactions.begin()
        producer.produce(topic, b"second", on_delivery=transactions.deferred(report))
        producer.flush(10)  # on the broker, uncommitted
        successor = kafka.transactional_producer(config, txn_id)
        successor.init_transactions(30)  # fences the first producer
        transactions.hand_off([], None, "second committed")
        with pytest.raises(KafkaException):
            transactions.settle()
        assert len(applied) == 1, "reports of a failed transaction must not be applied"
        assert not transactions.in_flight
        successor.flush(10)
    finally:
        transactions.close()
    assert _committed_values(config, topic) == [b"first"]
