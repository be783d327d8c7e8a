"""A commit whose outcome the processor cannot know (librdkafka reports it timed out) is never
retried: the processor aborts if it can, re-creates its transactional producer with the same
transactional.id (whose epoch bump fences the old one) and restores from Kafka, which tells
whether the commit landed. Both ways are injected in one real worker process: the 2nd
transaction never commits, the 4th commits; each is reported as a timeout. Every transfer
completes exactly once either way."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import pytest

from examples.money_transfer import Bank, MoneyTransferWorkflow, TransferOrder
from streams import Client
from streams.kafka.topics import Topics
from tests.helpers import wait_until
from tests.integration.history_check import history_problems, history_runs
from tests.integration.test_metrics import scrape, totals
from tests.integration.test_money_transfer import read_all
from tests.integration.workers import WorkerProcesses, topics_for, with_client

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
RUNS = 20
NOT_COMMITTED, COMMITTED = 2, 4  # the transactions whose commit is reported as timed out

RECREATED = re.compile(
    r"commit outcome unknown after commit_transaction: aborting, re-creating the "
    r"transactional producer (\S+) \(epoch bump fences the old one\)"
)
READY = re.compile(r"transactional producer ready transactional_id=(\S+)")


def test_commits_of_unknown_outcome_recreate_the_producer_and_every_transfer_runs_once(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "transfers")
    quiet = {"EVERFLOW_BANK_FLAKY": "0"}
    workers.start("a1", "examples.money_transfer", "--no-workflows", extra_env=quiet)
    faults = {
        "EVERFLOW_FAULT_UNKNOWN_BEFORE_COMMIT": str(NOT_COMMITTED),
        "EVERFLOW_FAULT_UNKNOWN_AFTER_COMMIT": str(COMMITTED),
    }
    worker = workers.start(
        "w1",
        "examples.money_transfer",
        "--no-activities",
        extra_env={**quiet, **faults},
        options=["--metrics-port", "0"],
    )

    async def main(client: Client) -> list[str]:
        orders = [TransferOrder("u-a", "u-b", 1, f"u-{i}") for i in range(RUNS)]
        runs = [
            client.execute_workflow(
                MoneyTransferWorkflow,
                o,
                id=o.reference,
                task_queue="transfers",
                timeout=timedelta(seconds=90),
            )
            for o in orders
        ]
        return list(await asyncio.gather(*runs))

    results = with_client(config, main)
    assert len(results) == RUNS
    log = workers.log_of(worker)
    assert f"transaction {NOT_COMMITTED} not committed, its commit reported as timed out" in log
    assert f"transaction {COMMITTED} committed, its commit reported as timed out" in log
    # both times the producer was re-created with the same transactional.id, and the worker
    # went on (it never stopped, and never retried a commit)
    transactional_id = f"{topic_prefix}wp-w1"
    assert RECREATED.findall(log) == [transactional_id] * 2
    assert READY.findall(log) == [transactional_id] * 3
    assert worker.poll() is None and "fatal transaction error" not in log

    port = int(
        wait_until(
            lambda: re.search(r"metrics served at http://127\.0\.0\.1:(\d+)/metrics", log),
            timeout=5,
            message="the worker logs its metrics port",
        ).group(1)
    )
    families = scrape(port)
    assert totals(families, "everflow_producer_recreations", "reason") == {
        "unknown": 2,
        "fatal": 0,
        "fenced": 0,
    }
    assert totals(families, "everflow_transactions", "result")["unknown"] == 2

    # exactly once: each run's history has every event once, each run closed once, and
    # each transfer moved its money once. (Had the restore missed a commit that landed, its
    # events would be written twice; had it counted one that did not, its commands would be
    # skipped and their runs never complete.)
    committed = history_runs(config)
    assert len(committed) == RUNS and history_problems(committed) == []
    assert len(read_all(config, Topics(topic_prefix).completions)) == RUNS
    entries = Bank(Path(worker_env["EVERFLOW_BANK_LEDGER"])).entries()
    assert len(entries) == 2 * RUNS and sum(int(e["delta"]) for e in entries) == 0  # type: ignore[call-overload]
