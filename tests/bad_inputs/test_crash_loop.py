"""A command that kills the worker process each time it is processed does not crash-loop it
forever: after 3 deaths at its offset, the restarted worker dead-letters it with the reason,
and the partition (and the run the command was for) goes on."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from streams import Client, kafka
from streams.kafka.topics import Topics
from streams.wire import wire
from streams.wire.commands import Command, SignalWorkflow
from streams.wire.records import Timer, TimerKind
from tests.bad_inputs.table import Outcome
from tests.bad_inputs.test_records import (
    PARTITIONS,
    QUEUE,
    TIMEOUT,
    dead_letters,
    on_partition,
    produce_raw,
    run_normally,
)
from tests.helpers import wait_until
from tests.integration.workers import ROOT, WorkerProcesses, topics_for, with_client

pytestmark = pytest.mark.integration

BAD = 2


def test_a_command_that_kills_the_process_is_dead_lettered_after_three_deaths(
    kafka_bootstrap: str, tmp_path: Path, bad_input: Any
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}."
    config = topics_for(kafka_bootstrap, prefix, QUEUE, partitions=PARTITIONS)
    env = {
        **os.environ,
        "EVERFLOW_BOOTSTRAP": kafka_bootstrap,
        "EVERFLOW_TOPIC_PREFIX": prefix,
        "EVERFLOW_PARTITIONS": str(PARTITIONS),
        "PYTHONPATH": str(ROOT),
    }
    procs = WorkerProcesses(env, tmp_path)
    try:
        worker = procs.start("w1", "tests.bad_inputs.records_app", task_queue=QUEUE)
        workflow_id = on_partition("fragile", BAD)

        async def start(client: Client) -> None:
            await client.start_workflow("Fragile", id=workflow_id, task_queue=QUEUE)

        with_client(config, start)
        # a timer record of a run nobody knows, read by the restore after the first death
        ghost = Timer(on_partition("ghost", BAD), str(uuid.uuid4()), TimerKind.USER_TIMER, 1, 0, 1)
        timers = Topics(prefix).timers
        producer = kafka.producer(config)
        producer.produce(timers, wire().timer.encode(ghost), ghost.key.encode(), partition=BAD)
        assert producer.flush(30) == 0
        die = Command(uuid.uuid4().hex, workflow_id, int(time.time() * 1000), SignalWorkflow("die"))
        (offset,) = produce_raw(config, [(workflow_id.encode(), wire().command.encode(die), BAD)])
        deaths = []
        for _ in range(3):  # a supervisor restarts the worker each time it dies
            deaths.append(worker.wait(90))
            worker = procs.start("w1", "tests.bad_inputs.records_app", task_queue=QUEUE)
        assert deaths == [9, 9, 9]

        letter = dead_letters(config, {(BAD, offset)})[(BAD, offset)]
        assert "died 3 times while processing this command" in letter.reason

        async def finish(client: Client) -> Any:
            handle = client.get_workflow_handle(workflow_id)
            await handle.signal("finish")
            return await handle.result(timeout=TIMEOUT)

        assert with_client(config, finish) == "survived"
        run_normally(config, BAD)
        assert worker.poll() is None  # the fourth process lives on
        assert "died while processing partition=2 offset=" in procs.logs()
        bad_input(0, "a command that kills the worker process (os._exit)",
                  Outcome.DEAD_LETTERED, letter.reason)  # fmt: skip

        def tombstoned() -> bool:
            reader = kafka.consumer(config, settings={"enable.partition.eof": True})
            try:
                found = kafka.read_to_end(reader, [TopicPartition(timers, BAD, 0)],
                                          time.monotonic() + 20)  # fmt: skip
                values = [m.value() for m in found if m.key() == ghost.key.encode()]
            finally:
                reader.close()
            return values[-1:] == [None]

        wait_until(tombstoned, timeout=30, interval=0.5, message="the ghost timer tombstoned")
        bad_input(22, "timer record for an unknown run", Outcome.IGNORED,
                  f"timer {ghost.key} dropped at restore: a tombstone replaced it")  # fmt: skip
    finally:
        procs.stop_all()
