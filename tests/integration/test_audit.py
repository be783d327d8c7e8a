"""`everflow audit` on a real broker: a clean history passes; forged records are reported
with their topic/partition/offset and fail the audit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from examples.money_transfer import MoneyTransferWorkflow, TransferOrder
from streams import Client, kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.wire import wire
from streams.wire.events import HistoryEvent, SignalReceived, WorkflowStarted
from tests.integration.history_check import read_topic
from tests.integration.workers import WorkerProcesses, everflow, topics_for, with_client

pytestmark = pytest.mark.integration


def _forge(config: KafkaConfig, records: list[tuple[str, bytes]]) -> list[str]:
    """Writes raw history records (as a buggy or hostile producer would); their places."""
    topic = Topics(config.topic_prefix).history
    producer = kafka.producer(config)
    where: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        where.append(f"{topic}/{msg.partition()}/{msg.offset()}")

    for key, value in records:
        p = kafka.partition_for(key, config.partitions)
        producer.produce(topic, value, key.encode(), partition=p, on_delivery=delivered)
        producer.flush(30)
    return where


def test_audit_passes_a_clean_history_and_reports_each_forged_record(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "transfers")
    workers.start("w1")

    async def main(client: Client) -> None:
        await asyncio.gather(
            *(
                client.execute_workflow(
                    MoneyTransferWorkflow,
                    TransferOrder("a", "b", 1, f"clean-{i}"),
                    id=f"clean-{i}",
                    task_queue="transfers",
                )
                for i in range(12)
            )
        )

    with_client(config, main)
    clean = everflow(worker_env, "audit")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "audited 12 runs" in clean.stdout and "no violations" in clean.stdout

    # forge: a copy of a closed run's event, an event of a run never started, and a run
    # whose events repeat an ID and then skip one
    history = read_topic(config, Topics(config.topic_prefix).history)
    copied = next(v for _, _, v in history if v and wire().event.decode(v).event_id == 2)
    copied_of = wire().event.decode(copied).workflow_id
    encode = wire().event.encode
    start = WorkflowStarted("Forged", "transfers", [], "forged")
    ghost = HistoryEvent("ghost", "r-ghost", 3, 1, SignalReceived("poke"))
    forged_run = [
        HistoryEvent("forged", "r-f", 1, 1, start),
        HistoryEvent("forged", "r-f", 2, 2, SignalReceived("one")),
        HistoryEvent("forged", "r-f", 2, 3, SignalReceived("one again")),
        HistoryEvent("forged", "r-f", 4, 4, SignalReceived("skipped three")),
    ]
    places = _forge(
        config,
        [(copied_of, copied), ("ghost", encode(ghost))]
        + [("forged", encode(e)) for e in forged_run],
    )
    forged = everflow(worker_env, "audit")
    out = forged.stdout
    assert forged.returncode == 1, out + forged.stderr
    assert "4 violations" in out
    assert f"{places[0]} {copied_of}/" in out and "event after close" in out
    assert f"{places[1]} ghost/r-ghost: event for an unknown run" in out
    assert f"{places[4]} forged/r-f: duplicate event: event 2, expected 3" in out
    assert f"{places[5]} forged/r-f: gap in event ids: event 4, expected 3" in out

    filtered = everflow(worker_env, "audit", "--workflow-type", "MoneyTransferWorkflow")
    # the forged run is of another type; a run nobody started has no type, so it stays
    assert "audited 12 runs" in filtered.stdout and "2 violations" in filtered.stdout
    assert "forged/r-f" not in filtered.stdout and "ghost/r-ghost" in filtered.stdout
