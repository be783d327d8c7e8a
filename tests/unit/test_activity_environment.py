"""`ActivityEnvironment`: an activity function called in an activity's context, no workflow."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

from streams import NotInActivityError, activity
from streams.testing import ActivityEnvironment
from streams.testing.activity_environment import DEFAULT_INFO


@activity.defn
def copy_rows(rows: int) -> str:
    info = activity.info()
    start = info.heartbeat_details[0] if info.heartbeat_details else 0
    for row in range(start, rows):
        activity.heartbeat(row + 1)
    return f"{info.idempotency_key}: rows {start}-{rows} of attempt {info.attempt}"


def test_info_and_heartbeats_reach_a_plain_activity() -> None:
    env = ActivityEnvironment()
    result = asyncio.run(env.run(copy_rows, 3))
    assert result == f"{DEFAULT_INFO.idempotency_key}: rows 0-3 of attempt 1"
    assert env.heartbeats == [(1,), (2,), (3,)]


def test_a_retry_reads_the_details_the_attempt_before_left() -> None:
    info = dataclasses.replace(DEFAULT_INFO, attempt=2, heartbeat_details=(2,))
    result = asyncio.run(ActivityEnvironment(info).run(copy_rows, 3))
    assert result.endswith("rows 2-3 of attempt 2")


RELEASED = threading.Event()


@activity.defn
def poll_until_canceled() -> str:
    while not RELEASED.wait(0.01):
        activity.heartbeat()  # raises once the workflow asked to stop
    return "released"


@activity.defn
async def wait_forever() -> str:
    await asyncio.Event().wait()
    return "never"


def test_cancel_reaches_a_plain_activity_at_its_heartbeat_and_an_async_one_where_it_waits() -> None:
    async def body() -> tuple[bool, bool]:
        plain = ActivityEnvironment()
        running = asyncio.ensure_future(plain.run(poll_until_canceled))
        await asyncio.sleep(0.05)
        plain.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        waiting = ActivityEnvironment()
        task = asyncio.ensure_future(waiting.run(wait_forever))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return plain.is_canceled(), waiting.is_canceled()

    assert asyncio.run(body()) == (True, True)


def test_outside_an_environment_the_activity_api_still_refuses() -> None:
    with pytest.raises(NotInActivityError):
        copy_rows(1)
