"""Downstream consumers read `completions` and `history` with plain confluent-kafka +
fastavro."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest

from examples.completions_consumer import completions
from examples.history_consumer import history
from examples.money_transfer import MoneyTransferWorkflow, TransferOrder
from streams import Client, kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import ensure_topics, topic_specs
from tests.integration.workers import WorkerProcesses

pytestmark = pytest.mark.integration


def test_completions_example_reads_every_closed_run(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=4)
    ensure_topics(kafka.admin(config), topic_specs(config, ["transfers"]))
    workers.start("w1", extra_env={"EVERFLOW_BANK_FLAKY": "0"})

    async def main() -> None:
        client = await asyncio.to_thread(Client, config)
        try:
            await asyncio.gather(
                *(
                    client.execute_workflow(
                        MoneyTransferWorkflow,
                        TransferOrder("a", "b", i, f"d-{i}"),
                        id=f"d-{i}",
                        task_queue="transfers",
                    )
                    for i in range(3)
                )
            )
        finally:
            client.close()

    asyncio.run(main())
    stream = completions(kafka_bootstrap, topic_prefix, f"g-{uuid.uuid4().hex[:6]}", True)
    records = list(itertools.islice(stream, 3))
    stream.close()
    assert sorted(r["workflow_id"] for r in records) == ["d-0", "d-1", "d-2"]
    assert {r["status"] for r in records} == {"COMPLETED"}
    assert all(r["workflow_type"] == "MoneyTransferWorkflow" for r in records)
    assert all(r["history_length"] == 6 for r in records)
    # the same runs' histories, read with plain confluent-kafka + fastavro as well
    events = list(history(kafka_bootstrap, topic_prefix, f"h-{uuid.uuid4().hex[:6]}", True, 3))
    runs: dict[str, list[str]] = {}
    for e in events:
        runs.setdefault(e["workflow_id"], []).append(e["type"])
    assert sorted(runs) == ["d-0", "d-1", "d-2"]
    assert runs["d-0"] == [
        "WorkflowStarted",
        "ActivityScheduled",
        "ActivityCompleted",
        "ActivityScheduled",
        "ActivityCompleted",
        "WorkflowCompleted",
    ]
