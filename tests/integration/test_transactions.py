"""The processor's commit thread on a real broker: a committed transaction's delivery reports
are applied on the settling thread; a fenced one raises at settle (classified as fenced), its
reports are dropped, and nothing it wrote becomes visible; one of unknown outcome re-creates
the producer, which fences the old one."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from processors.workflow_processor.stats import Timing
from processors.workflow_processor.transactions import (
    Call,
    Failure,
    TransactionFailed,
    Transactions,
    classify,
    init_transactions,
)
from streams import kafka
from streams.kafka.config import KafkaConfig
from streams.settings import FaultSettings

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
        with pytest.raises(TransactionFailed) as failed:
            transactions.settle()
        # librdkafka's error, classified: fenced (the processor stops, never re-creates)
        assert isinstance(failed.value.cause, KafkaException)
        assert failed.value.failure is Failure.FENCED, failed.value
        assert len(applied) == 1, "reports of a failed transaction must not be applied"
        assert not transactions.in_flight
        successor.flush(10)
    finally:
        transactions.close()
    assert _committed_values(config, topic) == [b"first"]


def test_a_commit_of_unknown_outcome_re_creates_the_producer_and_fences_the_old_one(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """The commit lands and is reported as timed out: the producer is re-created with the
    same transactional.id, the old one can no longer commit anything, and the new one goes
    on. What landed is there once."""
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix)
    topic = f"{topic_prefix}out"
    admin = kafka.admin(config)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    txn_id = f"{topic_prefix}wp-unknown"

    def new_producer() -> Producer:
        producer = kafka.transactional_producer(config, txn_id)
        init_transactions(producer, txn_id)
        return producer

    old = new_producer()
    faults = FaultSettings(unknown_after_commit=1)
    transactions: Transactions[str] = Transactions(old, Timing(), faults, new_producer=new_producer)
    try:
        transactions.begin()
        old.produce(topic, b"landed")
        transactions.hand_off([], None, "first")
        with pytest.raises(TransactionFailed) as failed:
            transactions.settle()
        assert failed.value.failure is Failure.UNKNOWN
        new = transactions.recreate(failed.value)
        assert new is not old and transactions.producer is new

        # the old producer's epoch is fenced: nothing of it commits any more
        with pytest.raises(KafkaException) as refused:
            old.begin_transaction()
            old.produce(topic, b"zombie")
            old.commit_transaction(30)
        assert classify(refused.value.args[0], Call.COMMIT) is Failure.FENCED, refused.value

        transactions.begin()
        new.produce(topic, b"after")
        transactions.hand_off([], None, "second")
        assert transactions.settle() == "second"
    finally:
        transactions.close()
    assert _committed_values(config, topic) == [b"landed", b"after"]
