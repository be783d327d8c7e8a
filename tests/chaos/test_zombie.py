"""A processor paused mid-transaction (SIGSTOP) past its session timeout is a zombie: another
worker takes its partitions; when the zombie wakes (SIGCONT) its late transaction fails and
nothing it wrote becomes visible."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta
from pathlib import Path

import pytest

from examples.money_transfer import Bank, MoneyTransferWorkflow, TransferOrder
from streams import Client
from tests.helpers import wait_until
from tests.integration.history_check import history_problems, history_runs
from tests.integration.workers import WorkerProcesses, topics_for, with_client

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
RUNS = 40


def stopped(pid: int) -> bool:
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "T"


def late_commit_outcome(log: str) -> str:
    late = log.split("resumed before commit of transaction 3", 1)[-1]
    if "fatal transaction error" in late:
        return "fenced"
    if "transaction aborted" in late:
        return "transaction aborted"
    return ""


def test_paused_processor_is_fenced_and_its_late_transaction_stays_invisible(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "transfers")
    quiet = {"EVERFLOW_BANK_FLAKY": "0"}
    # activities run elsewhere: a stopped process holding the toy bank's file lock would
    # stall every other worker's activities (as a paused holder of a database lock would)
    workers.start("a1", "examples.money_transfer", "--no-workflows", extra_env=quiet)
    zombie = workers.start(
        "w1",
        "examples.money_transfer",
        "--no-activities",
        extra_env={**quiet, "EVERFLOW_FAULT_STOP_BEFORE_COMMIT": "3"},
    )

    async def main(client: Client) -> list[str]:
        orders = [TransferOrder("z-a", "z-b", 1, f"z-{i}") for i in range(RUNS)]
        runs = [
            asyncio.create_task(
                client.execute_workflow(
                    MoneyTransferWorkflow,
                    o,
                    id=o.reference,
                    task_queue="transfers",
                    timeout=timedelta(seconds=120),
                )
            )
            for o in orders
        ]
        # the zombie stops itself with transaction 3 produced and not committed
        await asyncio.to_thread(wait_until, lambda: stopped(zombie.pid), 60, 0.1, "SIGSTOP")
        workers.start("w2", "examples.money_transfer", "--no-activities", extra_env=quiet)
        return list(await asyncio.gather(*runs))

    results = with_client(config, main)
    assert len(results) == RUNS
    assert "fault injection: SIGSTOP before commit of transaction 3" in workers.logs()

    os.kill(zombie.pid, signal.SIGCONT)  # it wakes up, believing it still owns everything
    wait_until(
        lambda: "resumed before commit of transaction 3" in workers.log_of(zombie),
        30,
        0.2,
        "resume",
    )
    # its late commit fails: fenced (fatal, the process stops) or aborted because the
    # coordinator already timed the transaction out (the process drops its state and
    # rejoins the group as a fresh member); either way nothing it wrote is committed
    outcome = wait_until(
        lambda: late_commit_outcome(workers.log_of(zombie)), 120, 0.2, "late commit fails"
    )
    if outcome == "fenced":
        wait_until(lambda: zombie.poll() is not None, 60, 0.2, "the fenced zombie should stop")
    else:
        # once awake it learns its partitions moved: the revocation is logged after the
        # wake-up, before or after the failed commit (the session expiry may reach the
        # consumer while the commit thread is still committing)
        wait_until(
            lambda: "revoked partitions"
            in workers.log_of(zombie).split("resumed before commit of transaction 3", 1)[1],
            60,
            0.2,
            "the rejoining zombie learns its partitions moved",
        )

    committed = history_runs(config)
    assert len(committed) == RUNS and history_problems(committed) == []
    # what the zombie produced in its transaction is on the log, aborted: a reader that
    # ignores transactions sees event IDs twice; a read_committed reader never does
    raw = history_runs(config, "read_uncommitted")
    assert history_problems(raw), "the zombie's aborted records should be on the log"
    entries = Bank(Path(worker_env["EVERFLOW_BANK_LEDGER"])).entries()
    assert len(entries) == 2 * RUNS and sum(int(e["delta"]) for e in entries) == 0  # type: ignore[call-overload]
