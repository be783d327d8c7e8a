"""Static group membership (`--static-membership`): a worker SIGKILLed and started again
gets its own partitions back with no rebalance, so the other worker never stops; a second
worker started with a running one's instance ID fences it, and the fenced one exits saying
why."""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta

import pytest

from examples.money_transfer import MoneyTransferWorkflow, TransferOrder
from streams import Client
from streams.kafka.config import KafkaConfig
from tests.helpers import wait_until
from tests.integration.workers import WorkerProcesses, topics_for, with_client

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
STATIC = {"EVERFLOW_STATIC_MEMBERSHIP": "on", "EVERFLOW_BANK_FLAKY": "0"}
PROCESSOR = "processors.workflow_processor.processor: "


def owned(log: str) -> list[int] | None:
    """The commands partitions the processor of this worker log owns now (None: none yet)."""
    events = re.findall(PROCESSOR + r"(assigned|revoked) partitions=\[([\d, ]*)\]", log)
    if not events or events[-1][0] != "assigned":
        return None
    return sorted(int(p) for p in events[-1][1].split(",") if p.strip())


def rebalances(log: str) -> int:
    return len(re.findall(PROCESSOR + "(?:assigned|revoked) partitions", log))


def transfers(config: KafkaConfig, tag: str, count: int = 8) -> list[str]:
    """`count` transfers (workflow IDs spread over the partitions), run to their end."""

    async def body(client: Client) -> list[str]:
        out = []
        for n in range(count):
            order = TransferOrder("alice", "bob", 1, f"{tag}-{n}")
            handle = await client.start_workflow(
                MoneyTransferWorkflow, order, id=f"{tag}-{n}", task_queue="transfers"
            )
            out.append(await handle.result(timeout=timedelta(seconds=60)))
        return out

    return with_client(config, body)  # type: ignore[no-any-return]


def test_a_worker_killed_and_restarted_takes_its_partitions_back_and_the_other_never_stops(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "transfers")
    w1 = workers.start("w1", extra_env=STATIC)
    w2 = workers.start("w2", extra_env=STATIC)

    def settled() -> tuple[list[int], list[int]] | None:
        mine, theirs = owned(workers.log_of(w1)), owned(workers.log_of(w2))
        if mine and theirs and sorted(mine + theirs) == list(range(config.partitions)):
            return mine, theirs
        return None

    first, second = wait_until(settled, timeout=90, interval=0.2, message="no even split")
    assert len(transfers(config, "before")) == 8
    w2_before = rebalances(workers.log_of(w2))

    workers.kill(w1)
    w1 = workers.start("w1", extra_env=STATIC)  # the same instance ID, a new process
    back = wait_until(
        lambda: owned(workers.log_of(w1)),
        timeout=60,
        interval=0.2,
        message="the restarted w1 was given no partitions",
    )
    assert back == first  # its own partitions, not a new split
    assert len(transfers(config, "after")) == 8  # every partition serves again
    # w2 kept its partitions all along: no revoke, no new assignment reached it
    assert rebalances(workers.log_of(w2)) == w2_before
    assert owned(workers.log_of(w2)) == second


def test_a_second_worker_with_the_same_instance_id_fences_the_first(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "transfers")
    first = workers.start("twin", extra_env=STATIC)
    wait_until(lambda: owned(workers.log_of(first)), timeout=60, interval=0.2)
    workers.start("twin", extra_env=STATIC)
    try:
        code = first.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail("the first worker went on with its instance ID taken over")
    assert code != 0
    log = workers.log_of(first)
    assert "instance ID (EVERFLOW_INSTANCE_ID) must be unique" in log, log[-3000:]
    assert len(transfers(config, "twin", count=4)) == 4  # the newer one serves
