"""Signals, queries, updates, continue-as-new and ID policies on a real broker."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from streams import (
    ApplicationError,
    Client,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
    WorkflowNotRunningError,
    kafka,
)
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.wire import wire
from streams.wire.records import RunStatus
from tests.integration.workers import WorkerProcesses, topics_for, with_client

pytestmark = pytest.mark.integration
APP = "tests.integration.apps.messages"
Q = "messages"
MINUTE = timedelta(seconds=60)


@pytest.fixture
def config(kafka_bootstrap: str, topic_prefix: str) -> KafkaConfig:
    return topics_for(kafka_bootstrap, topic_prefix, Q)


def names(history: list[Any]) -> list[str]:
    return [type(e.attributes).__name__ for e in history]


def test_a_signal_changes_the_course_of_a_run_and_queries_follow_it(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    workers.start("w1", APP, task_queue=Q)

    async def body(client: Client) -> tuple[str, str, str]:
        handle = await client.start_workflow("Onboarding", 50, id="onb-1", task_queue=Q)
        await asyncio.sleep(1.0)
        during = await handle.query("progress")
        await handle.signal("cancel_subscription")
        result = await handle.result(timeout=MINUTE)
        after = await handle.query("progress")  # a closed run answers from its final state
        return during, result, after

    during, result, after = with_client(config, body)
    assert during.startswith("step ") and result.startswith("stopped after ")
    assert after == "canceled by customer"


def test_status_query_right_after_the_worker_was_killed_needs_replay(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    first = workers.start("w1", APP, task_queue=Q)

    async def body(client: Client) -> tuple[str, str]:
        handle = await client.start_workflow("Onboarding", 30, id="onb-2", task_queue=Q)
        await asyncio.sleep(1.5)
        before = await handle.query("progress")
        workers.kill(first)
        workers.start("w1", APP, task_queue=Q)
        after = await handle.query("progress", timeout=MINUTE)
        history = await handle.fetch_history()
        assert "Query" not in "".join(names(history))  # queries leave no trace
        await handle.signal("cancel_subscription")
        await handle.result(timeout=MINUTE)
        return before, after

    before, after = with_client(config, body)
    step = int(before.split()[1])
    assert after.startswith("step ") and int(after.split()[1]) >= step


def test_a_thousand_signals_in_order_none_lost_or_twice_across_a_worker_crash(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    first = workers.start("w1", APP, task_queue=Q)

    async def body(client: Client) -> list[int]:
        handle = await client.start_workflow("Collector", id="sink", task_queue=Q)
        await asyncio.gather(*(handle.signal("add", i) for i in range(500)))
        workers.kill(first)
        sends = asyncio.gather(*(handle.signal("add", i, timeout=MINUTE) for i in range(500, 1000)))
        await asyncio.sleep(0.5)
        workers.start("w1", APP, task_queue=Q)
        await sends
        await handle.signal("finish", timeout=MINUTE)
        return await handle.result(timeout=MINUTE)  # type: ignore[no-any-return]

    assert with_client(config, body) == list(range(1000))


def test_updates_validated_rejected_without_trace_and_racing_a_signal(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    workers.start("w1", APP, task_queue=Q)

    async def body(client: Client) -> None:
        handle = await client.start_workflow("Onboarding", 40, id="onb-3", task_queue=Q)
        assert await handle.execute_update("change_plan", "pro") == "basic -> pro"
        length = len(await handle.fetch_history())
        with pytest.raises(ApplicationError, match="unknown plan 'gold'"):
            await handle.execute_update("change_plan", "gold")
        history = await handle.fetch_history()
        rejected_trace = [n for n in names(history[length:]) if n.startswith("Update")]
        assert rejected_trace == []  # the rejected update left nothing in history
        sink = await client.start_workflow("Collector", id="sink-2", task_queue=Q)
        # sent back to back: the signal and the update are ordered in one partition
        counts = await asyncio.gather(
            sink.signal("add", 1),
            sink.execute_update("count"),
            sink.signal("add", 2),
            sink.execute_update("count"),
        )
        assert counts[1] == 1 and counts[3] == 2
        await handle.signal("cancel_subscription")
        await sink.signal("finish")

    with_client(config, body)


def test_continue_as_new_for_a_hundred_generations_keeps_each_history_small(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    workers.start("w1", APP, task_queue=Q)

    async def body(client: Client) -> tuple[str, Any]:
        handle = await client.start_workflow("Generations", 0, 100, id="gen", task_queue=Q)
        result = await handle.result(timeout=MINUTE)
        last = await client.get_workflow_handle("gen").describe()
        return result, last

    result, last = with_client(config, body)
    assert result.startswith("generation 100 from ")
    assert last.status is RunStatus.COMPLETED and last.history_length <= 5
    closes = read_completions(config)
    chain = [c for c in closes if c.workflow_id == "gen"]
    assert [c.status for c in chain] == [RunStatus.CONTINUED_AS_NEW] * 100 + [RunStatus.COMPLETED]
    assert max(c.history_length for c in chain) <= 5
    assert len({c.run_id for c in chain}) == 101


def test_id_reuse_and_conflict_policies(config: KafkaConfig, workers: WorkerProcesses) -> None:
    workers.start("w1", APP, task_queue=Q)

    async def body(client: Client) -> None:
        await client.execute_workflow("Quick", False, id="ok-1", task_queue=Q)
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow("Quick", True, id="bad-1", task_queue=Q)
        # allow_duplicate (the default): a closed ID may run again
        assert await client.execute_workflow("Quick", False, id="ok-1", task_queue=Q) == "ok"
        with pytest.raises(WorkflowAlreadyStartedError, match="reject_duplicate"):
            await client.start_workflow(
                "Quick", False, id="ok-1", task_queue=Q, id_reuse_policy="reject_duplicate"
            )
        with pytest.raises(WorkflowAlreadyStartedError, match="allow_duplicate_failed_only"):
            await client.start_workflow(
                "Quick",
                False,
                id="ok-1",
                task_queue=Q,
                id_reuse_policy="allow_duplicate_failed_only",
            )
        again = await client.start_workflow(
            "Quick", False, id="bad-1", task_queue=Q, id_reuse_policy="allow_duplicate_failed_only"
        )
        assert await again.result(timeout=MINUTE) == "ok"
        # conflict: a running ID
        running = await client.start_workflow("Collector", id="busy", task_queue=Q)
        with pytest.raises(WorkflowAlreadyStartedError):
            await client.start_workflow("Collector", id="busy", task_queue=Q)
        same = await client.start_workflow(
            "Collector",
            id="busy",
            task_queue=Q,
            id_conflict_policy="use_existing",
            start_signal="add",
            start_signal_args=[7],
        )
        assert same.run_id == running.run_id
        await running.signal("finish")
        assert await running.result(timeout=MINUTE) == [7]
        with pytest.raises(WorkflowNotRunningError):
            await running.signal("add", 1)
        with pytest.raises(ValueError, match="no signal 'nope'"):
            fresh = await client.start_workflow(
                "Collector", id="busy-2", task_queue=Q, start_signal="add", start_signal_args=[1]
            )
            await fresh.signal("nope")
        await client.get_workflow_handle("busy-2").signal("finish")

    with_client(config, body)


def read_completions(config: KafkaConfig) -> list[Any]:
    consumer = kafka.consumer(config, settings={"enable.partition.eof": True})
    topic = Topics(config.topic_prefix).completions
    consumer.assign([TopicPartition(topic, p, 0) for p in range(config.partitions)])
    out, eof = [], set()
    deadline = time.monotonic() + 30
    while len(eof) < config.partitions and time.monotonic() < deadline:
        for m in consumer.consume(500, 0.5):
            if m.error():
                eof.add(m.partition())
            else:
                out.append(wire().completion.decode(m.value()))
    consumer.close()
    return out
