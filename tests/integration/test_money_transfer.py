"""The seed's money transfer and saga on a real broker, with real worker processes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from examples.money_transfer import Bank, MoneyTransferSaga, MoneyTransferWorkflow, TransferOrder
from streams import Client, WorkflowAlreadyStartedError, WorkflowFailureError, kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, ensure_topics, topic_specs
from streams.wire import wire
from tests.helpers import wait_until
from tests.integration.workers import WorkerProcesses

pytestmark = pytest.mark.integration
QUEUE = "transfers"


@pytest.fixture
def config(kafka_bootstrap: str, topic_prefix: str) -> KafkaConfig:
    cfg = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=4)
    ensure_topics(kafka.admin(cfg), topic_specs(cfg, [QUEUE]))
    return cfg


def bank(env: dict[str, str]) -> Bank:
    return Bank(Path(env["EVERFLOW_BANK_LEDGER"]))


async def transfer(client: Client, order: TransferOrder, wf: type = MoneyTransferWorkflow) -> str:
    return await client.execute_workflow(  # type: ignore[no-any-return]
        wf, order, id=order.reference, task_queue=QUEUE, timeout=_timeout()
    )


def _timeout():  # type: ignore[no-untyped-def]
    from datetime import timedelta

    return timedelta(seconds=60)


def test_money_transfers_complete_on_a_flaky_bank_with_exact_balances(
    config: KafkaConfig, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    workers.start("w1")

    async def main() -> list[str]:
        client = await asyncio.to_thread(Client, config)
        try:
            orders = [TransferOrder("alice", "bob", 10, f"transfer-{i}") for i in range(12)]
            return list(await asyncio.gather(*(transfer(client, o) for o in orders)))
        finally:
            client.close()

    results = asyncio.run(main())
    assert all(r.startswith("withdrew 10 from alice; deposited 10 into bob") for r in results)
    b = bank(worker_env)
    assert b.balance("alice") == -120 and b.balance("bob") == 120
    assert len(b.entries()) == 24  # one withdraw and one deposit per transfer, no more


def test_saga_refunds_when_the_deposit_fails_for_good_and_retries_the_refund(
    config: KafkaConfig, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    workers.start("w1", extra_env={"EVERFLOW_BANK_REFUND_FAILURES": "2"})

    async def main() -> BaseException:
        client = await asyncio.to_thread(Client, config)
        try:
            with pytest.raises(WorkflowFailureError) as caught:
                await transfer(
                    client, TransferOrder("alice", "closed-bob", 25, "saga-1"), MoneyTransferSaga
                )
            history = await client.get_workflow_handle("saga-1").fetch_history()
            kinds = [type(e.attributes).__name__ for e in history]
            # deposit failed for good (non-retryable), the refund failed twice then worked
            assert kinds.count("ActivityFailed") == 1
            assert kinds.count("ActivityAttemptFailed") >= 2
            assert kinds[-1] == "WorkflowFailed"
            return caught.value
        finally:
            client.close()

    error = asyncio.run(main())
    assert "compensated" in str(error) and "is closed" in str(error)
    b = bank(worker_env)
    assert b.balance("alice") == 0 and b.balance("closed-bob") == 0
    assert sorted(e["delta"] for e in b.entries()) == [-25, 25]


def test_worker_killed_between_withdraw_and_deposit_finishes_on_a_new_worker(
    config: KafkaConfig, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    slow = {"EVERFLOW_BANK_DEPOSIT_DELAY": "4", "EVERFLOW_BANK_FLAKY": "0"}
    first = workers.start("w1", extra_env=slow)
    b = bank(worker_env)

    async def main() -> str:
        client = await asyncio.to_thread(Client, config)
        try:
            handle = await client.start_workflow(
                MoneyTransferWorkflow,
                TransferOrder("alice", "bob", 7, "crash-1"),
                id="crash-1",
                task_queue=QUEUE,
            )
            await asyncio.to_thread(
                wait_until, lambda: len(b.entries()) == 1, 30, message="withdraw never applied"
            )
            workers.kill(first)  # SIGKILL while the deposit sleeps
            assert [e["delta"] for e in b.entries()] == [-7]
            workers.start("w1", extra_env={"EVERFLOW_BANK_FLAKY": "0"})
            return await handle.result(timeout=_timeout())  # type: ignore[no-any-return]
        finally:
            client.close()

    assert asyncio.run(main()) == "withdrew 7 from alice; deposited 7 into bob"
    assert sorted(e["delta"] for e in b.entries()) == [-7, 7]  # each effect applied once


def test_two_workers_split_partitions_and_every_run_completes_exactly_once(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    workers.start("w1")
    workers.start("w2")
    wait_until(
        lambda: (
            len(
                [
                    log
                    for log in workers.log_dir.glob("worker-w*.log")
                    if "assigned partitions=[" in log.read_text()
                ]
            )
            == 2
        ),
        60,
        message="both workers should own partitions",
    )

    async def main() -> None:
        client = await asyncio.to_thread(Client, config)
        try:
            orders = [TransferOrder("a", "b", 1, f"pair-{i}") for i in range(24)]
            await asyncio.gather(*(transfer(client, o) for o in orders))
        finally:
            client.close()

    asyncio.run(main())
    completions = read_all(config, Topics(config.topic_prefix).completions)
    ids = sorted(wire().completion.decode(v).workflow_id for v in completions)
    assert ids == sorted(f"pair-{i}" for i in range(24))
    # both processors owned partitions (the log names each assignment)
    for log in sorted(workers.log_dir.glob("worker-w*.log")):
        assert "assigned partitions=[" in log.read_text(), log.name


def test_starting_a_running_workflow_id_again_is_refused(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    workers.start("w1", extra_env={"EVERFLOW_BANK_DEPOSIT_DELAY": "2", "EVERFLOW_BANK_FLAKY": "0"})

    async def main() -> None:
        client = await asyncio.to_thread(Client, config)
        try:
            order = TransferOrder("a", "b", 1, "dup-1")
            handle = await client.start_workflow(
                MoneyTransferWorkflow, order, id="dup-1", task_queue=QUEUE
            )
            with pytest.raises(WorkflowAlreadyStartedError, match="dup-1"):
                await client.start_workflow(
                    MoneyTransferWorkflow, order, id="dup-1", task_queue=QUEUE
                )
            await handle.result(timeout=_timeout())
            desc = await client.get_workflow_handle("dup-1").describe()
            assert desc.status.value == "COMPLETED" and desc.history_length == 6
        finally:
            client.close()

    asyncio.run(main())


def test_poison_command_is_dead_lettered_and_the_partition_keeps_going(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    topics = Topics(config.topic_prefix)
    producer = kafka.producer(config)
    partition = kafka.partition_for("poisoned", config.partitions)
    producer.produce(topics.commands, b"not an everflow command", b"poisoned")
    producer.flush(10)
    workers.start("w1", extra_env={"EVERFLOW_BANK_FLAKY": "0"})

    async def main() -> str:
        client = await asyncio.to_thread(Client, config)
        try:
            # same key, so same partition as the poison: it must not block this run
            return await transfer(client, TransferOrder("a", "b", 1, "poisoned"))
        finally:
            client.close()

    assert asyncio.run(main()).startswith("withdrew 1")
    dead = read_all(config, topics.dead_letters, with_headers=True)
    assert len(dead) == 1
    value, headers = dead[0]
    assert value == b"not an everflow command"
    reason = dict(headers)["everflow.reason"].decode()
    assert "not Avro single-object encoding" in reason and f"[{partition}]" in reason


def test_unreadable_activity_task_is_dead_lettered_and_the_runner_keeps_going(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    topics = Topics(config.topic_prefix)
    producer = kafka.producer(config)
    partition = kafka.partition_for("garbled", config.partitions)
    producer.produce(
        topics.tasks(QUEUE),
        b"not an activity task",
        b"garbled",
        partition=partition,
        headers=[("trace", b"t-1")],
    )
    producer.flush(10)
    workers.start("w1", extra_env={"EVERFLOW_BANK_FLAKY": "0"})

    async def main() -> str:
        client = await asyncio.to_thread(Client, config)
        try:
            return await transfer(client, TransferOrder("a", "b", 1, "after-garbled"))
        finally:
            client.close()

    assert asyncio.run(main()).startswith("withdrew 1")
    wait_until(lambda: len(read_all(config, topics.dead_letters)) == 1, timeout=30)
    value, headers = read_all(config, topics.dead_letters, with_headers=True)[0]
    assert value == b"not an activity task"
    named = dict(headers)
    assert named["trace"] == b"t-1"  # the original headers are kept
    assert named["everflow.source"].decode().startswith(f"{topics.tasks(QUEUE)}/{partition}/")
    reason = named["everflow.reason"].decode()
    assert "not Avro single-object encoding" in reason and topics.tasks(QUEUE) in reason


def read_all(config: KafkaConfig, topic: str, with_headers: bool = False) -> list:  # type: ignore[type-arg]
    consumer = kafka.consumer(config, settings={"enable.partition.eof": True})
    parts = [TopicPartition(topic, p, 0) for p in range(config.partitions)]
    consumer.assign(parts)
    out: list = []  # type: ignore[type-arg]
    eof: set[int] = set()
    deadline = time.monotonic() + 30
    while len(eof) < len(parts) and time.monotonic() < deadline:
        for msg in consumer.consume(100, 0.5):
            if msg.error():
                eof.add(msg.partition())
            else:
                out.append((msg.value(), msg.headers() or []) if with_headers else msg.value())
    consumer.close()
    return out
