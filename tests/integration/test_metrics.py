"""A worker's Prometheus endpoint, scraped for real: the counters match the runs the test
made, `promtool check metrics` accepts the text, and a real Prometheus server scraping the
worker answers a query for the completed runs with the right number."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from streams import Client, Worker
from streams.errors import WorkflowFailureError
from tests.helpers import wait_until
from tests.integration.apps.metrics import greet
from tests.integration.workers import WorkerProcesses, topics_for, with_client

pytestmark = pytest.mark.integration

QUEUE = "greetings"
APP = "tests.integration.apps.metrics"
GREETED = 4  # Greet runs; with the one GreetFlaky run, the runs that complete
COMPLETED = GREETED + 1


def test_a_worker_metrics_endpoint_is_scraped_by_prometheus(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, tmp_path: Path
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, QUEUE)
    proc = workers.start("m1", APP, task_queue=QUEUE, options=["--metrics-port", "0"])
    port = int(
        wait_until(
            lambda: re.search(
                r"metrics served at http://127\.0\.0\.1:(\d+)/metrics", workers.log_of(proc)
            ),
            timeout=30,
            message="the worker logs the metrics port it chose",
        ).group(1)
    )

    async def runs(client: Client) -> list[Any]:
        handles = [
            await client.start_workflow("Greet", f"g{i}", id=f"greet-{i}", task_queue=QUEUE)
            for i in range(GREETED)
        ]
        handles.append(await client.start_workflow("GreetFlaky", "f", id="flaky", task_queue=QUEUE))
        results = [await h.result(timeout=timedelta(seconds=60)) for h in handles]
        refused = await client.start_workflow("Refuse", "r", id="refuse", task_queue=QUEUE)
        await client.start_workflow("Buggy", "b", id="buggy", task_queue=QUEUE)
        with pytest.raises(WorkflowFailureError):
            await refused.result(timeout=timedelta(seconds=60))
        return results

    results = with_client(config, runs)
    assert results[-1] == "hello f, at last"

    # the counts are read once their transactions committed; lag once librdkafka reported it
    def settled() -> dict[str, Metric] | None:
        families = scrape(port)
        closed = totals(families, "everflow_workflow_closed", "status")
        lag = {s.labels["topic"] for s in families["everflow_consumer_lag_records"].samples}
        blocked = totals(families, "everflow_workflow_blocked", "workflow_type", "")
        done = closed == {"completed": COMPLETED, "failed": 1} and blocked == {"Buggy": 1}
        read = {f"{topic_prefix}commands", f"{topic_prefix}tasks.{QUEUE}"}
        return families if done and lag == read else None

    families = wait_until(settled, timeout=20, interval=0.2, message="the counters settle")
    started = totals(families, "everflow_workflow_started", "workflow_type")
    assert started == {"Greet": GREETED, "GreetFlaky": 1, "Refuse": 1, "Buggy": 1}
    closed = {
        (s.labels["workflow_type"], s.labels["status"]): s.value
        for s in families["everflow_workflow_closed"].samples
    }
    assert closed == {
        ("Greet", "completed"): 4,
        ("GreetFlaky", "completed"): 1,
        ("Refuse", "failed"): 1,
    }
    e2e = sample_sum(families, "everflow_workflow_endtoend_latency_seconds", "_count")
    assert e2e == COMPLETED + 1
    failed = families["everflow_activity_failed"].samples
    assert [(s.labels["activity_type"], s.labels["error_type"], s.value) for s in failed] == [
        ("flaky", "ConnectionError", 1)
    ]
    attempts = totals(families, "everflow_activity_attempts", "activity_type")
    assert attempts == {"greet": GREETED, "flaky": 2}
    execution = sample_sum(families, "everflow_activity_execution_latency_seconds", "_count")
    assert execution == GREETED + 2
    s2s = sample_sum(families, "everflow_activity_schedule_to_start_latency_seconds", "_count")
    assert s2s == GREETED + 2
    # each Greet slept on a timer; the flaky activity's retry waited on one
    assert sample_sum(families, "everflow_timer_lateness_seconds", "_count") == GREETED + 1
    assert sample_sum(families, "everflow_timer_fired_total", "_total") == GREETED + 1
    assert sample_sum(families, "everflow_transactions", "_total") >= 1
    assert sample_sum(families, "everflow_transaction_commit_latency_seconds", "_count") >= 1
    assert sample_sum(families, "everflow_restore_duration_seconds", "_count") >= 1
    lag_topics = {s.labels["topic"] for s in families["everflow_consumer_lag_records"].samples}
    assert lag_topics == {f"{topic_prefix}commands", f"{topic_prefix}tasks.{QUEUE}"}
    assert families["everflow_partitions_owned"].samples[0].value == 4

    text = fetch(port)
    promtool = subprocess.run(
        ["promtool", "check", "metrics"], input=text, text=True, capture_output=True, timeout=30
    )
    assert promtool.returncode == 0, promtool.stdout + promtool.stderr

    with Prometheus(port, tmp_path) as api:
        wait_until(
            lambda: query(api, 'up{job="everflow"}') == 1.0,
            timeout=30,
            interval=0.25,
            message="Prometheus scrapes the worker",
        )
        completed = 'sum(everflow_workflow_closed_total{status="completed"})'
        assert wait_until(lambda: query(api, completed), timeout=10) == COMPLETED


def test_an_in_process_worker_serves_the_port_it_chose_and_the_run_index_lag(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, QUEUE)

    async def main() -> tuple[int, dict[str, Metric]]:
        client = await asyncio.to_thread(Client, config)
        worker = Worker(
            client,
            task_queue=QUEUE,
            activities=[greet],
            instance_id="m2",
            metrics_port=0,
            run_visibility=False,  # the only lag source is the test's
        )
        worker.metrics.register_lag_source(lambda: {1: (3, 1.5)})
        running = asyncio.create_task(worker.run())
        try:
            for _ in range(300):
                if worker.metrics_port or running.done():
                    break
                await asyncio.sleep(0.05)
            assert worker.metrics_port, "the worker chose a port"
            return worker.metrics_port, await asyncio.to_thread(scrape, worker.metrics_port)
        finally:
            worker.shutdown()
            await running
            client.close()

    port, families = asyncio.run(main())
    lag = families["everflow_visibility_lag_records"].samples
    assert [(s.labels, s.value) for s in lag] == [({"partition": "1"}, 3)]
    seconds = families["everflow_visibility_lag_seconds"].samples
    assert [(s.labels, s.value) for s in seconds] == [({"partition": "1"}, 1.5)]
    slots = families["everflow_activity_slots_available"].samples
    assert [(s.labels, s.value) for s in slots] == [({"task_queue": QUEUE}, 64)]
    assert "everflow_workflow_closed" not in families  # no workflow processor in this worker
    with pytest.raises(OSError):  # stopped with the worker
        fetch(port)


# ---- scraping ------------------------------------------------------------------------------------
def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()  # type: ignore[no-any-return]


def scrape(port: int) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(fetch(port))}


def totals(
    families: dict[str, Metric], name: str, label: str, suffix: str = "_total"
) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in families[name].samples:
        if s.name == f"{name}{suffix}":
            out[s.labels[label]] = out.get(s.labels[label], 0) + s.value
    return out


def sample_sum(families: dict[str, Metric], name: str, suffix: str) -> float:
    family = families[name.removesuffix("_total")]
    return sum(s.value for s in family.samples if s.name == f"{family.name}{suffix}")


# ---- a real Prometheus server --------------------------------------------------------------------
class Prometheus:
    """`/usr/bin/prometheus` scraping the worker every second, on a free port; stopped by
    its PID on exit."""

    def __init__(self, target_port: int, tmp: Path) -> None:
        self.port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: everflow\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        self.args = [
            "/usr/bin/prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.log_path = tmp / "prometheus.log"

    def __enter__(self) -> str:
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        finally:
            self.log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(api: str, promql: str) -> float | None:
    """The single value of an instant query, or None while there is none (or no server)."""
    url = f"{api}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
    except OSError:  # not listening yet
        return None
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None
