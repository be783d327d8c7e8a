"""Schedules on a real broker and a real worker process: a schedule starts its action at its
due times, and is paused, triggered, unpaused, updated, described, listed and deleted; an
overlap policy skips due times while its action runs."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import orjson
import pytest

from streams import Client, WorkflowNotRunningError
from streams.errors import ScheduleAlreadyRunningError, ScheduleSpecError
from streams.kafka.config import KafkaConfig
from streams.schedules import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from tests.helpers import wait_until
from tests.integration.workers import WorkerProcesses, everflow, topics_for, with_client

pytestmark = pytest.mark.integration
APP = "tests.integration.apps.scheduled"
Q = "scheduled"
EVERY_SECOND = ScheduleSpec(intervals=[ScheduleIntervalSpec(timedelta(seconds=1))])
T = TypeVar("T")


@pytest.fixture
def config(kafka_bootstrap: str, topic_prefix: str) -> KafkaConfig:
    return topics_for(kafka_bootstrap, topic_prefix, Q)


async def eventually(
    probe: Callable[[], Awaitable[T]], until: Callable[[T], bool], timeout: float = 60
) -> T:
    """`probe()` until `until` holds of its answer; AssertionError with the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s; last: {value!r}")
        await asyncio.sleep(0.2)


def scheduled_ids(desc: ScheduleDescription) -> list[str]:
    return [a.workflow_id for a in desc.recent_actions]


def test_a_schedule_is_paused_triggered_unpaused_updated_described_listed_and_deleted(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    workers.start("w1", APP, task_queue=Q)
    action = ScheduleActionStartWorkflow("Tick", "tick", id="tick", task_queue=Q)

    async def body(client: Client) -> None:
        with pytest.raises(ScheduleSpecError, match="cron expression"):
            await client.create_schedule(
                "bad", Schedule(action, ScheduleSpec(cron_expressions=["x"]))
            )
        # every due time starts its run, however slow the machine (SKIP would skip some)
        allow_all = SchedulePolicy(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
        handle = await client.create_schedule("ticker", Schedule(action, EVERY_SECOND, allow_all))
        desc = await eventually(handle.describe, lambda d: d.action_count >= 3)
        # each due time on the whole second started its own run, named by that time
        first = desc.recent_actions[:3]
        for a in first:
            assert a.scheduled_at.microsecond == 0
            assert a.workflow_id == "tick-" + a.scheduled_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        gaps = {b.scheduled_at - a.scheduled_at for a, b in itertools.pairwise(first)}
        assert gaps == {timedelta(seconds=1)}
        completed = await client.get_workflow_handle(first[0].workflow_id).result()
        assert completed == f"tick {first[0].workflow_id}"
        assert len(desc.next_action_times) == 5 and desc.schedule.action.workflow == "Tick"

        with pytest.raises(ScheduleAlreadyRunningError, match="ticker"):
            await client.create_schedule("ticker", Schedule(action, EVERY_SECOND))

        await handle.pause("maintenance")
        paused = await handle.describe()
        assert paused.schedule.state == ScheduleState(True, "maintenance")
        await handle.trigger()
        triggered = await eventually(
            handle.describe, lambda d: d.action_count > paused.action_count
        )
        assert triggered.action_count == paused.action_count + 1
        assert triggered.recent_actions[-1].workflow_id.endswith("Z")
        assert len(triggered.recent_actions[-1].workflow_id) == len("tick-2026-12-03T09:00:00.000Z")
        await asyncio.sleep(2.5)  # due times pass while paused ...
        still = await handle.describe()
        assert still.action_count == triggered.action_count  # ... and start nothing

        unpaused_at = datetime.now(UTC)
        await handle.unpause("back")
        resumed = await eventually(handle.describe, lambda d: d.action_count > still.action_count)
        assert resumed.schedule.state == ScheduleState(False, "back")
        # the due times while paused are not made up for
        new = [a for a in resumed.recent_actions if a.workflow_id not in scheduled_ids(triggered)]
        assert new and all(a.scheduled_at > unpaused_at - timedelta(seconds=1) for a in new), new

        await handle.update(
            lambda d: Schedule(
                ScheduleActionStartWorkflow("Tick", "tock", id="tock", task_queue=Q),
                d.schedule.spec,
                d.schedule.policy,
                d.schedule.state,
            )
        )
        updated = await eventually(
            handle.describe, lambda d: scheduled_ids(d)[-1].startswith("tock-")
        )
        assert updated.schedule.action.id == "tock"

        async def listed() -> list[str]:
            return [s.id async for s in client.list_schedules()]

        assert await eventually(listed, lambda ids: ids == ["ticker"]) == ["ticker"]
        awaited = [s async for s in await client.list_schedules()]  # Temporal's spelling
        assert [(s.id, s.workflow_id, s.task_queue) for s in awaited] == [
            ("ticker", "everflow-schedule:ticker", Q)
        ]
        other = await client.get_schedule_handle("ticker").describe()
        assert other.id == "ticker" and other.action_count >= updated.action_count

        await handle.delete()
        with pytest.raises(WorkflowNotRunningError):
            await handle.pause("gone")
        assert await eventually(listed, lambda ids: ids == []) == []
        # a deleted schedule's ID can be used again
        again = await client.create_schedule(
            "ticker", Schedule(action, EVERY_SECOND, state=ScheduleState(True, "new"))
        )
        assert (await again.describe()).schedule.state.note == "new"
        await again.delete()

    with_client(config, body)


def test_skip_overlap_skips_due_times_while_the_action_runs(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    workers.start("w1", APP, task_queue=Q)
    action = ScheduleActionStartWorkflow("Hold", id="hold", task_queue=Q)
    policy = SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP)

    async def body(client: Client) -> None:
        handle = await client.create_schedule("holder", Schedule(action, EVERY_SECOND, policy))
        desc = await eventually(handle.describe, lambda d: d.overlap_skipped >= 2)
        assert desc.action_count == 1 and len(desc.running_workflow_ids) == 1
        (running,) = desc.running_workflow_ids
        await client.get_workflow_handle(running).signal("release")
        after = await eventually(handle.describe, lambda d: d.action_count >= 2)
        assert after.recent_actions[0].status == "completed"
        assert after.recent_actions[1].workflow_id not in (running,)
        await handle.delete()

    with_client(config, body)


def test_buffer_one_starts_one_held_due_time_when_the_running_action_closes(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    workers.start("w1", APP, task_queue=Q)
    action = ScheduleActionStartWorkflow("Hold", id="held", task_queue=Q)
    policy = SchedulePolicy(overlap=ScheduleOverlapPolicy.BUFFER_ONE)

    async def body(client: Client) -> None:
        handle = await client.create_schedule("buffered", Schedule(action, EVERY_SECOND, policy))
        desc = await eventually(handle.describe, lambda d: d.overlap_skipped >= 1)
        assert desc.buffered == 1 and desc.action_count == 1
        (running,) = desc.running_workflow_ids
        await handle.pause("hold still")  # from here only the buffered one may start
        await client.get_workflow_handle(running).signal("release")
        after = await eventually(handle.describe, lambda d: d.action_count == 2)
        assert after.buffered == 0
        held = after.recent_actions[1]
        # the held due time is the one after the first, and started only once that closed
        assert held.scheduled_at == desc.recent_actions[0].scheduled_at + timedelta(seconds=1)
        assert held.started_at > held.scheduled_at
        assert after.running_workflow_ids == (held.workflow_id,)
        await client.get_workflow_handle(held.workflow_id).signal("release")
        await handle.delete()

    with_client(config, body)


def test_the_schedule_commands_create_show_pause_trigger_update_and_delete(
    config: KafkaConfig, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    workers.start("w1", APP, task_queue=Q)

    def run(*args: str) -> str:
        done = everflow(worker_env, "schedule", *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    created = run(
        "create", "cli", "--workflow", "Tick", "--task-queue", Q, "--workflow-id", "cli-tick",
        "-i", '"cli"', "--interval", "1s", "--overlap", "allow_all", "--paused", "--note", "new",
    )  # fmt: skip
    assert "created schedule cli" in created
    shown = run("describe", "cli")
    assert "paused: new" in shown and "every 1s" in shown and "allow_all" in shown
    assert "start Tick on scheduled as cli-tick-<time>" in shown
    assert "pause" in run("pause", "cli", "--note", "still")
    run("trigger", "cli")

    def triggered() -> dict[str, object] | None:
        doc = orjson.loads(run("describe", "cli", "-o", "json"))
        return doc if doc["action_count"] == 1 else None

    doc = wait_until(triggered, timeout=60, interval=0.5)
    assert doc["state"] == {"paused": True, "note": "still"}
    run("update", "cli", "--cron", "0 3 * * *", "--overlap", "skip")
    updated = orjson.loads(run("describe", "cli", "-o", "json"))
    assert updated["spec"]["cron_expressions"] == ["0 3 * * *"]
    assert updated["spec"]["intervals"] == [] and updated["policy"]["overlap"] == "skip"
    assert updated["action"]["args"] == ["cli"]  # what the flags do not name stays
    listed = wait_until(lambda: "cli-tick" not in (out := run("list")) and "cli" in out and out)
    assert listed.splitlines()[0].split()[:2] == ["SCHEDULE", "ID"]
    assert listed.splitlines()[1].split()[0] == "cli"
    assert "deleted schedule cli" in run("delete", "cli")
    missing = everflow(worker_env, "schedule", "describe", "nope")
    assert missing.returncode == 3, missing.stderr
