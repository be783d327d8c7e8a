"""The `everflow` command line against a real broker."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.workers import ROOT, WorkerProcesses, everflow

pytestmark = pytest.mark.integration


def test_topics_create_is_idempotent_and_reports(worker_env: dict[str, str]) -> None:
    first = everflow(worker_env, "topics", "create", "--task-queue", "transfers")
    assert first.returncode == 0, first.stderr
    prefix = worker_env["EVERFLOW_TOPIC_PREFIX"]
    assert f"{prefix}snapshots" in first.stdout and "created" in first.stdout
    assert f"{prefix}tasks.transfers" in first.stdout
    second = everflow(worker_env, "topics", "create", "--task-queue", "transfers")
    assert second.returncode == 0 and "created" not in second.stdout
    assert second.stdout.count("exists, settings match") == 9  # 8 + tasks.transfers


def test_topics_create_reports_a_topic_with_wrong_settings(worker_env: dict[str, str]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"{worker_env['EVERFLOW_TOPIC_PREFIX']}timers"
    admin = AdminClient({"bootstrap.servers": worker_env["EVERFLOW_BOOTSTRAP"]})
    admin.create_topics([NewTopic(name, 4, 1, config={"cleanup.policy": "delete"})])[name].result(
        30
    )
    refused = everflow(worker_env, "topics", "create")
    assert refused.returncode == 1
    assert f"{name}: cleanup.policy=delete, expected compact" in refused.stderr


def test_workflow_commands_describe_show_and_result(
    worker_env: dict[str, str], workers: WorkerProcesses
) -> None:
    everflow(worker_env, "topics", "create", "--task-queue", "transfers")
    workers.start("w1", extra_env={"EVERFLOW_BANK_FLAKY": "0"})
    start = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import asyncio\n"
                "from streams import Client\n"
                "from examples.money_transfer import MoneyTransferWorkflow, TransferOrder\n"
                "async def main():\n"
                "    c = await Client.connect()\n"
                "    order = TransferOrder('a', 'b', 3, 'cli-1')\n"
                "    await c.execute_workflow(MoneyTransferWorkflow, order,"
                " id='cli-1', task_queue='transfers')\n"
                "    c.close()\n"
                "asyncio.run(main())\n"
            ),
        ],
        cwd=ROOT,
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert start.returncode == 0, start.stderr
    described = everflow(worker_env, "workflow", "describe", "cli-1", "-o", "json")
    assert described.returncode == 0, described.stderr
    info = json.loads(described.stdout)
    assert info["status"] == "COMPLETED" and info["history_length"] == 6
    shown = everflow(worker_env, "workflow", "show", "cli-1", "-o", "jsonl")
    events = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [e["type"] for e in events] == [
        "WorkflowStarted",
        "ActivityScheduled",
        "ActivityCompleted",
        "ActivityScheduled",
        "ActivityCompleted",
        "WorkflowCompleted",
    ]
    assert events[0]["args"] == [
        {"from_account": "a", "to_account": "b", "amount": 3, "reference": "cli-1"}
    ]
    result = everflow(worker_env, "workflow", "result", "cli-1")
    assert json.loads(result.stdout) == "withdrew 3 from a; deposited 3 into b"
    missing = everflow(worker_env, "workflow", "describe", "no-such-run")
    assert missing.returncode == 3 and "no run of workflow 'no-such-run'" in missing.stderr
