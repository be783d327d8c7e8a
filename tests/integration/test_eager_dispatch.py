"""Eager dispatch on a real broker with real worker processes: a worker that runs both halves
starts the tasks it schedules itself, once their transaction committed, and takes the
results back in process (their copies in `commands` only keep them durable); the tasks are
still on the tasks topic, claimed, and no other runner runs them; with the setting off,
everything goes through Kafka as before."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from processors.eager import CLAIM_HEADER
from streams import Client, kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, ensure_topics, topic_specs
from streams.wire import wire
from tests.helpers import wait_until
from tests.integration.apps.eager import ThreeSteps
from tests.integration.test_metrics import scrape, totals
from tests.integration.test_money_transfer import read_all
from tests.integration.workers import WorkerProcesses

pytestmark = pytest.mark.integration
QUEUE = "eager"
APP = "tests.integration.apps.eager"
RUNS = 8


def eager_config(bootstrap: str, topic_prefix: str) -> KafkaConfig:
    cfg = KafkaConfig(bootstrap=bootstrap, topic_prefix=topic_prefix, partitions=4)
    ensure_topics(kafka.admin(cfg), topic_specs(cfg, [QUEUE]))
    return cfg


def journal_file(worker_env: dict[str, str], tmp_path: Path) -> Path:
    """Where the workers started after this note each execution of a step."""
    path = tmp_path / "journal.jsonl"
    worker_env["EVERFLOW_JOURNAL"] = str(path)
    return path


@pytest.fixture
def config(kafka_bootstrap: str, topic_prefix: str) -> KafkaConfig:
    return eager_config(kafka_bootstrap, topic_prefix)


@pytest.fixture
def journal(worker_env: dict[str, str], tmp_path: Path) -> Path:
    return journal_file(worker_env, tmp_path)


def executions(journal: Path) -> list[dict[str, object]]:
    if not journal.exists():
        return []
    return [json.loads(line) for line in journal.read_text().splitlines()]


def run_all(config: KafkaConfig, prefix: str, count: int = RUNS) -> list[list[str]]:
    async def main() -> list[list[str]]:
        client = await asyncio.to_thread(Client, config)
        try:
            return list(
                await asyncio.gather(
                    *(
                        client.execute_workflow(
                            ThreeSteps, f"{prefix}{i}", id=f"{prefix}{i}", task_queue=QUEUE
                        )
                        for i in range(count)
                    )
                )
            )
        finally:
            client.close()

    return asyncio.run(main())


def report_kinds(config: KafkaConfig) -> Counter[str]:
    commands = read_all(config, Topics(config.topic_prefix).commands)
    return Counter(type(wire().command.decode(v).body).__name__ for v in commands)


def claims(config: KafkaConfig) -> list[bytes | None]:
    """Per record on the tasks topic, the claim header's value (None: not claimed)."""
    records = read_all(config, Topics(config.topic_prefix).tasks(QUEUE), with_headers=True)
    return [dict(headers).get(CLAIM_HEADER) for _, headers in records]


def metrics_port(log: str) -> int:
    served = re.search(r"metrics served at http://127\.0\.0\.1:(\d+)/", log)
    assert served is not None, "the worker logs the port its metrics are served on"
    return int(served.group(1))


def task_runners(config: KafkaConfig) -> int:
    """Members of the queue's runner group that own partitions of its tasks topic."""
    from streams.cli.workers import workers_view

    for group in workers_view(config).groups:
        if group.group_id.endswith(f"activities.{QUEUE}"):
            return sum(1 for m in group.members if m.partitions)
    return 0


def test_a_worker_running_both_halves_runs_its_tasks_eagerly_and_takes_reports_in_process(
    config: KafkaConfig, workers: WorkerProcesses, journal: Path
) -> None:
    proc = workers.start("w1", APP, task_queue=QUEUE, options=["--metrics-port", "0"])
    results = run_all(config, "eager-")
    steps = ("reserve", "charge", "ship")
    assert results == [[f"eager-{i}:{s}" for s in steps] for i in range(RUNS)]
    # every attempt ran once, in the worker that scheduled it
    ran = executions(journal)
    assert len(ran) == 3 * RUNS
    assert Counter((e["key"], e["attempt"]) for e in ran).most_common(1)[0][1] == 1
    assert {e["pid"] for e in ran} == {proc.pid}
    # the tasks are on the tasks topic, each claimed by that worker's runner
    claimed = claims(config)
    assert len(claimed) == 3 * RUNS
    assert all(c is not None and c.startswith(b"runner-") for c in claimed), claimed
    assert len(set(claimed)) == 1
    # each report was recorded from the runner in process; its copy in `commands` (kept for
    # durability) came later and was dropped as a duplicate
    assert report_kinds(config)["CompleteActivity"] == 3 * RUNS
    assert "eager dispatch" in workers.log_of(proc)
    families = scrape(metrics_port(workers.log_of(proc)))
    eager = totals(families, "everflow_activity_eager_attempts", "activity_type")
    assert eager == {"note": 3 * RUNS}
    in_process = families["everflow_activity_reports_in_process"].samples[0].value
    assert in_process == 3 * RUNS


def test_with_eager_dispatch_off_tasks_and_reports_go_through_kafka(
    config: KafkaConfig, workers: WorkerProcesses, journal: Path
) -> None:
    off = ["--no-eager-activities", "--metrics-port", "0"]
    proc = workers.start("w1", APP, task_queue=QUEUE, options=off)
    run_all(config, "classic-")
    assert len(executions(journal)) == 3 * RUNS
    assert claims(config) == [None] * (3 * RUNS)
    assert report_kinds(config)["CompleteActivity"] == 3 * RUNS
    assert "eager dispatch" not in workers.log_of(proc)
    families = scrape(metrics_port(workers.log_of(proc)))
    assert families["everflow_activity_reports_in_process"].samples[0].value == 0
    assert totals(families, "everflow_activity_eager_attempts", "activity_type") == {}


def test_claimed_tasks_are_skipped_by_every_other_runner(
    config: KafkaConfig, workers: WorkerProcesses, journal: Path
) -> None:
    """A second worker runs activities only: the task consumer group gives it part of the
    tasks topic, where it reads the claimed records and must leave them to their claimer."""
    both = workers.start("w1", APP, task_queue=QUEUE)
    workers.start("w2", APP, task_queue=QUEUE, options=["--no-workflows"])
    wait_until(lambda: task_runners(config) == 2, 90, interval=0.5, message="w2 never took tasks")
    run_all(config, "shared-", 12)
    ran = executions(journal)
    assert len(ran) == 3 * 12
    assert Counter((e["key"], e["attempt"]) for e in ran).most_common(1)[0][1] == 1
    assert {e["pid"] for e in ran} == {both.pid}  # the activities-only worker ran none
    assert all(c is not None for c in claims(config))
