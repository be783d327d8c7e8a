"""A worker process applies its GC settings (EVERFLOW_GC, EVERFLOW_GC_THRESHOLD) and, when
asked (EVERFLOW_REQUEST_STATS), keeps a file of the requests its Kafka clients sent."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from streams import Client
from streams.settings import DEFAULT_GC_THRESHOLD
from tests.integration.workers import WorkerProcesses, topics_for, with_client

pytestmark = pytest.mark.integration

APP = "tests.integration.apps.gc_probe"


def probe(client: Client, run_id: str) -> Any:
    return client.execute_workflow(
        "GcProbe", id=run_id, task_queue="probe", timeout=timedelta(seconds=90)
    )


def test_worker_processes_apply_their_gc_settings_and_count_their_requests(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, tmp_path: Path
) -> None:
    stats = tmp_path / "requests.json"
    tuned = topics_for(kafka_bootstrap, topic_prefix, "probe")
    untuned = topics_for(kafka_bootstrap, f"{topic_prefix}off.", "probe")
    workers.start(
        "tuned",
        APP,
        task_queue="probe",
        extra_env={"EVERFLOW_GC_THRESHOLD": "40000,15,90", "EVERFLOW_REQUEST_STATS": str(stats)},
    )
    workers.start(
        "untuned",
        APP,
        task_queue="probe",
        extra_env={"EVERFLOW_GC": "off", "EVERFLOW_TOPIC_PREFIX": untuned.topic_prefix},
    )

    async def both(client: Client) -> Any:
        return await probe(client, "probe-1")

    on = with_client(tuned, both)
    off = with_client(untuned, both)

    assert on["threshold"] == [40000, 15, 90]
    assert on["frozen"] > 1000  # the modules and the registry of start-up
    assert off["frozen"] == 0
    assert tuple(off["threshold"]) != DEFAULT_GC_THRESHOLD
    assert off["threshold"] != [40000, 15, 90]

    # the tuned worker's clients report their requests: the run's transactions are there
    deadline = time.monotonic() + 30
    report: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if stats.exists():
            report = json.loads(stats.read_text())
            if {"Produce", "EndTxn"} <= set(report["by_type"]):
                break
        time.sleep(0.2)
    assert {"Produce", "EndTxn", "Fetch"} <= set(report["by_type"]), report
    assert report["requests"] > 0
    assert report["clients"] >= 3  # the processor's consumer and producers, the runner's
    assert len(report["gc_collections"]) == 3  # and the worker's collections per generation
    assert all(isinstance(n, int) and n >= 0 for n in report["gc_collections"])
