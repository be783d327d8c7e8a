"""Changed workflow code meets a running run: it blocks (not fails, not corrupts) and resumes
once code that fits its history is deployed again."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from streams import Client, kafka
from streams.errors import RequestRejectedError
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import ensure_topics, topic_specs
from streams.wire.records import RunStatus
from tests.integration.workers import WorkerProcesses

pytestmark = pytest.mark.integration
V1 = "tests.integration.apps.onboarding_v1"
V2 = "tests.integration.apps.onboarding_v2"


def test_reordered_code_blocks_the_run_then_the_original_code_resumes_it(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=4)
    ensure_topics(kafka.admin(config), topic_specs(config, ["onboarding"]))
    v1 = workers.start(
        "w1", V1, task_queue="onboarding", extra_env={"ONBOARDING_ACCOUNT_DELAY": "3"}
    )

    async def main() -> None:
        client = await asyncio.to_thread(Client, config)
        try:
            handle = await client.start_workflow(
                "Onboarding", "ada", id="onboard-ada", task_queue="onboarding"
            )
            await asyncio.sleep(1)  # create_account (3 s) is running
            workers.kill(v1)
            v2 = workers.start("w1", V2, task_queue="onboarding")
            desc = await poll_blocked(client)
            assert desc.status is RunStatus.RUNNING  # blocked, not failed
            assert desc.blocked is not None
            message = desc.blocked.message
            assert "onboard-ada" in message and "event 2" in message
            assert "ActivityScheduled('create_account')" in message
            assert "ActivityScheduled('send_email')" in message
            assert "onboarding_v2.py:" in message  # where the divergent command came from
            # an explicit unblock with the same (wrong) code deployed says why it cannot
            with pytest.raises(RequestRejectedError, match="still does not replay"):
                await handle.unblock("try again")
            workers.kill(v2)
            workers.start("w1", V1, task_queue="onboarding")
            result = await handle.result(timeout=timedelta(seconds=60))
            assert result == "account for ada, emailed ada"
            history = await handle.fetch_history()
            kinds = [type(e.attributes).__name__ for e in history]
            assert kinds.count("WorkflowBlocked") == 1 and kinds.count("WorkflowUnblocked") == 1
            assert [e.event_id for e in history] == list(range(1, len(history) + 1))
            with pytest.raises(RequestRejectedError, match="is not blocked"):
                await handle.unblock()
        finally:
            client.close()

    async def poll_blocked(client: Client):  # type: ignore[no-untyped-def]
        handle = client.get_workflow_handle("onboard-ada")
        for _ in range(300):
            desc = await handle.describe()
            if desc.blocked is not None:
                return desc
            await asyncio.sleep(0.1)
        raise AssertionError("the run never blocked on the changed code")

    asyncio.run(main())
