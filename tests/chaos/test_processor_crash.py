"""The workflow processor is SIGKILLed between producing a transaction and committing it."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from examples.money_transfer import Bank, MoneyTransferWorkflow, TransferOrder
from streams import Client, kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, ensure_topics, topic_specs
from streams.wire import wire
from tests.helpers import wait_until
from tests.integration.workers import WorkerProcesses

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def history_of(config: KafkaConfig, workflow_id: str, isolation: str) -> list[tuple[int, str]]:
    """event_ids of a run's events on the history topic, as a reader with `isolation` sees."""
    consumer = kafka.consumer(
        config, settings={"enable.partition.eof": True, "isolation.level": isolation}
    )
    p = kafka.partition_for(workflow_id, config.partitions)
    consumer.assign([TopicPartition(Topics(config.topic_prefix).history, p, 0)])
    ids: list[tuple[int, str]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        msgs = consumer.consume(200, 0.5)
        if any(m.error() for m in msgs):
            ids += [_id(m) for m in msgs if not m.error() and m.key() == workflow_id.encode()]
            break
        ids += [_id(m) for m in msgs if m.key() == workflow_id.encode()]
    consumer.close()
    return ids


def _id(msg: Any) -> tuple[int, str]:
    event = wire().event.decode(msg.value())
    return event.event_id, type(event.attributes).__name__


def test_processor_killed_between_produce_and_commit_loses_and_duplicates_nothing(
    kafka_bootstrap: str,
    topic_prefix: str,
    workers: WorkerProcesses,
    worker_env: dict[str, str],
) -> None:
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=4)
    ensure_topics(kafka.admin(config), topic_specs(config, ["transfers"]))
    quiet = {"EVERFLOW_BANK_FLAKY": "0"}
    # transaction 2 records the withdraw's result and schedules the deposit
    doomed = workers.start("w1", extra_env={**quiet, "EVERFLOW_FAULT_KILL_BEFORE_COMMIT": "2"})

    async def main() -> str:
        client = await asyncio.to_thread(Client, config)
        try:
            handle = await client.start_workflow(
                MoneyTransferWorkflow,
                TransferOrder("alice", "bob", 5, "tx-crash"),
                id="tx-crash",
                task_queue="transfers",
            )
            await asyncio.to_thread(
                wait_until,
                lambda: doomed.poll() is not None,
                60,
                message="the processor should have killed itself",
            )
            assert doomed.returncode == -9
            workers.start("w1", extra_env=quiet)
            return await handle.result(timeout=timedelta(seconds=60))  # type: ignore[no-any-return]
        finally:
            client.close()

    assert asyncio.run(main()) == "withdrew 5 from alice; deposited 5 into bob"
    committed = history_of(config, "tx-crash", "read_committed")
    assert [i for i, _ in committed] == [1, 2, 3, 4, 5, 6], committed  # none lost, none twice
    # the killed transaction really reached the broker: uncommitted readers see its events
    uncommitted = history_of(config, "tx-crash", "read_uncommitted")
    assert len(uncommitted) > len(committed)
    assert [i for i, _ in uncommitted].count(3) == 2
    bank = Bank(Path(worker_env["EVERFLOW_BANK_LEDGER"]))
    assert sorted(e["delta"] for e in bank.entries()) == [-5, 5]
