"""Eager dispatch under SIGKILL: workers die while the attempts they claimed run. Every run
completes, and no attempt is executed twice: the attempts lost with a worker run again as
their next attempt, only once their start-to-close timeout passed."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from streams import Client
from streams.kafka.config import KafkaConfig
from tests.helpers import wait_until
from tests.integration.apps.eager import STEP_TIMEOUT, ThreeSteps
from tests.integration.test_eager_dispatch import (
    APP,
    QUEUE,
    claims,
    eager_config,
    executions,
    journal_file,
)
from tests.integration.workers import WorkerProcesses

pytestmark = pytest.mark.integration
RUNS = 4


@pytest.fixture
def config(kafka_bootstrap: str, topic_prefix: str) -> KafkaConfig:
    return eager_config(kafka_bootstrap, topic_prefix)


@pytest.fixture
def journal(worker_env: dict[str, str], tmp_path: Path) -> Path:
    return journal_file(worker_env, tmp_path)


def test_workers_killed_while_claimed_attempts_run_never_run_an_attempt_twice(
    config: KafkaConfig, workers: WorkerProcesses, journal: Path
) -> None:
    slow = {"EVERFLOW_STEP_DELAY": "3"}  # each step runs 3 s: the kills land mid-attempt
    first = workers.start("w1", APP, task_queue=QUEUE, extra_env=slow)

    async def main() -> list[list[str]]:
        client = await asyncio.to_thread(Client, config)
        try:
            handles = [
                await client.start_workflow(ThreeSteps, f"k{i}", id=f"k{i}", task_queue=QUEUE)
                for i in range(RUNS)
            ]
            # kill 1: every run's first step has started in w1
            await asyncio.to_thread(
                wait_until, lambda: len(executions(journal)) >= RUNS, 60, 0.05, "no step ran"
            )
            workers.kill(first)
            second = workers.start("w2", APP, task_queue=QUEUE, extra_env=slow)
            # kill 2: w2 took over and started the lost attempts again (after their timeout)
            await asyncio.to_thread(
                wait_until,
                lambda: any(e["pid"] == second.pid for e in executions(journal)),
                60,
                0.05,
                "w2 never ran a step",
            )
            workers.kill(second)
            workers.start("w3", APP, task_queue=QUEUE)
            timeout = timedelta(seconds=120)
            return [await h.result(timeout=timeout) for h in handles]
        finally:
            client.close()

    results = asyncio.run(main())
    assert results == [[f"k{i}:{s}" for s in ("reserve", "charge", "ship")] for i in range(RUNS)]
    ran = executions(journal)
    # no attempt ran twice
    twice = [k for k, n in Counter((e["key"], e["attempt"]) for e in ran).items() if n > 1]
    assert twice == [], twice
    # an attempt lost with its worker was followed by the next attempt only after its timeout
    by_key: dict[object, list[dict[str, object]]] = {}
    for e in ran:
        by_key.setdefault(e["key"], []).append(e)
    retried = 0
    for attempts in by_key.values():
        attempts.sort(key=lambda e: int(str(e["attempt"])))
        for before, after in itertools.pairwise(attempts):
            gap = float(str(after["at"])) - float(str(before["at"]))
            assert gap >= STEP_TIMEOUT.total_seconds() - 0.5, (before, after)
            retried += 1
    assert retried >= RUNS  # at least the steps lost with w1 ran again
    # the workers that died had claimed what they ran: every task record is claimed
    assert all(c is not None for c in claims(config))
