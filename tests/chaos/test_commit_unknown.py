"""A commit whose outcome the processor cannot know (librdkafka reports it timed out) is never
retried: the processor aborts if it can, re-creates its transactional producer with the same
transactional.id (whose epoch bump fences the old one) and restores from Kafka, which tells
whether the commit landed. Both ways are injected in one real worker process: the 2nd
transaction never commits, the 4th commits; each is reported as a timeout. Every transfer
completes exactly once either way."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from processors.workflow_processor.transactions import CALL_GRACE
from tests.chaos.transfers import assert_each_transfer_once, orders, run_transfers, worker_metrics
from tests.integration.test_metrics import totals
from tests.integration.workers import WorkerProcesses, topics_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
RUNS = 20
NOT_COMMITTED, COMMITTED = 2, 4  # the transactions whose commit is reported as timed out

RECREATED = re.compile(
    r"commit outcome unknown after commit_transaction: aborting, re-creating the "
    r"transactional producer (\S+) \(epoch bump fences the old one\)"
)
RECREATED_AFTER_OFFSETS = re.compile(
    r"outcome unknown after send_offsets_to_transaction: aborting, re-creating the "
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

    results = run_transfers(config, orders("u", RUNS))
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

    families = worker_metrics(log)
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
    assert_each_transfer_once(config, Path(worker_env["EVERFLOW_BANK_LEDGER"]), RUNS)


def test_an_offsets_call_that_never_returns_is_abandoned_and_a_new_producer_takes_over(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    """librdkafka's send_offsets_to_transaction can wait without end when the group
    coordinator went away (the fault suite's full disk found it): the 3rd transaction's call
    never returns here. The processor gives up on it past its timeout, treats the outcome as
    unknown, and goes on with a new producer and commit thread."""
    config = topics_for(kafka_bootstrap, topic_prefix, "transfers")
    quiet = {"EVERFLOW_BANK_FLAKY": "0"}
    workers.start("a1", "examples.money_transfer", "--no-workflows", extra_env=quiet)
    worker = workers.start(
        "w1",
        "examples.money_transfer",
        "--no-activities",
        extra_env={**quiet, "EVERFLOW_FAULT_HANG_SEND_OFFSETS": "3"},
        options=["--metrics-port", "0"],
    )
    results = run_transfers(config, orders("h", RUNS))
    assert len(results) == RUNS
    log = workers.log_of(worker)
    assert "fault injection: send_offsets_to_transaction of transaction 3 never returns" in log
    assert re.search(
        rf"send_offsets_to_transaction has not returned {CALL_GRACE:.0f} s after its timeout: "
        r".* abandoning "
        r"the call, its transaction's outcome is unknown",
        log,
    ), log[-4000:]
    transactional_id = f"{topic_prefix}wp-w1"
    assert RECREATED_AFTER_OFFSETS.findall(log) == [transactional_id]
    assert worker.poll() is None and "fatal transaction error" not in log
    families = worker_metrics(log)
    assert totals(families, "everflow_producer_recreations", "reason")["unknown"] == 1
    assert_each_transfer_once(config, Path(worker_env["EVERFLOW_BANK_LEDGER"]), RUNS)
