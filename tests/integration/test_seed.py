"""The seed's two listings (examples/seed) run as written: their own worker program and
their own client program, on a real broker."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from examples.seed.banking import BankingService
from examples.seed.shared import TASK_QUEUE
from tests.integration.workers import ROOT, WorkerProcesses, topics_for

pytestmark = pytest.mark.integration


def test_seed_transfer_completes_and_its_saga_refunds_each_effect_applied_once(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    topics_for(kafka_bootstrap, topic_prefix, TASK_QUEUE)
    workers.start_program(
        "seed", "-m", "examples.seed.run_worker", extra_env={"EVERFLOW_INSTANCE_ID": "seed-1"}
    )
    starter = subprocess.run(
        [sys.executable, "-m", "examples.seed.starter"],
        cwd=ROOT,
        env=worker_env,
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert starter.returncode == 0, starter.stdout + starter.stderr + workers.logs()
    transfer, saga = starter.stdout.splitlines()
    assert transfer.startswith("Result: Transfer complete (transactions withdraw-"), transfer
    assert saga == "Failed: transfer failed and was refunded: account 'dave' does not exist"

    bank = BankingService(Path(worker_env["EVERFLOW_BANK_LEDGER"]))
    applied = [(e["account"], e["delta"]) for e in bank.ledger.entries()]
    # the transfer's withdrawal and deposit; the saga's withdrawal and its refund, no deposit
    assert sorted(applied) == sorted(
        [("alice", -100), ("bob", 100), ("alice", -100), ("alice", 100)]
    ), applied
    assert bank.ledger.balance("alice") == -100 and bank.ledger.balance("bob") == 100
    # each of the five calls failed once on the flaky network and was retried once: the
    # retry policy at work, and the deposit to a missing account not retried past its
    # non-retryable InvalidAccountError
    assert sorted(Counter(bank.calls()).values()) == [2, 2, 2, 2, 2], bank.calls()
