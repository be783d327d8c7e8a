"""A partition a consumer silently stops reading (as librdkafka's fetcher can after
partition leaders flip) is noticed and read again. Fault hooks stop one partition's
fetching with no error: the processor's commands partition 0 right after its 3rd
transaction, while that partition's transfers still wait for their activities' results;
the runner's tasks partition of the 3rd task it takes. The stall check sees records waiting
and the position standing still, logs where it stands, closes the consumer and joins the
group again; every transfer completes exactly once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams import kafka
from tests.chaos.transfers import assert_each_transfer_once, orders, run_transfers, worker_metrics
from tests.integration.test_metrics import totals
from tests.integration.workers import WorkerProcesses, topics_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
RUNS = 24
STALL_SECONDS = 6
QUIET = {"EVERFLOW_BANK_FLAKY": "0"}
RENEWED = "closing the consumer and joining the group again"


def test_a_partition_the_consumer_stopped_reading_is_read_again_by_a_new_consumer(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "transfers")
    workers.start("a1", "examples.money_transfer", "--no-workflows", extra_env=QUIET)
    fault = {
        "EVERFLOW_FAULT_STALL_AFTER_COMMIT": "3",
        "EVERFLOW_STALL_SECONDS": str(STALL_SECONDS),
    }
    worker = workers.start(
        "w1",
        "examples.money_transfer",
        "--no-activities",
        extra_env={**QUIET, **fault},
        options=["--metrics-port", "0"],
    )
    batch = orders("s", RUNS)
    on_zero = [o for o in batch if kafka.partition_for(o.reference, config.partitions) == 0]
    assert on_zero, "some transfers run on the partition that stalls"

    assert len(run_transfers(config, batch)) == RUNS

    log = workers.log_of(worker)
    assert "fault hook: commands partition 0 no longer fetched" in log
    noticed = re.findall(
        r"commands not read: partition 0: position (\d+), records up to (\d+) waiting, not "
        rf"read for (\d+) s; {RENEWED}",
        log,
    )
    assert len(noticed) == 1, log[-4000:]
    position, end, seconds = (int(n) for n in noticed[0])
    assert end > position and seconds >= STALL_SECONDS
    # the new consumer got the partitions again and the worker never stopped
    assert log.index(RENEWED) < log.rindex("assigned partitions=")
    assert worker.poll() is None
    renewals = totals(worker_metrics(log), "everflow_consumer_renewals", "topic")
    assert renewals == {f"{topic_prefix}commands": 1}
    # exactly once: the stalled partition's commands were read by the new consumer from the
    # committed offset, and nothing of them twice
    assert_each_transfer_once(config, Path(worker_env["EVERFLOW_BANK_LEDGER"]), RUNS)


def test_a_tasks_partition_the_runner_stopped_reading_is_read_again_by_a_new_consumer(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "transfers")
    fault = {"EVERFLOW_FAULT_STALL_TASKS_AFTER": "3", "EVERFLOW_STALL_SECONDS": str(STALL_SECONDS)}
    runner = workers.start(
        "a1",
        "examples.money_transfer",
        "--no-workflows",
        extra_env={**QUIET, **fault},
        options=["--metrics-port", "0"],
    )
    workers.start("w1", "examples.money_transfer", "--no-activities", extra_env=QUIET)

    assert len(run_transfers(config, orders("t", RUNS))) == RUNS

    log = workers.log_of(runner)
    frozen = re.findall(r"fault hook: tasks partition (\d+) no longer fetched", log)
    assert len(frozen) == 1, log[-4000:]
    noticed = re.findall(
        rf"tasks of transfers not read: partition {frozen[0]}: position \d+, records up to "
        rf"\d+ waiting, not read for (\d+) s; {RENEWED}",
        log,
    )
    assert len(noticed) == 1 and int(noticed[0]) >= STALL_SECONDS, log[-4000:]
    assert runner.poll() is None
    renewals = totals(worker_metrics(log), "everflow_consumer_renewals", "topic")
    assert renewals == {f"{topic_prefix}tasks.transfers": 1}, renewals
    assert_each_transfer_once(config, Path(worker_env["EVERFLOW_BANK_LEDGER"]), RUNS)
