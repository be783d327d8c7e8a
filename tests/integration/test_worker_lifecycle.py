"""Worker processes: long activities keep their consumer alive; SIGTERM stops gracefully."""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta
from pathlib import Path

import pytest

from examples.money_transfer import MoneyTransferWorkflow, TransferOrder
from streams import Client, kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import ensure_topics, topic_specs
from tests.integration.workers import WorkerProcesses

pytestmark = pytest.mark.integration


def test_activity_longer_than_max_poll_interval_runs_once(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, tmp_path: Path
) -> None:
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=2)
    ensure_topics(kafka.admin(config), topic_specs(config, ["slow"]))
    short_poll = {
        "EVERFLOW_PARTITIONS": "2",
        "EVERFLOW_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "EVERFLOW_KAFKA_MAX_POLL_INTERVAL_MS": "7000",
        "SLOW_MARKER_DIR": str(tmp_path),
    }
    workers.start("w1", "tests.integration.apps.slow", task_queue="slow", extra_env=short_poll)

    async def main() -> str:
        client = await asyncio.to_thread(Client, config)
        try:
            return await client.execute_workflow(  # type: ignore[no-any-return]
                "SlowReport",
                10.0,
                id="slow-1",
                task_queue="slow",
                timeout=timedelta(seconds=60),
            )
        finally:
            client.close()

    assert asyncio.run(main()) == "slept 10.0"
    assert len(list(tmp_path.glob("run-*"))) == 1  # no rebalance re-ran it
    assert "revoked partitions" not in workers.logs()


def test_sigterm_stops_a_worker_gracefully(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=4)
    ensure_topics(kafka.admin(config), topic_specs(config, ["transfers"]))
    worker = workers.start("w1", extra_env={"EVERFLOW_BANK_FLAKY": "0"})

    async def main() -> None:
        client = await asyncio.to_thread(Client, config)
        try:
            await client.execute_workflow(
                MoneyTransferWorkflow,
                TransferOrder("a", "b", 1, "g-1"),
                id="g-1",
                task_queue="transfers",
            )
        finally:
            client.close()

    asyncio.run(main())
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert "processor stopped" in workers.logs()
