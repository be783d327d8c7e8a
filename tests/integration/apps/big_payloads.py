"""A run whose argument and result are 50 MB: they travel through the payload store."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

from streams import RetryPolicy, activity, workflow


@activity.defn
async def shout(text: str) -> str:
    """Upper-cases `text`. In a worker given BIG_PAYLOAD_MARKER, the first attempt notes
    that it began (the length of its argument) and hangs, so a test can kill the worker
    while the attempt holds the argument."""
    marker = os.environ.get("BIG_PAYLOAD_MARKER")
    if marker and activity.info().attempt == 1:
        Path(marker).write_text(str(len(text)))
        await asyncio.sleep(600)
    return text.upper()


@workflow.defn
class BigEcho:
    @workflow.run
    async def run(self, text: str) -> str:
        loud = await workflow.execute_activity(
            shout,
            text,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)),
        )
        return loud + "!"


@workflow.defn
class Holds:
    """Waits for a signal that never comes: an open run holding its argument."""

    @workflow.run
    async def run(self, text: str) -> int:
        await workflow.wait_condition(lambda: False)
        return len(text)


@activity.defn
async def relay(data: str) -> str:
    return data


@workflow.defn
class Relay:
    """Hands its argument to an activity and returns what came back (benchmarks)."""

    @workflow.run
    async def run(self, data: str) -> str:
        return await workflow.execute_activity(
            relay, data, start_to_close_timeout=timedelta(seconds=30)
        )
