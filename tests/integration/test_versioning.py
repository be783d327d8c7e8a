"""A deploy of changed code guarded by workflow.patched, on a real broker: a run that passed
the patch point on the old code finishes on the old branch, a new run takes the new one,
and the replayer accepts every recorded history with the new code."""

from __future__ import annotations

import asyncio

import pytest

from streams import Client
from tests.integration.workers import WorkerProcesses, everflow, topics_for, with_client

pytestmark = pytest.mark.integration
V1, V2 = "tests.integration.apps.fee_v1", "tests.integration.apps.fee_v2"


def test_patched_change_keeps_old_runs_on_the_old_branch_and_new_runs_on_the_new(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "billing")
    old_worker = workers.start("w1", V1, task_queue="billing")

    async def start_old(client: Client) -> None:
        h = await client.start_workflow("Billing", 5, id="bill-old", task_queue="billing")
        for _ in range(100):  # charged on version 1, now waiting for approval
            events = await h.fetch_history()
            if any(type(e.attributes).__name__ == "ActivityCompleted" for e in events):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the old run did not charge")

    with_client(config, start_old)
    old_worker.terminate()
    old_worker.wait(30)
    workers.start("w1", V2, task_queue="billing")  # the deploy

    async def finish(client: Client) -> tuple[str, str]:
        old = client.get_workflow_handle("bill-old")
        await old.signal("approve")
        new = await client.start_workflow("Billing", 7, id="bill-new", task_queue="billing")
        await new.signal("approve")
        return await old.result(), await new.result()

    assert with_client(config, finish) == ("charged 5", "charged 7 + fee")
    replay = everflow(worker_env, "replay", "--workflows", V2, "--from-kafka")
    assert replay.returncode == 0 and "replayed 2 runs: 2 ok" in replay.stdout, replay.stdout
    shown = everflow(worker_env, "history", "export", "bill-new").stdout
    assert '"type":"MarkerRecorded","patch_id":"fee"' in shown
