"""Workflows the record-level bad-input tests run (tests/bad_inputs/test_records.py)."""

from __future__ import annotations

import os
from datetime import timedelta

from streams import activity, workflow

UNSERVED = "nobody"  # a task queue no runner serves: its activities wait for a report


@activity.defn
async def echo(text: str) -> str:
    return text


@activity.defn
async def unserved() -> str:
    raise AssertionError("no runner serves this queue: only a report sent by hand ends it")


@workflow.defn
class Echo:
    """A normal run: one activity, its result returned."""

    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(
            echo, text, start_to_close_timeout=timedelta(seconds=30)
        )


@workflow.defn
class AwaitsReport:
    """Waits for the result of an activity nobody runs; `big` answers a large query."""

    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            unserved, start_to_close_timeout=timedelta(minutes=5), task_queue=UNSERVED
        )

    @workflow.query
    def big(self, size: int) -> str:
        return "q" * size

    @workflow.signal
    def note(self, text: str) -> None:
        """Recorded in history (the test makes it large); nothing else."""


@workflow.defn
class BigOutput:
    """Runs one activity, then returns a result of `size` bytes (over the record limit, when
    the test wants it): the run exists before the batch that would write the result."""

    @workflow.run
    async def run(self, size: int) -> str:
        await workflow.execute_activity(echo, "first", start_to_close_timeout=timedelta(seconds=30))
        return "r" * size


@workflow.defn
class Fragile:
    """Its `die` signal kills the worker process (a fault hook for the crash-loop breaker)."""

    def __init__(self) -> None:
        self.finished = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.finished)
        return "survived"

    @workflow.signal
    def die(self) -> None:
        os._exit(9)  # like a segfault: no exception, no cleanup, the process is gone

    @workflow.signal
    def finish(self) -> None:
        self.finished = True
