"""Eager dispatch under SIGKILL and SIGSTOP: workers die, or pause past their session, while
the attempts they claimed run. Every run completes, and no attempt is executed twice: the
attempts lost with a worker run again as their next attempt, only once their start-to-close
timeout passed."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from streams import Client
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from tests.chaos.test_zombie import late_commit_outcome, stopped
from tests.helpers import wait_until
from tests.integration.apps.eager import STEP_TIMEOUT, Nap, ThreeSteps
from tests.integration.history_check import history_problems, history_runs
from tests.integration.test_eager_dispatch import (
    APP,
    QUEUE,
    claims,
    eager_config,
    executions,
    journal_file,
)
from tests.integration.test_money_transfer import read_all
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


def test_a_paused_worker_with_eager_dispatch_is_fenced_and_runs_no_attempt_twice(
    config: KafkaConfig, workers: WorkerProcesses, journal: Path
) -> None:
    """The zombie stops itself before its third commit, with the attempts it claimed in the
    first two running; a second worker takes over and finishes every run. When the zombie
    wakes, its attempts finish, their reports are dropped (fenced by attempt, or lost with
    its failed transaction), and nothing it wrote after the pause is visible."""
    pause = {"EVERFLOW_STEP_DELAY": "1", "EVERFLOW_FAULT_STOP_BEFORE_COMMIT": "3"}
    zombie = workers.start("w1", APP, task_queue=QUEUE, extra_env=pause)

    async def main() -> list[list[str]]:
        client = await asyncio.to_thread(Client, config)
        try:
            runs = [
                asyncio.create_task(
                    client.execute_workflow(
                        ThreeSteps,
                        f"z{i}",
                        id=f"z{i}",
                        task_queue=QUEUE,
                        timeout=timedelta(seconds=120),
                    )
                )
                for i in range(RUNS)
            ]
            await asyncio.to_thread(wait_until, lambda: stopped(zombie.pid), 60, 0.1, "SIGSTOP")
            workers.start("w2", APP, task_queue=QUEUE)
            return list(await asyncio.gather(*runs))
        finally:
            client.close()

    results = asyncio.run(main())
    assert results == [[f"z{i}:{s}" for s in ("reserve", "charge", "ship")] for i in range(RUNS)]
    os.kill(zombie.pid, signal.SIGCONT)
    wait_until(lambda: late_commit_outcome(workers.log_of(zombie)), 120, 0.2, "late commit fails")
    time.sleep(2)  # the zombie's paused attempts (1 s each) finish
    ran = executions(journal)
    assert {e["pid"] for e in ran} >= {zombie.pid}  # it had claimed and started attempts
    twice = [k for k, n in Counter((e["key"], e["attempt"]) for e in ran).items() if n > 1]
    assert twice == [], twice
    committed = history_runs(config)
    assert len(committed) == RUNS and history_problems(committed) == []


def test_a_zombie_paused_between_transactions_writes_nothing_after_waking(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    """The worker pauses right after its first commit (the run started, its timer set) and
    wakes after another worker took the partitions, restored the run, fired the timer and
    closed it. The zombie's own copy of the timer is overdue when it wakes; a batch firing
    it would consume no command. It must not reach the log: the zombie drops its partitions
    on waking (its consumer sees its session expired), and were it to commit such a
    transaction first, that transaction carries the group's generation (the partition's
    committed offset, committed again) for the coordinator to refuse. The run closes once."""
    zombie = workers.start(
        "w1", APP, task_queue=QUEUE, extra_env={"EVERFLOW_FAULT_STOP_AFTER_COMMIT": "1"}
    )

    async def main() -> str:
        client = await asyncio.to_thread(Client, config)
        try:
            handle = await client.start_workflow(Nap, 3.0, id="nap", task_queue=QUEUE)
            await asyncio.to_thread(wait_until, lambda: stopped(zombie.pid), 60, 0.1, "SIGSTOP")
            workers.start("w2", APP, task_queue=QUEUE)
            return await handle.result(timeout=timedelta(seconds=90))  # type: ignore[no-any-return]
        finally:
            client.close()

    assert asyncio.run(main()) == "awake"
    os.kill(zombie.pid, signal.SIGCONT)
    wait_until(
        lambda: (
            "revoked partitions"
            in workers.log_of(zombie).split("resumed after commit of transaction 1", 1)[-1]
        ),
        60,
        0.2,
        "the zombie learns its partitions moved",
    )
    time.sleep(1)
    committed = history_runs(config)
    assert history_problems(committed) == []
    [(workflow_id, _)] = committed
    assert workflow_id == "nap"
    kinds = [type(e.attributes).__name__ for events in committed.values() for e in events]
    assert kinds.count("TimerFired") == 1 and kinds.count("WorkflowCompleted") == 1, kinds
    closes = read_all(config, Topics(config.topic_prefix).completions)
    assert len(closes) == 1
