"""One workflow test, two environments: the time-skipping one in this process, and a worker on
the real broker (`WorkflowEnvironment.start_local`). The test body is the same; only the
environment it is handed differs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from streams import activity, workflow
from streams.testing import WorkflowEnvironment

pytestmark = pytest.mark.integration

TRIAL = timedelta(seconds=1)


@activity.defn
def charge(customer: str) -> str:
    raise AssertionError("the real charge never runs here: a double replaces it")


@activity.defn(name="charge")
def fake_charge(customer: str) -> str:
    return f"charged {customer}"


@workflow.defn
class Trial:
    def __init__(self) -> None:
        self.state = "trial"

    @workflow.run
    async def run(self, customer: str) -> str:
        await workflow.wait_condition(lambda: self.state == "active")
        await workflow.sleep(TRIAL)
        receipt: str = await workflow.execute_activity(
            charge, customer, start_to_close_timeout=timedelta(seconds=10)
        )
        self.state = "charged"
        return receipt

    @workflow.signal
    def activate(self) -> None:
        self.state = "active"

    @workflow.query
    def status(self) -> str:
        return self.state


EnvFactory = Callable[[], Awaitable[WorkflowEnvironment]]


@pytest.fixture(params=["time_skipping", "kafka"])
def make_env(request: pytest.FixtureRequest) -> EnvFactory:
    if request.param == "time_skipping":
        return lambda: WorkflowEnvironment.start_time_skipping(
            workflows=[Trial], activities=[fake_charge]
        )
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    prefix = request.getfixturevalue("topic_prefix")
    return lambda: WorkflowEnvironment.start_local(
        bootstrap, topic_prefix=prefix, workflows=[Trial], activities=[fake_charge]
    )


def test_a_trial_is_charged_after_activation_in_either_environment(make_env: EnvFactory) -> None:
    async def body() -> tuple[str, str, str, timedelta]:
        async with await make_env() as env:
            before = env.now()
            handle = await env.client.start_workflow(
                Trial.run, "ada", id="trial-1", task_queue=env.task_queue
            )
            status = await handle.query(Trial.status)
            await handle.signal(Trial.activate)
            result = await handle.result(timeout=timedelta(seconds=60))
            final = await handle.query(Trial.status)
            return status, result, final, env.now() - before

    status, result, final, moved = asyncio.run(body())
    assert (status, result, final) == ("trial", "charged ada", "charged")
    assert moved >= TRIAL  # slept through for real on Kafka, skipped in process
