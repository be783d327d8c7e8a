"""Child workflows on a real broker: results and failures flow to the parent across
partitions; a parent's close applies its parent-close policy to running children."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from streams import Client, WorkflowFailureError, kafka
from streams.kafka.config import KafkaConfig
from streams.wire.records import RunStatus
from tests.integration.workers import WorkerProcesses, topics_for, with_client

pytestmark = pytest.mark.integration
APP = "tests.integration.apps.messages"
Q = "messages"
MINUTE = timedelta(seconds=60)


@pytest.fixture
def config(kafka_bootstrap: str, topic_prefix: str) -> KafkaConfig:
    return topics_for(kafka_bootstrap, topic_prefix, Q)


def other_partition_ids(parent: str, n: int, partitions: int = 4) -> list[str]:
    home = kafka.partition_for(parent, partitions)
    ids = [f"{parent}-child-{i}" for i in range(50)]
    return [c for c in ids if kafka.partition_for(c, partitions) != home][:n]


def test_children_on_other_partitions_return_results_and_failures_to_the_parent(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    workers.start("w1", APP, task_queue=Q)
    kids = other_partition_ids("family", 2)

    async def body(client: Client) -> tuple[str, str]:
        ok = await client.execute_workflow(
            "Parent", "ok", kids, "terminate", id="family", task_queue=Q, timeout=MINUTE
        )
        failed = await client.execute_workflow(
            "Parent",
            "fail",
            ["family-f-child"],
            "terminate",
            id="family-f",
            task_queue=Q,
            timeout=MINUTE,
        )
        return ok, failed

    ok, failed = with_client(config, body)
    assert ok == f"child {kids[0]} done; child {kids[1]} done"
    assert failed == "caught: the child gave up"


@pytest.mark.parametrize(
    ("policy", "child_status"),
    [
        ("terminate", RunStatus.TERMINATED),
        ("request_cancel", RunStatus.CANCELED),
        ("abandon", RunStatus.RUNNING),
    ],
)
def test_parent_terminated_applies_its_close_policy_to_the_child(
    config: KafkaConfig, workers: WorkerProcesses, policy: str, child_status: RunStatus
) -> None:
    workers.start("w1", APP, task_queue=Q)
    parent_id = f"p-{policy}"
    (kid,) = other_partition_ids(parent_id, 1)

    async def body(client: Client) -> RunStatus:
        parent = await client.start_workflow(
            "Parent", "sleep", [kid], policy, id=parent_id, task_queue=Q
        )
        child = client.get_workflow_handle(kid)
        for _ in range(100):
            try:
                if (await child.describe()).status is RunStatus.RUNNING:
                    break
            except Exception:  # not started yet
                pass
            await asyncio.sleep(0.1)
        await parent.terminate("test over")
        with pytest.raises(WorkflowFailureError):
            await parent.result(timeout=MINUTE)
        for _ in range(100):
            status = (await child.describe()).status
            if status is child_status and status is not RunStatus.RUNNING:
                return status
            await asyncio.sleep(0.1)
        return (await child.describe()).status

    assert with_client(config, body) is child_status
