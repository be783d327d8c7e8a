"""Payloads over the configured limit are refused where they are made, with a clear error —
never a stuck partition or a silent drop."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from streams import Client, PayloadTooLargeError, kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, ensure_topics, topic_specs
from tests.integration.workers import WorkerProcesses

pytestmark = pytest.mark.integration


def test_client_refuses_arguments_over_the_limit_and_sends_nothing(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    config = KafkaConfig(
        bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=2, max_payload_bytes=10_000
    )
    ensure_topics(kafka.admin(config), topic_specs(config))

    async def main() -> None:
        client = await asyncio.to_thread(Client, config)
        try:
            with pytest.raises(PayloadTooLargeError, match=r"over the limit of 10000 bytes"):
                await client.start_workflow("AnyWorkflow", "y" * 20_000, id="big", task_queue="q")
        finally:
            client.close()

    asyncio.run(main())
    consumer = kafka.consumer(config)
    commands = Topics(topic_prefix).commands
    # a just-created partition may answer NOT_LEADER for a moment: end_offset retries
    ends = [kafka.end_offset(consumer, commands, p) for p in range(2)]
    consumer.close()
    assert ends == [0, 0]


def test_activity_result_over_the_limit_fails_the_activity_and_the_run_goes_on(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=2)
    ensure_topics(kafka.admin(config), topic_specs(config, ["limits"]))
    workers.start(
        "w1",
        "tests.integration.apps.limits",
        task_queue="limits",
        extra_env={"EVERFLOW_PARTITIONS": "2", "EVERFLOW_MAX_PAYLOAD_BYTES": "50000"},
    )

    async def main() -> tuple[str, str]:
        client = await asyncio.to_thread(Client, config)
        try:
            small = await client.execute_workflow(
                "BigResult", 10, id="small", task_queue="limits", timeout=timedelta(seconds=60)
            )
            big = await client.execute_workflow(
                "BigResult", 80_000, id="big", task_queue="limits", timeout=timedelta(seconds=60)
            )
            return small, big
        finally:
            client.close()

    small, big = asyncio.run(main())
    assert small == "accepted"
    assert big.startswith("refused: the result of activity 'big_result' is ")
    assert "over the limit of 50000 bytes" in big
