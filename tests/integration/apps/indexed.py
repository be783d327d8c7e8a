"""Runs of a few types for the run index: one completes, one fails, one waits for a signal,
one keeps retrying an activity that always fails."""

from __future__ import annotations

from datetime import timedelta

from streams import ApplicationError, RetryPolicy, activity, workflow


@activity.defn
async def greet(name: str) -> str:
    return f"hello {name}"


@activity.defn
async def call_gateway(_: str) -> str:
    raise ConnectionError("gateway refused the connection")


@workflow.defn
class Greet:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(  # type: ignore[no-any-return]
            greet, name, start_to_close_timeout=timedelta(seconds=10)
        )


@workflow.defn
class Doomed:
    @workflow.run
    async def run(self, why: str) -> str:
        raise ApplicationError(why, non_retryable=True)


@workflow.defn
class Waiter:
    def __init__(self) -> None:
        self.released = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.released)
        return "released"

    @workflow.signal
    def release(self) -> None:
        self.released = True


@workflow.defn
class Flaky:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(  # type: ignore[no-any-return]
            call_gateway,
            "x",
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=200),
                backoff_coefficient=1.0,
                maximum_attempts=50,
            ),
        )


@workflow.defn
class Buggy:
    """A bug in workflow code (not an ApplicationError): the run blocks until it is fixed."""

    @workflow.run
    async def run(self) -> str:
        return {"present": "x"}["missing"]
