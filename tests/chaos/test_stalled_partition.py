"""A partition a consumer silently stops reading (as librdkafka's fetcher can after
partition leaders flip) is noticed and read again. Fault hooks stop one partition's
fetching with no error: the processor's commands partition 0 right after its 3rd
transaction, while that partition's transfers still wait for their activities' results;
the runner's tasks partition of the 3rd task it takes. The stall check sees records waiting
and the position standing still, logs where it stands, closes the consumer and joins the
group again; every transfer completes exactly once."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import pytest

from examples.money_transfer import Bank, MoneyTransferWorkflow, TransferOrder
from streams import Client, kafka
from streams.kafka.topics import Topics
from tests.helpers import wait_until
from tests.integration.history_check import history_problems, history_runs
from tests.integration.test_metrics import scrape, totals
from tests.integration.test_money_transfer import read_all
from tests.integration.workers import WorkerProcesses, topics_for, with_client

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
RUNS = 24
STALL_SECONDS = 6

STALLED = re.compile(
    r"commands not read: partition 0: position (\d+), records up to (\d+) waiting, not read "
    r"for (\d+) s; closing the consumer and joining the group again"
)


def test_a_partition_the_consumer_stopped_reading_is_read_again_by_a_new_consumer(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "transfers")
    quiet = {"EVERFLOW_BANK_FLAKY": "0"}
    workers.start("a1", "examples.money_transfer", "--no-workflows", extra_env=quiet)
    fault = {
        "EVERFLOW_FAULT_STALL_AFTER_COMMIT": "3",
        "EVERFLOW_STALL_SECONDS": str(STALL_SECONDS),
    }
    worker = workers.start(
        "w1",
        "examples.money_transfer",
        "--no-activities",
        extra_env={**quiet, **fault},
        options=["--metrics-port", "0"],
    )
    orders = [TransferOrder("s-a", "s-b", 1, f"s-{i}") for i in range(RUNS)]
    on_zero = [o for o in orders if kafka.partition_for(o.reference, config.partitions) == 0]
    assert on_zero, "some transfers run on the partition that stalls"

    async def main(client: Client) -> list[str]:
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
    assert "fault hook: commands partition 0 no longer fetched" in log
    noticed = STALLED.findall(log)
    assert len(noticed) == 1, log[-4000:]
    position, end, seconds = (int(n) for n in noticed[0])
    assert end > position and seconds >= STALL_SECONDS
    # the new consumer got the partitions again and the worker never stopped
    assert log.index("closing the consumer and joining the group again") < log.rindex(
        "assigned partitions="
    )
    assert worker.poll() is None

    port = int(
        wait_until(
            lambda: re.search(r"metrics served at http://127\.0\.0\.1:(\d+)/metrics", log),
            timeout=5,
            message="the worker logs its metrics port",
        ).group(1)
    )
    renewals = totals(scrape(port), "everflow_consumer_renewals", "topic")
    assert renewals == {f"{topic_prefix}commands": 1}

    # exactly once: the stalled partition's commands were read by the new consumer from the
    # committed offset, and nothing of them twice
    committed = history_runs(config)
    assert len(committed) == RUNS and history_problems(committed) == []
    assert len(read_all(config, Topics(topic_prefix).completions)) == RUNS
    entries = Bank(Path(worker_env["EVERFLOW_BANK_LEDGER"])).entries()
    assert len(entries) == 2 * RUNS and sum(int(e["delta"]) for e in entries) == 0  # type: ignore[call-overload]


def test_a_tasks_partition_the_runner_stopped_reading_is_read_again_by_a_new_consumer(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "transfers")
    quiet = {"EVERFLOW_BANK_FLAKY": "0"}
    fault = {"EVERFLOW_FAULT_STALL_TASKS_AFTER": "3", "EVERFLOW_STALL_SECONDS": str(STALL_SECONDS)}
    runner = workers.start(
        "a1",
        "examples.money_transfer",
        "--no-workflows",
        extra_env={**quiet, **fault},
        options=["--metrics-port", "0"],
    )
    workers.start("w1", "examples.money_transfer", "--no-activities", extra_env=quiet)
    orders = [TransferOrder("t-a", "t-b", 1, f"t-{i}") for i in range(RUNS)]

    async def main(client: Client) -> list[str]:
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

    assert len(with_client(config, main)) == RUNS
    log = workers.log_of(runner)
    frozen = re.findall(r"fault hook: tasks partition (\d+) no longer fetched", log)
    assert len(frozen) == 1, log[-4000:]
    noticed = re.findall(
        rf"tasks of transfers not read: partition {frozen[0]}: position \d+, records up to "
        r"\d+ waiting, not read for (\d+) s; closing the consumer and joining the group again",
        log,
    )
    assert len(noticed) == 1 and int(noticed[0]) >= STALL_SECONDS, log[-4000:]
    assert runner.poll() is None

    port = int(
        wait_until(
            lambda: re.search(r"metrics served at http://127\.0\.0\.1:(\d+)/metrics", log),
            timeout=5,
            message="the worker logs its metrics port",
        ).group(1)
    )
    renewals = totals(scrape(port), "everflow_consumer_renewals", "topic")
    assert renewals == {f"{topic_prefix}tasks.transfers": 1}, renewals

    committed = history_runs(config)
    assert len(committed) == RUNS and history_problems(committed) == []
    entries = Bank(Path(worker_env["EVERFLOW_BANK_LEDGER"])).entries()
    assert len(entries) == 2 * RUNS and sum(int(e["delta"]) for e in entries) == 0  # type: ignore[call-overload]
