"""Local activities on a real broker with a real worker process: the seed's transfer with its
two steps local completes with exact balances on a flaky bank, nothing goes through a tasks
topic or back through `commands`, and the recorded histories replay."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from examples.money_transfer import (
    RETRY,
    STEP,
    Bank,
    MoneyTransferWorkflow,
    TransferOrder,
    deposit,
    withdraw,
)
from streams import Client, kafka, workflow
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, ensure_topics, topic_specs
from streams.payload import DataConverter
from streams.replayer import Replayer
from streams.wire import wire
from streams.wire.events import ActivityScheduled, HistoryEvent
from streams.wire.history_json import event_to_json
from tests.integration.apps.local_transfer import LocalTransferWorkflow
from tests.integration.test_metrics import scrape
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
    # the bank fails attempt 1 of every third key: local retries
    proc = workers.start("w1", APP, options=["--metrics-port", "0"])

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
    # the worker's metrics count every attempt it started, retries included
    served = re.search(r"metrics served at http://127\.0\.0\.1:(\d+)/", workers.log_of(proc))
    assert served is not None
    attempts = scrape(int(served.group(1)))["everflow_local_activity_attempts"]
    assert [s.value for s in attempts.samples if s.name.endswith("_total")] == [
        2 * RUNS + retried
    ]
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


def test_a_transfer_with_local_steps_commits_in_one_transaction_a_regular_one_in_three(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    """Each transaction writes a marker into every partition it wrote: consecutive events of
    one run separated by a skipped offset were written by different transactions."""
    # a generous wait, so how many transactions the run takes does not depend on the timing
    env = {"EVERFLOW_BANK_FLAKY": "0", "EVERFLOW_LOCAL_ACTIVITY_WAIT": "5"}
    workers.start("w1", APP, extra_env=env)

    async def main() -> None:
        client = await asyncio.to_thread(Client, config)
        try:
            for wf, ref in ((LocalTransferWorkflow, "one-local"), (MoneyTransferWorkflow, "one")):
                order = TransferOrder("alice", "bob", 1, ref)
                await client.execute_workflow(
                    wf, order, id=ref, task_queue=QUEUE, timeout=timedelta(seconds=60)
                )
        finally:
            client.close()

    asyncio.run(main())
    offsets = history_offsets(config)
    assert len(offsets["one-local"]) == len(offsets["one"]) == 6
    assert transactions(offsets["one-local"]) == 1
    assert transactions(offsets["one"]) == 3


def history_offsets(config: KafkaConfig) -> dict[str, list[int]]:
    """Per workflow ID, the offsets of its events on `history` (read committed)."""
    topic = Topics(config.topic_prefix).history
    consumer = kafka.consumer(config, settings={"enable.partition.eof": True})
    parts = [TopicPartition(topic, p, 0) for p in range(config.partitions)]
    consumer.assign(parts)
    out: dict[str, list[int]] = {}
    eof: set[int] = set()
    deadline = time.monotonic() + 30
    while len(eof) < len(parts) and time.monotonic() < deadline:
        for msg in consumer.consume(100, 0.5):
            if msg.error():
                eof.add(msg.partition())
            elif msg.value() is not None:
                event = wire().event.decode(msg.value())
                out.setdefault(event.workflow_id, []).append(msg.offset())
    consumer.close()
    return out


def transactions(offsets: list[int]) -> int:
    """How many transactions wrote these events of one run (no other run wrote meanwhile)."""
    return 1 + sum(1 for a, b in itertools.pairwise(offsets) if b != a + 1)
