"""Human-in-the-loop repair on a real broker: reset a failed run to before the failure,
pause and unpause an activity's retries, retry an exhausted activity (the seed's locked
account). Every repair is a command and leaves its trace in the history; audit passes."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from streams import Client, WorkflowFailureError
from streams.kafka.config import KafkaConfig
from streams.wire.events import ActivityCompleted, ActivityPaused, WorkflowReset
from tests.helpers import wait_until
from tests.integration.workers import WorkerProcesses, everflow, topics_for, with_client

pytestmark = pytest.mark.integration
APP = "tests.integration.apps.repair"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    lock = tmp_path / "locked"
    lock.touch()
    return {"EVERFLOW_REPAIR_LOCK": str(lock), "EVERFLOW_REPAIR_LOG": str(tmp_path / "log")}


@pytest.fixture
def shop(
    kafka_bootstrap: str,
    topic_prefix: str,
    workers: WorkerProcesses,
    worker_env: dict[str, str],
    files: dict[str, str],
) -> tuple[KafkaConfig, dict[str, str]]:
    """The topics, a worker running the checkout app, and the CLI's environment."""
    config = topics_for(kafka_bootstrap, topic_prefix, "shop")
    workers.start("w1", APP, task_queue="shop", extra_env=files)
    return config, {**worker_env, **files}


def log_lines(files: dict[str, str], prefix: str) -> list[str]:
    path = Path(files["EVERFLOW_REPAIR_LOG"])
    lines = path.read_text().splitlines() if path.exists() else []
    return [x for x in lines if x.startswith(prefix)]


def start(config: object, order: str, attempts: int) -> None:
    async def main(client: Client) -> None:
        await client.start_workflow("Checkout", order, attempts, id=order, task_queue="shop")

    with_client(config, main)  # type: ignore[arg-type]


def outcome(config: object, order: str) -> object:
    async def main(client: Client) -> object:
        try:
            return await client.get_workflow_handle(order).result(timeout=timedelta(seconds=60))
        except WorkflowFailureError as e:
            return e

    return with_client(config, main)  # type: ignore[arg-type]


def test_reset_to_before_a_failed_activity_runs_again_from_there(
    shop: tuple[KafkaConfig, dict[str, str]], files: dict[str, str]
) -> None:
    config, env = shop
    start(config, "o-1", 2)
    assert isinstance(outcome(config, "o-1"), WorkflowFailureError)  # the account is locked

    async def reserved_at(client: Client) -> int:
        events = await client.get_workflow_handle("o-1").fetch_history()
        return next(e.event_id for e in events if isinstance(e.attributes, ActivityCompleted))

    point = with_client(config, reserved_at)
    refused = everflow(env, "workflow", "reset", "o-1", "--to-event", str(point + 1))
    assert refused.returncode == 1 and "in flight" in refused.stderr  # charge was scheduled
    Path(files["EVERFLOW_REPAIR_LOCK"]).unlink()  # a developer fixes the account
    reset = everflow(
        env, "workflow", "reset", "o-1", "--to-event", str(point), "--reason", "account unlocked"
    )
    assert reset.returncode == 0 and "new run" in reset.stdout, reset.stderr
    assert outcome(config, "o-1") == "reserved, charged"
    assert len(log_lines(files, "reserve o-1")) == 1  # the reserve was not run again

    async def new_history(client: Client) -> list:  # type: ignore[type-arg]
        return await client.get_workflow_handle("o-1").fetch_history()

    events = with_client(config, new_history)
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    marks = [e.attributes for e in events if isinstance(e.attributes, WorkflowReset)]
    assert len(marks) == 1 and marks[0].to_event == point
    assert marks[0].reason == "account unlocked"
    audit = everflow(env, "audit")
    assert audit.returncode == 0, audit.stdout


def test_pause_holds_retries_until_unpause(
    shop: tuple[KafkaConfig, dict[str, str]], files: dict[str, str]
) -> None:
    config, env = shop
    start(config, "o-2", 0)  # retries without end while the account is locked
    wait_until(lambda: len(log_lines(files, "charge o-2")) >= 2, 30, 0.05, "charge retries")
    paused = everflow(env, "activity", "pause", "o-2", "2", "--reason", "investigating")
    assert paused.returncode == 0, paused.stderr
    time.sleep(0.5)  # an attempt that was already running ends
    held = len(log_lines(files, "charge o-2"))
    time.sleep(2)  # ~10 retries' worth of backoff
    assert len(log_lines(files, "charge o-2")) == held, "no attempt while paused"
    assert everflow(env, "activity", "unpause", "o-2", "2").returncode == 0
    wait_until(lambda: len(log_lines(files, "charge o-2")) > held, 30, 0.05, "retries resume")
    Path(files["EVERFLOW_REPAIR_LOCK"]).unlink()
    assert outcome(config, "o-2") == "reserved, charged"

    async def history(client: Client) -> list:  # type: ignore[type-arg]
        return await client.get_workflow_handle("o-2").fetch_history()

    pauses = [
        e.attributes
        for e in with_client(config, history)
        if isinstance(e.attributes, ActivityPaused)
    ]
    assert [(p.activity_id, p.reason) for p in pauses] == [(2, "investigating")]


def test_retry_of_an_exhausted_activity_resumes_the_run(
    shop: tuple[KafkaConfig, dict[str, str]], files: dict[str, str]
) -> None:
    config, env = shop
    start(config, "o-3", 3)
    failed = outcome(config, "o-3")
    assert isinstance(failed, WorkflowFailureError) and "locked" in str(failed.cause)
    assert len(log_lines(files, "charge o-3")) == 3  # its attempts are exhausted
    Path(files["EVERFLOW_REPAIR_LOCK"]).unlink()  # the seed: a developer fixes the account…
    retry = everflow(env, "activity", "retry", "o-3", "2")  # …and tells the engine to retry
    assert retry.returncode == 0, retry.stderr
    assert outcome(config, "o-3") == "reserved, charged"
    assert len(log_lines(files, "reserve o-3")) == 1
    assert len(log_lines(files, "charge o-3")) == 4
