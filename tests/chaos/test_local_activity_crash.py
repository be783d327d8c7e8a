"""A worker SIGKILLed while local activities run: the runs' new owner runs the attempts whose
outcome was never recorded again, under the same idempotency key, and every run completes
with each key's effect applied once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from examples.money_transfer import Bank, TransferOrder
from streams import Client, WorkflowFailureError, kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import ensure_topics, topic_specs
from streams.wire.events import ActivityScheduled
from tests.helpers import wait_until
from tests.integration.apps.local_transfer import LocalTransferSaga, LocalTransferWorkflow
from tests.integration.workers import WorkerProcesses

pytestmark = pytest.mark.integration
QUEUE = "transfers"
APP = "tests.integration.apps.local_transfer"
RUNS = 4


@pytest.fixture
def config(kafka_bootstrap: str, topic_prefix: str) -> KafkaConfig:
    cfg = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=4)
    ensure_topics(kafka.admin(cfg), topic_specs(cfg, [QUEUE]))
    return cfg


def test_worker_killed_while_local_deposits_run_completes_every_transfer_once(
    config: KafkaConfig, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    # the deposits sleep before they apply: the kill lands while they run in the worker; the
    # step timeout is long, so only the restore (not a timeout) can run them again in time
    steady = {"EVERFLOW_BANK_FLAKY": "0", "EVERFLOW_BANK_STEP_TIMEOUT": "600"}
    slow = {**steady, "EVERFLOW_BANK_DEPOSIT_DELAY": "30"}
    first = workers.start("w1", APP, extra_env=slow)
    bank = Bank(Path(worker_env["EVERFLOW_BANK_LEDGER"]))
    orders = [TransferOrder("alice", "bob", 7, f"local-crash-{i}") for i in range(RUNS)]

    async def main() -> list[str]:
        client = await asyncio.to_thread(Client, config)
        try:
            handles = [
                await client.start_workflow(
                    LocalTransferWorkflow, o, id=o.reference, task_queue=QUEUE
                )
                for o in orders
            ]
            await asyncio.to_thread(
                wait_until,
                lambda: len(bank.entries()) == RUNS,
                60,
                message="the withdraws never applied",
            )
            workers.kill(first)  # SIGKILL while every deposit runs in the worker
            assert [e["delta"] for e in bank.entries()] == [-7] * RUNS
            workers.start("w2", APP, extra_env=steady)
            timeout = timedelta(seconds=60)
            results = [await h.result(timeout=timeout) for h in handles]
            for o in orders:
                history = await client.get_workflow_handle(o.reference).fetch_history()
                scheduled = [
                    e.attributes for e in history if isinstance(e.attributes, ActivityScheduled)
                ]
                assert [s.local for s in scheduled] == [True, True]
                kinds = [type(e.attributes).__name__ for e in history]
                assert kinds.count("ActivityCompleted") == 2, kinds
            return results
        finally:
            client.close()

    results = asyncio.run(main())
    assert results == ["withdrew 7 from alice; deposited 7 into bob"] * RUNS
    # each idempotency key's effect once: one withdraw and one deposit per transfer
    keys = [str(e["key"]) for e in bank.entries()]
    assert len(keys) == len(set(keys)) == 2 * RUNS
    assert bank.balance("alice") == -7 * RUNS and bank.balance("bob") == 7 * RUNS


def test_worker_killed_during_a_local_saga_still_compensates_once(
    config: KafkaConfig, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    # the deposit into a closed account sleeps, then fails for good; the refund fails twice
    # (short retries in the worker) before it applies: money is conserved, each effect once
    steady = {
        "EVERFLOW_BANK_FLAKY": "0",
        "EVERFLOW_BANK_STEP_TIMEOUT": "600",
        "EVERFLOW_BANK_REFUND_FAILURES": "2",
    }
    first = workers.start("w1", APP, extra_env={**steady, "EVERFLOW_BANK_DEPOSIT_DELAY": "30"})
    bank = Bank(Path(worker_env["EVERFLOW_BANK_LEDGER"]))
    order = TransferOrder("alice", "closed-bob", 25, "local-saga-crash")

    async def main() -> BaseException:
        client = await asyncio.to_thread(Client, config)
        try:
            handle = await client.start_workflow(
                LocalTransferSaga, order, id=order.reference, task_queue=QUEUE
            )
            await asyncio.to_thread(
                wait_until, lambda: len(bank.entries()) == 1, 60, message="no withdraw"
            )
            workers.kill(first)  # SIGKILL while the deposit runs in the worker
            workers.start("w2", APP, extra_env=steady)
            with pytest.raises(WorkflowFailureError) as caught:
                await handle.result(timeout=timedelta(seconds=60))
            history = await handle.fetch_history()
            kinds = [type(e.attributes).__name__ for e in history]
            assert kinds.count("ActivityFailed") == 1  # the deposit, for good
            assert kinds.count("ActivityAttemptFailed") >= 2  # the refund's two failures
            scheduled = [
                e.attributes for e in history if isinstance(e.attributes, ActivityScheduled)
            ]
            assert [(s.activity_type, s.local) for s in scheduled] == [
                ("withdraw", True),
                ("deposit", True),
                ("refund", True),
            ]
            return caught.value
        finally:
            client.close()

    error = asyncio.run(main())
    assert "compensated" in str(error) and "is closed" in str(error)
    assert bank.balance("alice") == 0 and bank.balance("closed-bob") == 0
    keys = [str(e["key"]) for e in bank.entries()]
    assert len(keys) == len(set(keys)) == 2  # the withdraw and the refund, once each
