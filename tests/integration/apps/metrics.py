"""Workflows for the metrics test: one that completes after an activity and a short sleep,
one whose activity fails its first attempt and then succeeds, one that fails, and one with
a bug (its run blocks, waiting for fixed code)."""

from __future__ import annotations

from datetime import timedelta

from streams import ApplicationError, RetryPolicy, activity, workflow


@activity.defn
def greet(name: str) -> str:
    return f"hello {name}"


@activity.defn
def flaky(name: str) -> str:
    if activity.info().attempt == 1:
        raise ConnectionError("the greeting service timed out")
    return f"hello {name}, at last"


@workflow.defn
class Greet:
    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.sleep(timedelta(milliseconds=200))
        return await workflow.execute_activity(  # type: ignore[no-any-return]
            greet, name, start_to_close_timeout=timedelta(seconds=10)
        )


@workflow.defn
class GreetFlaky:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(  # type: ignore[no-any-return]
            flaky,
            name,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200)),
        )


@workflow.defn
class Refuse:
    @workflow.run
    async def run(self, name: str) -> str:
        raise ApplicationError(f"{name} is not welcome", non_retryable=True)


@workflow.defn
class Buggy:
    @workflow.run
    async def run(self, name: str) -> str:
        return {"known": name}["unknown"]  # a KeyError: a bug, not a failure on purpose
