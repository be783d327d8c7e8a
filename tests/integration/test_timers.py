"""Durable timers, timeouts, heartbeats, cancellation and termination on a real broker,
with real worker processes."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from streams import Client, WorkflowFailureError, WorkflowNotRunningError
from streams.kafka.config import KafkaConfig
from streams.wire.events import HistoryEvent, TimerStarted
from tests.integration.workers import WorkerProcesses, topics_for, with_client

pytestmark = pytest.mark.integration
APP = "tests.integration.apps.timing"
QUEUE = "timing"
MINUTE = timedelta(seconds=60)


@pytest.fixture
def config(kafka_bootstrap: str, topic_prefix: str) -> KafkaConfig:
    return topics_for(kafka_bootstrap, topic_prefix, QUEUE)


def kinds(history: list[HistoryEvent]) -> list[str]:
    return [type(e.attributes).__name__ for e in history]


async def until(handle: Any, kind: str, timeout: float = 30) -> list[HistoryEvent]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history: list[HistoryEvent] = await handle.fetch_history()
        if kind in kinds(history):
            return history
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {kind} within {timeout} s")


def fire_at(history: list[HistoryEvent]) -> int:
    return next(e.attributes.fire_at for e in history if isinstance(e.attributes, TimerStarted))


def test_sleep_survives_the_worker_being_killed_during_it(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    first = workers.start("w1", APP, task_queue=QUEUE)

    async def body(client: Client) -> tuple[int, int]:
        handle = await client.start_workflow("Nap", 3.0, id="nap-1", task_queue=QUEUE)
        history = await until(handle, "TimerStarted")
        workers.kill(first)
        workers.start("w1", APP, task_queue=QUEUE)
        woke = await handle.result(timeout=MINUTE)
        return woke, fire_at(history)

    woke, due = with_client(config, body)
    assert woke >= due  # not early: the run's clock at wake-up is past the due time


def test_timer_due_while_no_worker_ran_fires_when_a_worker_starts(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    first = workers.start("w1", APP, task_queue=QUEUE)

    async def body(client: Client) -> float:
        handle = await client.start_workflow("Nap", 1.0, id="nap-2", task_queue=QUEUE)
        await until(handle, "TimerStarted")
        workers.kill(first)
        await asyncio.sleep(2.5)  # the timer becomes due with no worker running
        started = time.monotonic()
        workers.start("w1", APP, task_queue=QUEUE)
        await handle.result(timeout=MINUTE)
        return time.monotonic() - started

    seconds_after_start = with_client(config, body)
    assert seconds_after_start < 20  # fired on restore, not a full period later


@pytest.mark.parametrize(
    "kind", ["start_to_close", "heartbeat", "schedule_to_start", "schedule_to_close"]
)
def test_each_activity_timeout_fires_retries_and_surfaces_as_activity_error(
    config: KafkaConfig, workers: WorkerProcesses, kind: str
) -> None:
    workers.start("w1", APP, task_queue=QUEUE)

    async def body(client: Client) -> tuple[str, list[HistoryEvent]]:
        handle = await client.start_workflow("TimesOut", kind, id=f"to-{kind}", task_queue=QUEUE)
        result = await handle.result(timeout=MINUTE)
        await asyncio.sleep(2.5)  # let late results of timed-out attempts arrive
        return result, await handle.fetch_history()

    result, history = with_client(config, body)
    assert result == f"ActivityError caused by a {kind} timeout"
    names = kinds(history)
    assert "ActivityCompleted" not in names  # late results of timed-out attempts dropped
    failures = [
        e.attributes
        for e in history
        if type(e.attributes).__name__ in ("ActivityAttemptFailed", "ActivityFailed")
    ]
    assert all(f.failure.timeout_type == kind for f in failures)  # type: ignore[attr-defined]
    if kind != "schedule_to_close":  # that one covers all attempts: no retry after it
        assert names.count("ActivityAttemptFailed") == 1 and names.count("ActivityFailed") == 1


def test_heartbeat_details_survive_the_activity_worker_crashing(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    first = workers.start("w1", APP, task_queue=QUEUE)

    async def body(client: Client) -> str:
        handle = await client.start_workflow("Resumable", 12, id="pages", task_queue=QUEUE)
        history = await until(handle, "ActivityHeartbeatRecorded")
        while kinds(history).count("ActivityHeartbeatRecorded") < 2:
            history = await handle.fetch_history()
            await asyncio.sleep(0.1)
        workers.kill(first)  # attempt 1 dies mid-way; its heartbeats are in the history
        workers.start("w2", APP, task_queue=QUEUE)
        return await handle.result(timeout=MINUTE)  # type: ignore[no-any-return]

    result = with_client(config, body)
    assert result.startswith("attempt 2 resumed at page ")
    assert int(result.rsplit(" ", 1)[1]) >= 2


def test_cancel_during_an_activity_stops_it_and_cleanup_runs(
    config: KafkaConfig, workers: WorkerProcesses, tmp_path: Path
) -> None:
    workers.start("w1", APP, task_queue=QUEUE, extra_env={"TIMING_MARKS": str(tmp_path)})

    async def body(client: Client) -> tuple[BaseException, list[HistoryEvent]]:
        handle = await client.start_workflow("CancelDuringActivity", id="c-act", task_queue=QUEUE)
        await until(handle, "ActivityHeartbeatRecorded")
        await handle.cancel("customer left")
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result(timeout=MINUTE)
        with pytest.raises(WorkflowNotRunningError):
            await handle.cancel()
        return caught.value, await handle.fetch_history()

    error, history = with_client(config, body)
    assert "canceled" in str(error)
    names = kinds(history)
    assert names[-1] == "WorkflowCanceled" and "ActivityCancelRequested" in names
    deadline = time.monotonic() + 15
    while not list(tmp_path.glob("long_job-canceled-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(tmp_path.glob("long_job-canceled-*"))  # the activity saw CancelledError
    assert list(tmp_path.glob("cleanup-after-activity-*"))


def test_cancel_during_sleep_and_during_compensation(
    config: KafkaConfig, workers: WorkerProcesses, tmp_path: Path
) -> None:
    workers.start("w1", APP, task_queue=QUEUE, extra_env={"TIMING_MARKS": str(tmp_path)})

    async def body(client: Client) -> tuple[list[str], list[str]]:
        napping = await client.start_workflow("Nap", 600.0, id="c-nap", task_queue=QUEUE)
        compensating = await client.start_workflow(
            "CancelDuringCompensation", id="c-comp", task_queue=QUEUE
        )
        await until(napping, "TimerStarted")
        await until(compensating, "ActivityScheduled")
        await napping.cancel()
        await compensating.cancel()
        for handle in (napping, compensating):
            with pytest.raises(WorkflowFailureError, match="canceled"):
                await handle.result(timeout=MINUTE)
        return kinds(await napping.fetch_history()), kinds(await compensating.fetch_history())

    nap, comp = with_client(config, body)
    assert nap == [
        "WorkflowStarted",
        "TimerStarted",
        "WorkflowCancelRequested",
        "TimerCanceled",
        "WorkflowCanceled",
    ]
    # the compensation ran to its end before the run closed as canceled
    assert comp[-2:] == ["ActivityCompleted", "WorkflowCanceled"]
    assert list(tmp_path.glob("cleanup-compensation-*"))


def test_terminate_ends_a_run_at_once(config: KafkaConfig, workers: WorkerProcesses) -> None:
    workers.start("w1", APP, task_queue=QUEUE)

    async def body(client: Client) -> list[str]:
        handle = await client.start_workflow("Nap", 600.0, id="term", task_queue=QUEUE)
        await until(handle, "TimerStarted")
        await handle.terminate("operator cleanup")
        with pytest.raises(WorkflowFailureError, match="terminated: operator cleanup"):
            await handle.result(timeout=MINUTE)
        with pytest.raises(WorkflowNotRunningError, match="already closed"):
            await handle.terminate()
        return kinds(await handle.fetch_history())

    assert with_client(config, body) == ["WorkflowStarted", "TimerStarted", "WorkflowTerminated"]


def test_wait_condition_with_a_timeout_both_outcomes(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    workers.start("w1", APP, task_queue=QUEUE)

    async def body(client: Client) -> tuple[str, str]:
        met = await client.execute_workflow(
            "WaitForJob", 0.2, 10.0, id="wait-met", task_queue=QUEUE, timeout=MINUTE
        )
        missed = await client.execute_workflow(
            "WaitForJob", 5.0, 1.0, id="wait-missed", task_queue=QUEUE, timeout=MINUTE
        )
        return met, missed

    assert with_client(config, body) == ("job done", "gave up waiting")


def test_run_timeout_closes_the_run_timed_out(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    workers.start("w1", APP, task_queue=QUEUE)

    async def body(client: Client) -> None:
        handle = await client.start_workflow(
            "Nap", 600.0, id="slowpoke", task_queue=QUEUE, run_timeout=timedelta(seconds=2)
        )
        with pytest.raises(WorkflowFailureError, match="timed_out"):
            await handle.result(timeout=MINUTE)

    with_client(config, body)
