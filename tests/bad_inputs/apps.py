"""Workflows with bad code, for `tests/bad_inputs/test_workflow_code.py`: code that never
yields, handlers that raise, queries that schedule work, absurd timers, unknown activities."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from streams import ApplicationError, RetryPolicy, activity, workflow


@activity.defn
async def echo(text: str) -> str:
    return text


@workflow.defn
class Quick:
    """What the partition must go on serving while a neighbour is stuck."""

    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(
            echo, text, start_to_close_timeout=timedelta(seconds=10)
        )


@workflow.defn
class Busy:
    """Never yields: the deadlock detector must take the processor back."""

    @workflow.run
    async def run(self) -> None:
        while True:
            pass


@workflow.defn
class Mailbox:
    """Takes signals until `finish`; its handlers and queries misbehave on request."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.done = False

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done)
        return sum(self.items)

    @workflow.signal
    def add(self, n: int) -> None:
        self.items.append(n)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.signal
    def refuse(self) -> None:
        raise ApplicationError("the mailbox refuses on purpose", non_retryable=True)

    @workflow.signal
    def stumble(self) -> None:
        self.items.append({}["missing"])  # a bug: KeyError

    @workflow.query
    def count(self) -> int:
        return len(self.items)

    @workflow.query
    def charge_now(self) -> int:
        asyncio.ensure_future(  # noqa: RUF006 - what a query must not do
            workflow.execute_activity(echo, "charge", start_to_close_timeout=timedelta(seconds=5))
        )
        return len(self.items)


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self, seconds: float) -> str:
        await workflow.sleep(seconds)
        return "woke"


@workflow.defn
class CallsUnknownActivity:
    @workflow.run
    async def run(self) -> str:
        await workflow.execute_activity(  # its ActivityError fails the run
            "no_such_activity",
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(
                maximum_attempts=2, initial_interval=timedelta(milliseconds=100)
            ),
        )
        return "ran"


@workflow.defn
class Chatty:
    """Starts timer after timer: its history grows until the limit fails it."""

    @workflow.run
    async def run(self) -> None:
        while True:
            await workflow.sleep(0.001)


@workflow.defn
class Steps:
    """Its fixed-code twin (`apps_fixed.Steps`) reorders the steps: a run started here and
    replayed there meets a history that its code no longer makes."""

    @workflow.run
    async def run(self) -> str:
        first = await workflow.execute_activity(
            echo, "a", start_to_close_timeout=timedelta(seconds=10)
        )
        await workflow.sleep(3)  # the test replaces the worker meanwhile
        return first


@workflow.defn
class FanOut:
    """Opens `n` activities at once."""

    @workflow.run
    async def run(self, n: int) -> int:
        pending = [
            asyncio.ensure_future(
                workflow.execute_activity(
                    echo, str(i), start_to_close_timeout=timedelta(seconds=10)
                )
            )
            for i in range(n)
        ]
        return len(await asyncio.gather(*pending))
