"""`everflow workflow …` run as a user runs it (a subprocess) against a real broker, with one
worker for the module hosting the test apps. (list, count and the batch forms read the run
index: they are tested with it.)"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.integration.workers import WorkerProcesses, everflow

pytestmark = pytest.mark.integration

QUEUE = "cli"


@pytest.fixture(scope="module")
def env(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of the `everflow` commands, a worker running the test apps on it."""
    env = {
        **os.environ,
        "EVERFLOW_BOOTSTRAP": kafka_bootstrap,
        "EVERFLOW_TOPIC_PREFIX": f"t-{uuid.uuid4().hex[:8]}.",
        "EVERFLOW_PARTITIONS": "2",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    workers = WorkerProcesses(env, tmp_path_factory.mktemp("cli-worker"))
    try:
        created = everflow(env, "topics", "create", "--task-queue", QUEUE)
        assert created.returncode == 0, created.stderr
        apps = ("tests.integration.apps.messages", "tests.integration.apps.stuck")
        workers.start("cli-1", *apps, task_queue=QUEUE)
        yield env
    finally:
        workers.stop_all()


def ok(env: dict[str, str], *args: str) -> str:
    """Runs `everflow workflow …`, asserts it exited 0, returns its output."""
    done = everflow(env, "workflow", *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def described(env: dict[str, str], workflow_id: str) -> dict[str, object]:
    return json.loads(ok(env, "describe", "-w", workflow_id, "-o", "json"))  # type: ignore[no-any-return]


def test_execute_prints_the_events_then_the_result_and_exits_0(env: dict[str, str]) -> None:
    out = ok(env, "execute", "--type", "Onboarding", "-t", QUEUE, "-w", "exec-ok", "-i", "1")
    lines = out.splitlines()
    assert lines[0].startswith("Running workflow exec-ok, run ")
    type_column = lines[2].index("TYPE")  # after the run line and a blank one: the header
    types = [line[type_column:].split()[0] for line in lines if re.match(r"\d+ ", line)]
    assert types[0] == "WorkflowStarted" and types[-1] == "WorkflowCompleted"
    assert "ActivityScheduled" in types
    assert lines[-2:] == ["Status: COMPLETED", 'Result: "onboarded on basic"']


def test_execute_of_a_failing_workflow_exits_1(env: dict[str, str]) -> None:
    failed = everflow(
        env, "workflow", "execute", "--type", "Quick", "-t", QUEUE, "-i", "true", "-o", "json"
    )
    assert failed.returncode == 1, failed.stderr
    report = json.loads(failed.stdout)
    assert report["status"] == "FAILED" and "it failed" in report["failure"]
    assert report["history"][-1]["type"] == "WorkflowFailed"


def test_update_query_signal_and_result_talk_to_the_run(env: dict[str, str]) -> None:
    started = ok(env, "start", "--type", "Onboarding", "-t", QUEUE, "-w", "talk", "-i", "1000")
    assert started.startswith("Started workflow talk, run ")
    assert ok(env, "update", "talk", "--name", "change_plan", "-i", '"pro"') == '"basic -> pro"\n'
    assert ok(env, "query", "-w", "talk", "--name", "progress").startswith('"step ')
    assert ok(env, "signal", "-w", "talk", "--name", "cancel_subscription") == (
        "Signal cancel_subscription sent to talk\n"
    )
    assert json.loads(ok(env, "result", "-w", "talk")).startswith("stopped after ")
    assert json.loads(ok(env, "query", "talk", "--name", "progress", "-o", "json")) == (
        "canceled by customer"
    )


def test_cancel_and_terminate_close_the_run_with_their_status(env: dict[str, str]) -> None:
    for verb, status in (("cancel", "CANCELED"), ("terminate", "TERMINATED")):
        workflow_id = f"collect-{verb}"
        ok(env, "start", "--type", "Collector", "-t", QUEUE, "-w", workflow_id)
        done = json.loads(ok(env, verb, "-w", workflow_id, "--reason", "test", "-o", "json"))
        assert done["workflow_id"] == workflow_id
        waited = everflow(env, "workflow", "result", workflow_id)
        assert waited.returncode == 1 and status.lower() in waited.stderr
        assert described(env, workflow_id)["status"] == status
        text = ok(env, "describe", workflow_id, "--color", "never")
        assert re.search(rf"^  Status\s+{status}$", text, re.M), text


def test_describe_shows_the_pending_activity_with_attempt_failure_and_next_retry(
    env: dict[str, str],
) -> None:
    ok(env, "start", "--type", "Stuck", "-t", QUEUE, "-w", "stuck", "-i", '"order-9"')
    info = wait_until(
        lambda: (d := described(env, "stuck"))["pending_activities"] and d,
        message="the activity's first attempt never failed",
    )
    [pending] = info["pending_activities"]  # type: ignore[index]
    assert (pending["activity_type"], pending["attempt"], pending["maximum_attempts"]) == (
        "reach_gateway",
        2,
        5,
    )
    text = ok(env, "describe", "stuck")
    assert "Pending Activities: 1" in text
    assert re.search(r"^  Attempt\s+2 of 5$", text, re.M), text
    assert re.search(r"^  LastFailure\s+payment gateway unreachable for order-9$", text, re.M)
    assert re.search(r"^  NextRetry\s+in (59m|1h)", text, re.M), text
    ok(env, "terminate", "stuck")
    assert described(env, "stuck")["pending_activities"] == []


def test_show_prints_a_table_follows_until_the_close_and_reset_starts_anew(
    env: dict[str, str],
) -> None:
    ok(env, "start", "--type", "Onboarding", "-t", QUEUE, "-w", "shown", "-i", "2")
    followed = ok(env, "show", "-w", "shown", "--follow").splitlines()
    assert followed[0].split() == ["ID", "TIME", "TYPE", "DETAILS"]
    assert followed[-1][followed[0].index("TYPE") :].startswith("WorkflowCompleted ")
    table = ok(env, "show", "shown", "--time-format", "iso").splitlines()
    assert len(table) == 1 + 6  # header, started, 2 x (scheduled, completed), completed
    type_column = table[0].index("TYPE")
    assert all(line[type_column - 2 : type_column] == "  " for line in table)
    assert [line[type_column:].split()[0] for line in table[1:]] == [
        "WorkflowStarted",
        "ActivityScheduled",
        "ActivityCompleted",
        "ActivityScheduled",
        "ActivityCompleted",
        "WorkflowCompleted",
    ]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", table[1].split()[1])
    lines = ok(env, "show", "shown", "-o", "jsonl").splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert len(json.loads(ok(env, "show", "shown", "-o", "json"))) == 6
    reset = ok(env, "reset", "-w", "shown", "-e", "3", "--reason", "again")
    assert reset.startswith("reset shown to event 3: new run ")
    new_run = reset.split()[-1]
    assert json.loads(ok(env, "result", "shown", "-r", new_run)) == "onboarded on basic"


def test_a_run_that_does_not_exist_exits_3(env: dict[str, str]) -> None:
    for verb in ("describe", "show", "result", "terminate", "query --name progress"):
        missing = everflow(env, "workflow", *verb.split(), "-w", "no-such-run")
        assert missing.returncode == 3, (verb, missing.stderr)
        assert "no-such-run" in missing.stderr


def test_list_count_and_batch_terminate_act_on_the_runs_a_filter_finds(
    env: dict[str, str],
) -> None:
    tag = uuid.uuid4().hex[:6]
    for i in range(3):
        ok(env, "start", "--type", "Onboarding", "-t", QUEUE, "-w", f"batch-{tag}-{i}", "-i", "500")
    mine = f"WorkflowId STARTS_WITH 'batch-{tag}-'"
    running = f"{mine} AND ExecutionStatus = 'Running'"

    def listed(query: str) -> list[dict[str, object]]:
        out = ok(env, "list", "-q", query, "-o", "jsonl")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    wait_until(lambda: len(listed(running)) == 3, timeout=30)
    assert sorted(r["workflow_id"] for r in listed(running)) == [
        f"batch-{tag}-{i}" for i in range(3)
    ]
    table = ok(env, "list", "-q", running)
    assert table.splitlines()[0].split()[:3] == ["STATUS", "WORKFLOW", "ID"]
    assert all(f"batch-{tag}-{i}" in table for i in range(3))
    counted = ok(env, "count", "-q", running)
    assert re.search(r"\b3\b", counted), counted
    # the live line of one of them: it waits on execute_activity in the app's code
    stack = ok(env, "stack", "-w", f"batch-{tag}-0")
    assert "apps/messages.py:" in stack and "execute_activity" in stack

    dry = everflow(env, "workflow", "terminate", "-q", running, "--reason", "batch")
    assert dry.returncode == 2, (dry.stdout, dry.stderr)
    assert "3" in dry.stdout + dry.stderr
    done = everflow(env, "workflow", "terminate", "-q", running, "--reason", "batch", "--yes")
    assert done.returncode == 0, (done.stdout, done.stderr)
    terminated = f"{mine} AND ExecutionStatus = 'Terminated'"
    wait_until(lambda: len(listed(terminated)) == 3, timeout=30)
    assert listed(running) == []
