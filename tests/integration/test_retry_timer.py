"""A retry's backoff is a durable timer: it survives the worker being killed during it."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest

from streams import Client, kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import ensure_topics, topic_specs
from tests.integration.workers import WorkerProcesses

pytestmark = pytest.mark.integration


def test_backoff_timer_fires_after_the_worker_was_killed_during_it(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=2)
    ensure_topics(kafka.admin(config), topic_specs(config, ["pay"]))
    env = {"EVERFLOW_PARTITIONS": "2"}
    first = workers.start("w1", "tests.integration.apps.retry", task_queue="pay", extra_env=env)

    async def main() -> tuple[str, list[Any], float]:
        client = await asyncio.to_thread(Client, config)
        try:
            handle = await client.start_workflow("Charge", 42, id="charge-1", task_queue="pay")
            for _ in range(100):  # until the first attempt failed and the backoff started
                history = await handle.fetch_history()
                if any(type(e.attributes).__name__ == "ActivityAttemptFailed" for e in history):
                    break
                await asyncio.sleep(0.1)
            workers.kill(first)
            killed_at = time.time()
            workers.start("w1", "tests.integration.apps.retry", task_queue="pay", extra_env=env)
            result = await handle.result(timeout=timedelta(seconds=60))
            history = await handle.fetch_history()
            return result, history, killed_at
        finally:
            client.close()

    result, history, _ = asyncio.run(main())
    assert result == "charged 42 on attempt 2"
    kinds = [type(e.attributes).__name__ for e in history]
    assert kinds == [
        "WorkflowStarted",
        "ActivityScheduled",
        "ActivityAttemptFailed",
        "ActivityRetried",
        "ActivityCompleted",
        "WorkflowCompleted",
    ]
