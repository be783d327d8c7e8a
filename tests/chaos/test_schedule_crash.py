"""A schedule fires each due time exactly once across worker crashes: a schedule every
second for a minute, the worker SIGKILLed twice in between and restarted after a few
seconds down, the schedule continuing as new on the way; the runs it started are counted from
`completions`."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import TopicPartition

from streams import Client, kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.schedules import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from streams.wire import wire
from streams.wire.records import RunStatus
from tests.helpers import wait_until
from tests.integration.workers import WorkerProcesses, topics_for, with_client

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
APP = "tests.integration.apps.scheduled"
Q = "scheduled"
DUE_TIMES = 60
DOWN_SECONDS = 3


def test_each_due_time_fires_once_across_two_worker_kills(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, Q)
    worker = workers.start("w1", APP, task_queue=Q)

    async def create(client: Client) -> list[str]:
        # the due times: a minute of whole seconds, from a few seconds after the request
        first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
        last = first + timedelta(seconds=DUE_TIMES - 1)
        schedule = Schedule(
            ScheduleActionStartWorkflow("Tick", "tick", id="tick", task_queue=Q),
            ScheduleSpec(
                intervals=[ScheduleIntervalSpec(timedelta(seconds=1))], start_at=first, end_at=last
            ),
            # the catch-up window covers the time down, and a run never waits for another:
            # every due time is taken, none is skipped by policy
            SchedulePolicy(ScheduleOverlapPolicy.ALLOW_ALL, catchup_window=timedelta(minutes=10)),
        )
        await client.create_schedule("every-second", schedule)
        return [
            "tick-" + (first + timedelta(seconds=k)).strftime("%Y-%m-%dT%H:%M:%SZ")
            for k in range(DUE_TIMES)
        ]

    expected = set(with_client(config, create))
    seen: Counter[str] = Counter()
    for kill_after in (15, 35):  # completions seen before each kill
        wait_until(
            lambda n=kill_after: read_ticks(config, seen) >= n,  # type: ignore[misc]
            timeout=90,
            interval=0.5,
            message=f"{kill_after} scheduled runs did not complete (seen {len(seen)})",
        )
        workers.kill(worker)
        time.sleep(DOWN_SECONDS)  # due times pass with no worker up: caught up on restart
        worker = workers.start("w1", APP, task_queue=Q)
    wait_until(
        lambda: read_ticks(config, seen) >= DUE_TIMES,
        timeout=120,
        interval=0.5,
        message=f"not every due time's run completed: {sorted(expected - set(seen))}",
    )

    async def settled(client: Client) -> tuple[int, int, int]:
        handle = client.get_schedule_handle("every-second")
        deadline = time.monotonic() + 60
        desc = await handle.describe()
        while desc.running_workflow_ids and time.monotonic() < deadline:
            await asyncio.sleep(0.5)  # the last runs' closes reach the schedule
            desc = await handle.describe()
        assert not desc.running_workflow_ids and not desc.next_action_times, desc
        return desc.action_count, desc.missed_catchup_window, desc.overlap_skipped

    assert with_client(config, settled) == (DUE_TIMES, 0, 0)
    read_ticks(config, seen)  # to the end of the topic: a duplicate would show now
    assert set(seen) == expected
    assert [wf for wf, n in seen.items() if n != 1] == []
    # the schedule continued as new on the way (every 50 runs), its counts carried over
    assert schedule_closes == [RunStatus.CONTINUED_AS_NEW]


_offsets: dict[str, dict[int, int]] = {}
schedule_closes: list[RunStatus] = []  # the schedule's own runs that closed


def read_ticks(config: KafkaConfig, seen: Counter[str]) -> int:
    """Adds the completed `tick-*` runs on `completions` since the last call to `seen`
    (read to the end of every partition); returns how many distinct runs it has."""
    topic = Topics(config.topic_prefix).completions
    positions = _offsets.setdefault(config.topic_prefix, {})
    consumer = kafka.consumer(config, settings={"enable.partition.eof": True})
    try:
        consumer.assign(
            [TopicPartition(topic, p, positions.get(p, 0)) for p in range(config.partitions)]
        )
        at_end: set[int] = set()
        deadline = time.monotonic() + 30
        while len(at_end) < config.partitions and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.5):
                partition = m.partition()
                assert partition is not None
                if m.error():
                    at_end.add(partition)
                    continue
                at_end.discard(partition)
                positions[partition] = m.offset() + 1  # type: ignore[operator]
                completion = wire().completion.decode(m.value())
                if completion.workflow_id == "everflow-schedule:every-second":
                    schedule_closes.append(completion.status)
                elif completion.workflow_id.startswith("tick-"):
                    assert completion.status is RunStatus.COMPLETED, completion
                    seen[completion.workflow_id] += 1
    finally:
        consumer.close()
    return len(seen)
