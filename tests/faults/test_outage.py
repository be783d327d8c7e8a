"""A worker waits out a cluster that is gone for minutes (soak tier: `make soak`).

The only broker is SIGKILLed while runs sleep on timers, and started again 150 s later: long
enough for the processor's restore to fail (it waits up to 60 s for open transactions, then
asks for metadata, which fails) and for a new producer's `init_transactions` to time out.
The worker process must still be running when the broker comes back, and every run must then
close with its timer fired after it was due.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from streams import Client
from streams.dev.broker import LocalKafka
from tests.integration.workers import WorkerProcesses, topics_for, with_client

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.soak]

APP = "tests.integration.apps.timing"
OUTAGE_SECONDS = 150
NAPS = 5


@pytest.mark.timeout(600)
def test_a_worker_waits_out_a_cluster_gone_for_minutes_and_its_runs_go_on(
    topic_prefix: str, workers: WorkerProcesses, tmp_path: Path
) -> None:
    with LocalKafka(tmp_path / "broker") as broker:
        config = topics_for(broker.bootstrap, topic_prefix, "timing", partitions=2)
        env = {"EVERFLOW_BOOTSTRAP": broker.bootstrap, "EVERFLOW_PARTITIONS": "2"}
        worker = workers.start("w1", APP, task_queue="timing", extra_env=env)

        async def start(client: Client) -> float:
            await client.execute_workflow(
                "Nap", 0.1, id="warm", task_queue="timing", timeout=timedelta(seconds=60)
            )
            began = time.time()
            for i in range(NAPS):  # timers due before, during and after the outage
                seconds = 5.0 + i * OUTAGE_SECONDS / NAPS
                await client.start_workflow("Nap", seconds, id=f"nap-{i}", task_queue="timing")
            return began

        began = with_client(config, start)
        broker.kill()
        time.sleep(OUTAGE_SECONDS)
        alive_through_outage = worker.poll() is None
        broker.start()

        async def finish(client: Client) -> list[int]:
            return [
                await client.get_workflow_handle(f"nap-{i}").result(timeout=timedelta(seconds=180))
                for i in range(NAPS)
            ]

        fired = with_client(config, finish)
        logs = workers.logs()

    assert alive_through_outage, f"the worker exited during the outage:\n{logs[-4000:]}"
    assert worker.poll() is None, "the worker exited after the outage"
    assert "restoring partitions [0, 1] failed, trying again" in logs  # the outage was met
    for i, at in enumerate(fired):  # each timer fired once, and never before it was due
        assert at / 1000 >= began + 5.0 + i * OUTAGE_SECONDS / NAPS - 0.5
