"""Scale-out and bounded memory on a real broker: workers join and leave while transfers
run; a small run cache evicts and rebuilds runs; history limits fail a run clearly."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from examples.money_transfer import Bank, MoneyTransferWorkflow, TransferOrder
from streams import (
    Client,
    WorkflowFailureError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    kafka,
)
from streams.cli.workers import workers_view
from streams.kafka.config import KafkaConfig
from tests.helpers import wait_until
from tests.integration.apps.messages import Collector, Quick
from tests.integration.history_check import history_problems, history_runs, read_topic
from tests.integration.workers import WorkerProcesses, everflow, topics_for, with_client

pytestmark = pytest.mark.integration
APPS = "tests.integration.apps.messages"
TRANSFERS = 2000


def _processor_members(config: KafkaConfig) -> dict[str, list[int]]:
    for group in workers_view(config).groups:
        if group.group_id.endswith("workflow-processor"):
            return {m.client_id: m.partitions for m in group.members}
    return {}


def _owned_by(config: KafkaConfig, count: int) -> bool:
    members = _processor_members(config)
    parts = sorted(p for ps in members.values() for p in ps)
    return len(members) == count and parts == list(range(config.partitions))


def test_rolling_scale_1_3_1_while_2000_transfers_run(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "transfers")
    first = workers.start("w1")
    wait_until(lambda: _owned_by(config, 1), 60, 0.5, "w1 should own every partition")
    done = Counter[str]()
    extra: list[subprocess.Popen[bytes]] = []

    async def scale() -> None:
        # up to three workers, then back to one (the last one started stays)
        for threshold, action in ((200, "up"), (500, "up"), (1000, "down"), (1400, "down")):
            while done["ok"] < threshold:
                await asyncio.sleep(0.05)
            if action == "up":
                extra.append(workers.start(f"w{len(extra) + 2}"))
                if len(extra) == 2:  # three processors share the partitions; the CLI says so
                    await asyncio.to_thread(
                        wait_until, lambda: _owned_by(config, 3), 60, 0.5, "3 owners"
                    )
                    done["three_owners_seen"] += 1
            else:
                proc = extra.pop(0)
                proc.terminate()
                await asyncio.to_thread(proc.wait, 60)

    async def main(client: Client) -> list[str]:
        gate = asyncio.Semaphore(64)

        async def one(i: int) -> str:
            async with gate:
                order = TransferOrder(f"acct-{i % 10}", f"acct-{(i + 1) % 10}", 1 + i % 7, f"t-{i}")
                result: str = await client.execute_workflow(
                    MoneyTransferWorkflow,
                    order,
                    id=order.reference,
                    task_queue="transfers",
                    timeout=timedelta(seconds=120),
                )
                done["ok"] += 1
                return result

        scaler = asyncio.create_task(scale())
        results = await asyncio.gather(*(one(i) for i in range(TRANSFERS)))
        await scaler
        return results

    results = with_client(config, main)
    assert len(results) == TRANSFERS and done["three_owners_seen"] == 1
    assert first.poll() is None, "the first worker kept running throughout"
    assert _owned_by(config, 1), "after scaling down one worker owns every partition again"
    # money conserved and each step applied once: one withdraw and one deposit per transfer
    entries = Bank(Path(worker_env["EVERFLOW_BANK_LEDGER"])).entries()
    keys = Counter(str(e["key"]).rsplit(":", 1)[1] for e in entries)
    assert keys == {"withdraw": TRANSFERS, "deposit": TRANSFERS}
    assert sum(int(e["delta"]) for e in entries) == 0  # type: ignore[call-overload]
    runs = history_runs(config)
    assert len(runs) == TRANSFERS
    assert history_problems(runs) == []
    # the partitions really moved: more than one worker restored some of them
    logs = workers.logs()
    assert logs.count("assigned partitions=[") >= 4


def test_runs_evicted_from_a_small_cache_are_rebuilt_and_continue(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "messages")
    env = {
        "EVERFLOW_RUN_CACHE_SIZE": "4",
        "EVERFLOW_CHECKPOINT_INTERVAL": "0.05",
        "EVERFLOW_SNAPSHOT_DEFER_EVENTS": "1",  # snapshot at once: evictable at once
    }
    workers.start("w1", APPS, task_queue="messages", extra_env=env)
    ids = [f"collect-{i}" for i in range(24)]

    async def main(client: Client) -> list[list[int]]:
        handles = [await client.start_workflow(Collector, id=i, task_queue="messages") for i in ids]
        for item in (1, 2, 3):
            for h in handles:  # round robin: each signal finds its run evicted by the others
                await h.signal(Collector.add, item)
            await asyncio.sleep(0.3)
        for h in handles:
            await h.signal(Collector.finish)
        return [await h.result(timeout=timedelta(seconds=60)) for h in handles]

    assert with_client(config, main) == [[1, 2, 3]] * len(ids)
    wait_until(lambda: _report_counts(config)[0] > 0, 20, 0.5, "status should report loads")
    loads, evictions, loaded = _report_counts(config)
    assert evictions >= len(ids) and loads >= len(ids), (loads, evictions)
    assert loaded <= 8, "the cache stays near its bound (4, plus runs awaiting a snapshot)"


def _report_counts(config: KafkaConfig) -> tuple[int, int, int]:
    statuses = workers_view(config).statuses
    if not statuses:
        return 0, 0, 0
    s = statuses[0]
    return s["counters"]["cache_loads"], s["counters"]["cache_evictions"], s["runs_loaded"]


def test_history_limit_fails_the_run_with_a_clear_error(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "messages")
    workers.start(
        "w1", APPS, task_queue="messages", extra_env={"EVERFLOW_MAX_HISTORY_EVENTS": "20"}
    )

    async def main(client: Client) -> tuple[int, BaseException]:
        h = await client.start_workflow(Collector, id="chatty", task_queue="messages")
        sent = 0
        try:
            for item in range(100):
                await h.signal(Collector.add, item)
                sent += 1
        except WorkflowNotRunningError:
            pass
        with pytest.raises(WorkflowFailureError) as failed:
            await h.result(timeout=timedelta(seconds=30))
        return sent, failed.value

    sent, error = with_client(config, main)
    assert 15 <= sent < 100
    text = str(error.cause)
    assert "history reached 20 events (limit 20)" in text and "continue_as_new" in text


def test_workers_command_prints_ownership_and_lag(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses, worker_env: dict[str, str]
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "transfers")
    workers.start("w1")
    workers.start("w2")
    wait_until(lambda: _owned_by(config, 2), 60, 0.5, "two owners")
    out = everflow(worker_env, "workers", "--json")
    assert out.returncode == 0, out.stderr
    view = json.loads(out.stdout)
    processors = next(g for g in view["groups"] if g["group_id"].endswith("workflow-processor"))
    members = {m["client_id"]: m["partitions"] for m in processors["members"]}
    assert set(members) == {"everflow-wp-w1", "everflow-wp-w2"}
    assert sorted(p for ps in members.values() for p in ps) == [0, 1, 2, 3]
    assert set(processors["lag"]) == {"0", "1", "2", "3"}
    runners = next(g for g in view["groups"] if g["group_id"].endswith("activities.transfers"))
    assert {m["client_id"] for m in runners["members"]} == {"everflow-ar-w1", "everflow-ar-w2"}
    text = everflow(worker_env, "workers").stdout
    assert "everflow-wp-w1" in text and "lag" in text and "restore w" in text


def test_closed_runs_answer_from_snapshots_until_their_retention_tombstones_them(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "messages")
    env = {
        "EVERFLOW_CLOSED_RUN_RETENTION": "4",
        "EVERFLOW_CHECKPOINT_INTERVAL": "0.2",
        "EVERFLOW_RUN_CACHE_SIZE": "4",
    }
    workers.start("w1", APPS, task_queue="messages", extra_env=env)

    async def main(client: Client) -> tuple[str, str, type[BaseException] | None]:
        ids = [f"brief-{i}" for i in range(12)]
        for wf in ids:
            await client.execute_workflow(Quick, False, id=wf, task_queue="messages")
        await asyncio.sleep(1)  # snapshotted, and most evicted from the 4-run cache
        early = await client.get_workflow_handle(ids[0]).result()  # read back by offset
        status = (await client.get_workflow_handle(ids[0]).describe()).status.value
        await asyncio.sleep(6)  # past retention: the next checkpoint tombstones them
        await client.execute_workflow(Quick, False, id="late", task_queue="messages")
        await asyncio.sleep(1)
        try:
            await client.get_workflow_handle(ids[0]).describe()
        except WorkflowNotFoundError as e:
            return early, status, type(e)
        return early, status, None

    assert with_client(config, main) == ("ok", "COMPLETED", WorkflowNotFoundError)
    snapshots = read_topic(config, f"{config.topic_prefix}snapshots")
    tombstones = [v for _, _, v in snapshots if v is None]
    assert len(tombstones) >= 12


def test_a_long_run_is_snapshotted_in_chunks_and_rebuilt_from_them(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "messages")
    # a checkpoint after nearly every signal, and a cache too small to keep the run loaded
    env = {
        "EVERFLOW_CHECKPOINT_INTERVAL": "0.01",
        "EVERFLOW_RUN_CACHE_SIZE": "1",
        "EVERFLOW_SNAPSHOT_DEFER_SECONDS": "0.5",
    }
    first = workers.start("w1", APPS, task_queue="messages", extra_env=env)
    signals = 400

    async def fill(client: Client) -> None:
        h = await client.start_workflow(Collector, id="long", task_queue="messages")
        for i in range(signals):
            await h.signal(Collector.add, i)
        home = kafka.partition_for("long", config.partitions)
        others = [f"other-{i}" for i in range(64)]
        for wf in [o for o in others if kafka.partition_for(o, config.partitions) == home][:3]:
            # runs on its partition push "long" out of the cache (capacity 1 there)
            await client.start_workflow(Collector, id=wf, task_queue="messages")
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # snapshotted, then evicted as the least recently used
        await h.signal(Collector.add, signals)  # read back from its head and chunks

    with_client(config, fill)
    wait_until(lambda: _report_counts(config)[0] > 0, 20, 0.5, "a cache load should happen")
    snapshots = read_topic(config, f"{config.topic_prefix}snapshots")
    history = read_topic(config, f"{config.topic_prefix}history")
    snapshot_bytes = sum(len(v or b"") for _, _, v in snapshots)
    history_bytes = sum(len(v or b"") for _, _, v in history)
    # a checkpoint every 10 ms for a run growing to 400 events: whole-list snapshots would
    # write ~200x the history; a head rewritten per 32 events over chunks of 128 written
    # once keeps it to a few times
    print(f"\nlong run: snapshot bytes / history bytes = {snapshot_bytes / history_bytes:.2f}")
    assert snapshot_bytes < 8 * history_bytes, (snapshot_bytes, history_bytes)
    workers.kill(first)  # the restore rebuilds "long" from its chunks and head
    workers.start("w1", APPS, task_queue="messages", extra_env=env)

    async def finish(client: Client) -> list[int]:
        h = client.get_workflow_handle("long")
        await h.signal(Collector.add, signals + 1)
        await h.signal(Collector.finish)
        result: list[int] = await h.result(timeout=timedelta(seconds=60))
        return result

    assert with_client(config, finish) == list(range(signals + 2))
    assert history_problems(history_runs(config)) == []
