"""Timers at scale and across a broker restart."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from streams import Client, kafka
from streams.dev.broker import LocalKafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.wire import wire
from streams.wire.events import TimerFired, TimerStarted
from tests.integration.workers import WorkerProcesses, topics_for, with_client

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
APP = "tests.integration.apps.timing"


def test_a_timer_survives_a_broker_restart(
    topic_prefix: str, workers: WorkerProcesses, tmp_path: Path
) -> None:
    with LocalKafka(tmp_path / "broker") as broker:
        config = topics_for(broker.bootstrap, topic_prefix, "timing", partitions=2)
        env = {"EVERFLOW_BOOTSTRAP": broker.bootstrap, "EVERFLOW_PARTITIONS": "2"}
        worker = workers.start("w1", APP, task_queue="timing", extra_env=env)

        async def start(client: Client) -> None:
            handle = await client.start_workflow("Nap", 6.0, id="nap-br", task_queue="timing")
            for _ in range(100):
                history = await handle.fetch_history()
                if any(isinstance(e.attributes, TimerStarted) for e in history):
                    return
                await asyncio.sleep(0.1)
            raise AssertionError("the timer never started")

        with_client(config, start)
        workers.kill(worker)
        broker.restart()  # same data directory and ports
        workers.start("w1", APP, task_queue="timing", extra_env=env)

        async def finish(client: Client) -> int:
            handle = client.get_workflow_handle("nap-br")
            return await handle.result(timeout=timedelta(seconds=90))  # type: ignore[no-any-return]

        assert with_client(config, finish) > 0
        workers.stop_all()


def test_ten_thousand_sleeping_runs_all_fire_in_order_none_twice(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    runs = 10_000
    config = topics_for(kafka_bootstrap, topic_prefix, "timing")
    workers.start("w1", APP, task_queue="timing")

    async def main() -> None:
        client = await asyncio.to_thread(Client, config)
        gate = asyncio.Semaphore(256)
        try:

            async def one(i: int) -> None:
                async with gate:
                    # durations spread over 2..12 s, in no particular order of starting
                    await client.start_workflow(
                        "Nap",
                        2.0 + (i * 7919 % 1000) / 100.0,
                        id=f"sleeper-{i}",
                        task_queue="timing",
                    )

            await asyncio.gather(*(one(i) for i in range(runs)))
        finally:
            client.close()

    asyncio.run(main())
    completions = read_topic(config, Topics(topic_prefix).completions, runs)
    assert len(completions) == runs
    assert len({wire().completion.decode(v).workflow_id for v in completions}) == runs
    # history: every run's timer fired once, never before it was due, and in due order
    due: dict[str, int] = {}
    fired: dict[int, list[tuple[int, str]]] = defaultdict(list)  # partition -> (offset, wf)
    fire_count: dict[str, int] = defaultdict(int)
    for partition, offset, raw in read_history(config):
        event = wire().event.decode(raw)
        if isinstance(event.attributes, TimerStarted):
            due[event.workflow_id] = event.attributes.fire_at
        elif isinstance(event.attributes, TimerFired):
            fire_count[event.workflow_id] += 1
            assert event.time >= due[event.workflow_id]
            fired[partition].append((offset, event.workflow_id))
    assert len(fire_count) == runs and set(fire_count.values()) == {1}
    for events in fired.values():
        order = [due[wf] for _, wf in sorted(events)]
        assert order == sorted(order)


def read_topic(config: KafkaConfig, topic: str, expected: int, timeout: float = 120) -> list[bytes]:
    consumer = kafka.consumer(config)
    consumer.assign([TopicPartition(topic, p, 0) for p in range(config.partitions)])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(values) < expected and time.monotonic() < deadline:
        values += [m.value() for m in consumer.consume(1000, 0.5) if not m.error()]
    consumer.close()
    return values


def read_history(config: KafkaConfig) -> list[tuple[int, int, bytes]]:
    consumer = kafka.consumer(config, settings={"enable.partition.eof": True})
    topic = Topics(config.topic_prefix).history
    consumer.assign([TopicPartition(topic, p, 0) for p in range(config.partitions)])
    out: list[tuple[int, int, bytes]] = []
    eof: set[int] = set()
    deadline = time.monotonic() + 120
    while len(eof) < config.partitions and time.monotonic() < deadline:
        for m in consumer.consume(2000, 0.5):
            if m.error():
                eof.add(m.partition())  # type: ignore[arg-type]
            else:
                out.append((m.partition(), m.offset(), m.value()))  # type: ignore[arg-type]
    consumer.close()
    return out
