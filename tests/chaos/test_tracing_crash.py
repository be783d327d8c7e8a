"""Traces across a SIGKILLed workflow processor, and with a run cache so small that runs are
rebuilt by replay: one span per step, none twice, all in the trace the client's start began.

Every process (the test's client, the processors, the activity runner) appends its spans to
one JSON lines file (`tests/tracing_worker.py`); the test joins them by trace ID.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from streams import Client, kafka
from streams.cli.workers import workers_view
from streams.kafka.config import KafkaConfig
from streams.tracing import span_id
from streams.wire.events import ActivityRetried, ActivityScheduled, HistoryEvent
from tests.helpers import wait_until
from tests.integration.apps.traced import STEPS, TracedOrder
from tests.integration.workers import WorkerProcesses, topics_for
from tests.tracing_worker import install

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

APPS = "tests.integration.apps.traced"
QUEUE = "traced"
SPANS_WORKER = "tests.tracing_worker"
Runs = dict[str, tuple[str, list[HistoryEvent]]]  # workflow ID -> (run ID, history)


def run_all(config: KafkaConfig, ids: list[str], during: Any = None) -> Runs:
    """Starts a TracedOrder per ID with a tracing client, runs `during()` (in a thread)
    meanwhile, and returns each run's history once all completed."""

    async def main() -> Runs:
        client = await asyncio.to_thread(Client, config, None, tracing=True)
        try:
            watcher = asyncio.ensure_future(asyncio.to_thread(during or (lambda: None)))
            handles = [
                await client.start_workflow(TracedOrder, 200, id=i, task_queue=QUEUE) for i in ids
            ]
            await watcher
            for h in handles:
                assert await h.result(timeout=timedelta(seconds=60)) == 1 + 2 + 3 + 10 + 100
            return {h.id: (str(h.run_id), await h.fetch_history()) for h in handles}
        finally:
            client.close()

    return asyncio.run(main())


def read_spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_traces(spans: list[dict[str, Any]], runs: Runs) -> None:
    """Each run's trace: the client's StartWorkflow as root, one RunWorkflow, one
    StartActivity per scheduled activity, one RunActivity per attempt, the child's run
    under its StartChildWorkflow; no span ID twice."""
    ids = Counter(s["span_id"] for s in spans)
    assert [i for i, n in ids.items() if n > 1] == [], "span IDs emitted twice"
    for workflow_id, (run_id, history) in runs.items():
        [root] = [
            s
            for s in spans
            if s["name"] == "StartWorkflow:TracedOrder"
            and s["attributes"]["everflow.workflow_id"] == workflow_id
        ]
        assert root["parent_id"] is None
        trace = [s for s in spans if s["trace_id"] == root["trace_id"]]
        names = Counter(s["name"] for s in trace)
        assert names == {
            "StartWorkflow:TracedOrder": 1,
            "RunWorkflow:TracedOrder": 1,
            "StartActivity:step": STEPS + 1,  # one of them the child's
            "StartActivity:flaky": 1,
            "RunActivity:step": STEPS + 1,
            "RunActivity:flaky": 2,
            "StartChildWorkflow:TracedShipment": 1,
            "RunWorkflow:TracedShipment": 1,
        }, (workflow_id, names)
        check_child(trace, run_id)
        trace = [s for s in trace if s["attributes"].get("everflow.run_id", run_id) == run_id]
        [run] = [s for s in trace if s["name"].startswith("RunWorkflow:")]
        assert run["span_id"] == f"{span_id(run_id, 1):016x}"
        assert run["parent_id"] == root["span_id"]
        scheduled = [e for e in history if isinstance(e.attributes, ActivityScheduled)]
        started = {
            s["attributes"]["everflow.event_id"]: s
            for s in trace
            if s["name"].startswith("StartActivity:")
        }
        assert sorted(started) == [e.event_id for e in scheduled]
        for event_id, s in started.items():
            assert s["span_id"] == f"{span_id(run_id, event_id):016x}"
            assert s["parent_id"] == run["span_id"]
        attempts = {(e.attributes.activity_id, 1) for e in scheduled}
        attempts |= {
            (e.attributes.activity_id, e.attributes.attempt)
            for e in history
            if isinstance(e.attributes, ActivityRetried)
        }
        ran = [s for s in trace if s["name"].startswith("RunActivity:")]
        by_attempt = Counter(
            (s["attributes"]["everflow.activity_id"], s["attributes"]["everflow.attempt"])
            for s in ran
        )
        assert by_attempt == dict.fromkeys(attempts, 1), (workflow_id, by_attempt)
        for s in ran:  # each attempt under the StartActivity of its activity
            parent = next(p for p in started.values() if p["span_id"] == s["parent_id"])
            activity_id = s["attributes"]["everflow.activity_id"]
            assert parent["attributes"]["everflow.activity_id"] == activity_id
        failed = [s for s in ran if s["status"] == "ERROR"]
        assert [(s["name"], s["attributes"]["everflow.attempt"]) for s in failed] == [
            ("RunActivity:flaky", 1)
        ]


def check_child(trace: list[dict[str, Any]], parent_run_id: str) -> None:
    """The child's RunWorkflow under the parent's StartChildWorkflow, its activity under it."""
    named = {s["name"]: s for s in trace if s["name"].endswith("TracedShipment")}
    started, run = named["StartChildWorkflow:TracedShipment"], named["RunWorkflow:TracedShipment"]
    assert started["attributes"]["everflow.run_id"] == parent_run_id
    assert run["parent_id"] == started["span_id"]
    child_run = run["attributes"]["everflow.run_id"]
    [scheduled] = [
        s
        for s in trace
        if s["name"] == "StartActivity:step" and s["attributes"]["everflow.run_id"] == child_run
    ]
    assert scheduled["parent_id"] == run["span_id"]
    [attempt] = [s for s in trace if s["parent_id"] == scheduled["span_id"]]
    assert attempt["name"] == "RunActivity:step"


def test_a_processor_killed_mid_run_leaves_one_span_per_step_and_none_twice(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, tmp_path: Path
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, QUEUE)
    spans = tmp_path / "spans.jsonl"
    install(str(spans))
    env = {"EVERFLOW_TRACING": "1", "EVERFLOW_TEST_SPANS": str(spans)}
    # the runner lives on: each attempt runs once, so each has exactly one RunActivity span
    workers.start(
        "runner", APPS, task_queue=QUEUE, extra_env=env, options=["--no-workflows"],
        module=SPANS_WORKER,
    )  # fmt: skip

    # a processor dies between producing a transaction and committing it, its successor
    # processes those commands again, and their events' spans must not come twice: first in
    # the first transaction (it has the first run's RunWorkflow and StartActivity for sure),
    # then the successor in its 8th, with all the runs under way
    def processor(kill_before_commit: int) -> subprocess.Popen[bytes]:
        fault = {"EVERFLOW_FAULT_KILL_BEFORE_COMMIT": str(kill_before_commit)}
        return workers.start(
            "wp", APPS, task_queue=QUEUE, options=["--no-activities"], module=SPANS_WORKER,
            extra_env={**env, **fault},
        )  # fmt: skip

    def crash_twice() -> None:
        doomed = processor(1)
        for then in (8, 0):
            assert doomed.wait(60) == -9  # killed itself by the fault hook
            doomed = processor(then)

    runs = run_all(config, [f"order-{i}" for i in range(4)], crash_twice)
    check_traces(read_spans(spans), runs)


def test_runs_rebuilt_by_replay_at_every_step_emit_each_span_once(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, tmp_path: Path
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, QUEUE)
    spans = tmp_path / "spans.jsonl"
    install(str(spans))
    # a cache of one run per partition, checkpointed at once: with several runs on one
    # partition, a run is evicted between its steps and rebuilt by replaying its history
    env = {
        "EVERFLOW_TRACING": "1",
        "EVERFLOW_TEST_SPANS": str(spans),
        "EVERFLOW_RUN_CACHE_SIZE": "1",
        "EVERFLOW_CHECKPOINT_INTERVAL": "0.01",
        "EVERFLOW_SNAPSHOT_DEFER_EVENTS": "1",
        "EVERFLOW_SNAPSHOT_DEFER_SECONDS": "0",
    }
    workers.start("w1", APPS, task_queue=QUEUE, extra_env=env, module=SPANS_WORKER)
    candidates = [f"order-{i}" for i in range(64)]
    home = kafka.partition_for(candidates[0], config.partitions)
    ids = [i for i in candidates if kafka.partition_for(i, config.partitions) == home][:4]
    runs = run_all(config, ids)

    def cache_loads() -> int:
        statuses = workers_view(config).statuses
        return int(statuses[0]["counters"]["cache_loads"]) if statuses else 0

    wait_until(cache_loads, 20, 0.5, "runs should have been rebuilt from storage")
    check_traces(read_spans(spans), runs)


def test_a_worker_with_tracing_off_loads_no_opentelemetry(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, QUEUE)
    proc = workers.start(
        "w1", APPS, task_queue=QUEUE, extra_env={"EVERFLOW_TRACING": "0"}, module=SPANS_WORKER
    )

    async def main() -> None:
        client = await asyncio.to_thread(Client, config, None, tracing=False)
        try:
            h = await client.start_workflow(TracedOrder, 0, id="untraced", task_queue=QUEUE)
            assert await h.result(timeout=timedelta(seconds=60)) == 116
        finally:
            client.close()

    asyncio.run(main())
    workers.stop_all()
    assert proc.returncode == 0, workers.log_of(proc)
    assert "opentelemetry modules: []" in workers.log_of(proc), workers.log_of(proc)
