"""History export and the replayer CLI on a real broker, across a worker crash."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import fastavro
import orjson
import pytest

from examples.money_transfer import Bank, MoneyTransferWorkflow, TransferOrder
from streams import Client
from tests.helpers import wait_until
from tests.integration.history_check import history_runs
from tests.integration.workers import WorkerProcesses, everflow, topics_for, with_client

pytestmark = pytest.mark.integration


def test_export_matches_the_run_across_a_crash_and_replays_against_code(
    kafka_bootstrap: str,
    topic_prefix: str,
    workers: WorkerProcesses,
    worker_env: dict[str, str],
    tmp_path: Path,
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "transfers")
    slow = {"EVERFLOW_BANK_DEPOSIT_DELAY": "3", "EVERFLOW_BANK_FLAKY": "0"}
    first = workers.start("w1", extra_env=slow)
    bank = Bank(Path(worker_env["EVERFLOW_BANK_LEDGER"]))

    async def main(client: Client) -> list:  # type: ignore[type-arg]
        # other runs on the same partitions, so the export must pick this run's records
        others = [
            client.execute_workflow(
                MoneyTransferWorkflow,
                TransferOrder("c", "d", 1, f"o-{i}"),
                id=f"o-{i}",
                task_queue="transfers",
            )
            for i in range(6)
        ]
        h = await client.start_workflow(
            MoneyTransferWorkflow,
            TransferOrder("alice", "bob", 7, "x-1"),
            id="x-1",
            task_queue="transfers",
        )
        withdrawn = lambda: any(str(e["key"]).startswith("x-1/") for e in bank.entries())  # noqa: E731
        await asyncio.to_thread(wait_until, withdrawn, 30, 0.1, "the withdraw should apply")
        workers.kill(first)  # SIGKILL while the deposit sleeps
        workers.start("w1", extra_env={"EVERFLOW_BANK_FLAKY": "0"})
        await h.result()
        await asyncio.gather(*others)
        return await h.fetch_history()

    fetched = with_client(config, main)
    out_json, out_avro = tmp_path / "x-1.jsonl", tmp_path / "x-1.avro"
    assert everflow(worker_env, "history", "export", "x-1", "-o", str(out_json)).returncode == 0
    exported = [orjson.loads(line) for line in out_json.read_bytes().splitlines()]
    on_topic = next(ev for (wf, _), ev in history_runs(config).items() if wf == "x-1")
    assert (
        [(r["event_id"], r["type"]) for r in exported]
        == [(e.event_id, type(e.attributes).__name__) for e in on_topic]
        == [(e.event_id, type(e.attributes).__name__) for e in fetched]
    )
    assert exported[0]["type"] == "WorkflowStarted" and exported[-1]["type"] == "WorkflowCompleted"
    assert exported[0]["args"][0]["reference"] == "x-1"  # payloads decoded for people
    assert all(r["time"] > 0 and r["offset"] >= 0 for r in exported)

    avro = everflow(worker_env, "history", "export", "x-1", "--format", "avro", "-o", str(out_avro))
    assert avro.returncode == 0, avro.stderr
    records = list(fastavro.reader(io.BytesIO(out_avro.read_bytes())))  # any Avro reader
    assert [r["event_id"] for r in records] == [r["event_id"] for r in exported]

    ok = everflow(
        worker_env, "replay", "--workflows", "examples.money_transfer", "--file", str(out_json)
    )
    assert ok.returncode == 0 and "replayed 1 runs: 1 ok" in ok.stdout, ok.stdout + ok.stderr
    swapped = "tests.integration.apps.transfer_reordered"
    bad = everflow(worker_env, "replay", "--workflows", swapped, "--file", str(out_avro))
    assert bad.returncode == 1 and "NON-DETERMINISTIC" in bad.stdout, bad.stdout + bad.stderr
    kafka_all = everflow(
        worker_env,
        "replay",
        "--workflows",
        "examples.money_transfer",
        "--from-kafka",
        "--workflow-type",
        "MoneyTransferWorkflow",
        "--limit",
        "5",
    )
    assert kafka_all.returncode == 0 and "replayed 5 runs: 5 ok" in kafka_all.stdout
    live = everflow(worker_env, "replay", "--workflows", swapped, "--workflow-id", "o-1")
    assert live.returncode == 1 and "o-1/" in live.stdout
