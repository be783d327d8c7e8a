"""Payloads a worker's codec chain refuses (catalogue rows 27 and 28), on a real broker and a
real worker program: the run is blocked with the codec's reason and its partition goes on."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from streams import Client, DataConverter, ZlibCodec
from streams.encryption import AesGcmCodec
from streams.kafka.config import KafkaConfig
from streams.wire.records import Failure
from tests.bad_inputs.clients import blocked
from tests.bad_inputs.conftest import Report
from tests.bad_inputs.table import Outcome
from tests.bad_inputs.zlib_worker import MAX_INFLATED, QUEUE
from tests.integration.workers import WorkerProcesses, topics_for
from tests.integration.workers import with_client as run

pytestmark = pytest.mark.integration

WAIT = timedelta(seconds=60)


@pytest.fixture
def zlib_worker(kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses) -> KafkaConfig:
    config = topics_for(kafka_bootstrap, topic_prefix, QUEUE, partitions=1)
    workers.start_program(
        "zlib", "-m", "tests.bad_inputs.zlib_worker", extra_env={"EVERFLOW_PARTITIONS": "1"}
    )
    return config


async def _start_blocked(client: Client, workflow_id: str) -> Failure:
    await client.start_workflow("Sleeper", 0.1, id=workflow_id, task_queue=QUEUE)
    return await blocked(client, workflow_id)


async def _quick_completes(client: Client) -> str:
    result: str = await client.execute_workflow(
        "Quick", "after", id="after", task_queue=QUEUE, timeout=WAIT
    )
    return result


def test_a_compression_bomb_blocks_its_run_without_being_inflated(
    zlib_worker: KafkaConfig, bad_input: Report
) -> None:
    # 64 MiB of one character compresses to about 64 KB: under the payload limit on the wire,
    # 64 times the worker's limit once inflated
    bomb = DataConverter([ZlibCodec(min_bytes=0, level=9)])
    arg = "0" * (64 * MAX_INFLATED)

    async def body(client: Client) -> Failure:
        await client.start_workflow("Sleeper", arg, id="bomb", task_queue=QUEUE)
        return await blocked(client, "bomb")

    reason = run(zlib_worker, body, bomb)
    after = run(zlib_worker, _quick_completes)

    assert reason.type == "PayloadDecodeError"
    assert "refused as a compression bomb" in reason.message
    assert f"inflates past {MAX_INFLATED} bytes" in reason.message
    assert after == "after"  # the one partition went on
    bad_input(28, "compression bomb in a payload", Outcome.RUN_BLOCKED, reason.message)


def test_arguments_sealed_with_a_key_the_worker_lacks_block_the_run(
    zlib_worker: KafkaConfig, bad_input: Report
) -> None:
    sealed = DataConverter([AesGcmCodec({"k9": os.urandom(32)}, "k9")])

    reason = run(zlib_worker, lambda c: _start_blocked(c, "sealed"), sealed)
    after = run(zlib_worker, _quick_completes)

    assert reason.type == "PayloadKeyError"
    assert "key 'k9'" in reason.message and "no payload keys" in reason.message
    assert after == "after"
    kind = "codec failure: arguments encrypted with a key the worker lacks"
    bad_input(27, kind, Outcome.RUN_BLOCKED, reason.message)
