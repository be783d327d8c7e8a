"""Workflows and activities for the timer, timeout, heartbeat and cancellation tests."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path

from streams import ActivityError, ActivityTimeoutError, RetryPolicy, activity, workflow


def _mark(name: str) -> None:
    folder = os.environ.get("TIMING_MARKS")
    if folder:
        (Path(folder) / f"{name}-{time.time_ns()}").write_text(name)


@activity.defn
def sleep_for(seconds: float) -> str:
    time.sleep(seconds)
    _mark("sleep_for-finished")
    return f"slept {seconds}"


@activity.defn
async def quick(tag: str) -> str:
    return tag


@activity.defn
def count_pages(pages: int) -> str:
    details = activity.info().heartbeat_details
    start = int(details[0]) + 1 if details else 0
    for page in range(start, pages):
        activity.heartbeat(page)
        time.sleep(0.3)
    return f"attempt {activity.info().attempt} resumed at page {start}"


@activity.defn
async def long_job() -> str:
    try:
        for _ in range(600):
            activity.heartbeat("working")
            await asyncio.sleep(0.1)
    except asyncio.CancelledError:
        _mark("long_job-canceled")
        raise
    return "finished"


@activity.defn
def cleanup(what: str) -> str:
    time.sleep(1.0)
    _mark(f"cleanup-{what}")
    return f"cleaned {what}"


@workflow.defn
class Nap:
    @workflow.run
    async def run(self, seconds: float) -> int:
        await workflow.sleep(timedelta(seconds=seconds))
        return int(workflow.now().timestamp() * 1000)


@workflow.defn
class WaitForJob:
    @workflow.run
    async def run(self, job_seconds: float, timeout_seconds: float) -> str:
        self.done = False

        async def job() -> None:
            await workflow.execute_activity(
                sleep_for, job_seconds, start_to_close_timeout=timedelta(seconds=30)
            )
            self.done = True

        task = asyncio.ensure_future(job())
        try:
            await workflow.wait_condition(
                lambda: self.done, timeout=timedelta(seconds=timeout_seconds)
            )
            return "job done"
        except TimeoutError:
            task.cancel()
            return "gave up waiting"


RETRY_TWICE = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=2)


@workflow.defn
class TimesOut:
    @workflow.run
    async def run(self, kind: str) -> str:
        if kind == "start_to_close":
            call = workflow.execute_activity(
                sleep_for,
                3.0,
                retry_policy=RETRY_TWICE,
                start_to_close_timeout=timedelta(seconds=1),
            )
        elif kind == "heartbeat":
            call = workflow.execute_activity(
                sleep_for,
                3.0,
                retry_policy=RETRY_TWICE,
                start_to_close_timeout=timedelta(seconds=20),
                heartbeat_timeout=timedelta(seconds=1),
            )
        elif kind == "schedule_to_start":
            call = workflow.execute_activity(
                quick,
                "x",
                task_queue="nobody-serves-this",
                retry_policy=RETRY_TWICE,
                start_to_close_timeout=timedelta(seconds=5),
                schedule_to_start_timeout=timedelta(seconds=1),
            )
        else:
            call = workflow.execute_activity(
                sleep_for,
                3.0,
                start_to_close_timeout=timedelta(seconds=20),
                schedule_to_close_timeout=timedelta(seconds=2),
            )
        try:
            await call
        except ActivityError as e:
            assert isinstance(e.cause, ActivityTimeoutError), e.cause
            return f"ActivityError caused by a {e.cause.timeout_type} timeout"
        return "no timeout"


@workflow.defn
class Resumable:
    @workflow.run
    async def run(self, pages: int) -> str:
        return await workflow.execute_activity(  # type: ignore[no-any-return]
            count_pages,
            pages,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=2),
        )


@workflow.defn
class CancelDuringActivity:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity(
                long_job,
                start_to_close_timeout=timedelta(minutes=2),
                heartbeat_timeout=timedelta(seconds=5),
            )
        except asyncio.CancelledError:
            await workflow.execute_activity(
                cleanup, "after-activity", start_to_close_timeout=timedelta(seconds=10)
            )
            raise
        return "not canceled"


@workflow.defn
class CancelDuringCompensation:
    @workflow.run
    async def run(self) -> str:
        compensation = asyncio.ensure_future(
            workflow.execute_activity(
                cleanup, "compensation", start_to_close_timeout=timedelta(seconds=10)
            )
        )
        try:
            await asyncio.shield(compensation)
        except asyncio.CancelledError:
            await compensation  # a compensation is finished, canceled or not
            raise
        return "compensated"
