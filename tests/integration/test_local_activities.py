"""Local activities on a real broker with a real worker process: the seed's transfer with its
two steps local completes with exact balances on a flaky bank, nothing goes through a tasks
topic or back through `commands`, and the recorded histories replay."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from examples.money_transfer import RETRY, STEP, Bank, TransferOrder, deposit, withdraw
from streams import Client, kafka, workflow
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, ensure_topics, topic_specs
from streams.payload import DataConverter
from streams.replayer import Replayer
from streams.wire import wire
from streams.wire.events import ActivityScheduled, HistoryEvent
from streams.wire.history_json import event_to_json
from tests.integration.apps.local_transfer import LocalTransferWorkflow
from tests.integration.test_money_transfer import read_all
from tests.integration.workers import WorkerProcesses

pytestmark = pytest.mark.integration
QUEUE = "transfers"
APP = "tests.integration.apps.local_transfer"
RUNS = 6


@pytest.fixture
def config(kafka_bootstrap: str, topic_prefix: str) -> KafkaConfig:
    cfg = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=4)
    ensure_topics(kafka.admin(cfg), topic_specs(cfg, [QUEUE]))
    return cfg


def test_local_transfers_complete_without_tasks_or_reports_and_their_histories_replay(
    config: KafkaConfig, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    workers.start("w1", APP)  # the bank fails attempt 1 of every third key: local retries

    async def main() -> tuple[list[str], list[list[HistoryEvent]]]:
        client = await asyncio.to_thread(Client, config)
        try:
            orders = [TransferOrder("alice", "bob", 10, f"local-{i}") for i in range(RUNS)]
            results = await asyncio.gather(
                *(
                    client.execute_workflow(
                        LocalTransferWorkflow,
                        o,
                        id=o.reference,
                        task_queue=QUEUE,
                        timeout=timedelta(seconds=60),
                    )
                    for o in orders
                )
            )
            histories = [
                await client.get_workflow_handle(o.reference).fetch_history() for o in orders
            ]
            return list(results), histories
        finally:
            client.close()

    results, histories = asyncio.run(main())
    assert results == ["withdrew 10 from alice; deposited 10 into bob"] * RUNS
    bank = Bank(Path(worker_env["EVERFLOW_BANK_LEDGER"]))
    assert bank.balance("alice") == -10 * RUNS and bank.balance("bob") == 10 * RUNS
    assert len(bank.entries()) == 2 * RUNS  # each idempotency key's effect once
    retried = 0
    for history in histories:
        kinds = [type(e.attributes).__name__ for e in history]
        scheduled = [e.attributes for e in history if isinstance(e.attributes, ActivityScheduled)]
        assert [s.activity_type for s in scheduled] == ["withdraw", "deposit"]
        assert all(s.local for s in scheduled)
        assert kinds[0] == "WorkflowStarted" and kinds[-1] == "WorkflowCompleted"
        assert kinds.count("ActivityCompleted") == 2 and "ActivityStarted" not in kinds
        retried += kinds.count("ActivityRetried")
        # the export shows the flag
        exported = [event_to_json(e, DataConverter()) for e in history]
        assert any("local_retry_threshold_ms" in str(x) for x in exported)
    assert retried > 0  # the flaky bank made some attempts retry, in the worker
    # no attempt went through the tasks topic, no outcome came back through `commands`: the
    # commands topic holds the starts (and the history reads), no report of an attempt
    topics = Topics(config.topic_prefix)
    assert read_all(config, topics.tasks(QUEUE)) == []
    commands = [wire().command.decode(v) for v in read_all(config, topics.commands)]
    bodies = [type(c.body).__name__ for c in commands]
    assert bodies.count("StartWorkflow") == RUNS
    assert not {"CompleteActivity", "FailActivity", "StartActivity"} & set(bodies), bodies
    # the recorded histories replay with today's code, and not with the code made regular
    replayer = Replayer([LocalTransferWorkflow])
    assert all(r.ok for r in replayer.replay_all(histories)), replayer.replay_all(histories)
    regular = Replayer([RegularTransfer])
    assert not any(r.ok for r in regular.replay_all(histories))


@workflow.defn(name="LocalTransferWorkflow")
class RegularTransfer:
    """The same steps as regular activities, under the local workflow's name."""

    @workflow.run
    async def run(self, order: TransferOrder) -> str:
        w = await workflow.execute_activity(
            withdraw, order, start_to_close_timeout=STEP, retry_policy=RETRY
        )
        d = await workflow.execute_activity(
            deposit, order, start_to_close_timeout=STEP, retry_policy=RETRY
        )
        return f"{w}; {d}"
