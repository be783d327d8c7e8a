"""Payloads past the broker's limit: a 50 MB argument and a 50 MB result go through a run by
the payload store, across a worker SIGKILL; `everflow payloads gc` then removes what no run
needs and keeps what an open run refers to."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from streams import Client, PayloadNotFoundError
from streams.kafka.config import KafkaConfig
from streams.payload import STORED, Payload
from streams.payload_store import FileStore, converter_from_env
from streams.wire import wire
from streams.wire.events import (
    ActivityCompleted,
    ActivityScheduled,
    HistoryEvent,
    WorkflowCompleted,
    WorkflowStarted,
)
from tests.helpers import wait_until
from tests.integration.workers import WorkerProcesses, everflow, topics_for

pytestmark = pytest.mark.integration
QUEUE = "big"
APP = "tests.integration.apps.big_payloads"
SIZE = 50 * 1024 * 1024


@pytest.fixture
def config(kafka_bootstrap: str, topic_prefix: str) -> KafkaConfig:
    return topics_for(kafka_bootstrap, topic_prefix, QUEUE, partitions=2)


def stored(p: Payload) -> int:
    """The size of the stored object a reference names (fails if `p` is no reference)."""
    assert p.metadata["encoding"] == STORED, p.metadata
    return int(p.metadata["size"])


def test_fifty_megabytes_in_and_out_across_a_worker_kill_then_gc(
    config: KafkaConfig, workers: WorkerProcesses, worker_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    marker = tmp_path / "attempt-1-began"
    # configured once, the same way for the workers, the client and the CLI
    store_env = {"EVERFLOW_PAYLOAD_STORE": store.as_uri(), "EVERFLOW_PARTITIONS": "2"}
    first = workers.start(
        "w1", APP, task_queue=QUEUE, extra_env={**store_env, "BIG_PAYLOAD_MARKER": str(marker)}
    )
    text = ("abcdefghij" * (SIZE // 10 + 1))[:SIZE]
    expected = hashlib.sha256((text.upper() + "!").encode()).hexdigest()

    async def main() -> tuple[str, list[HistoryEvent], Payload]:
        converter = converter_from_env(env=store_env)
        client = await asyncio.to_thread(Client, config, converter)
        try:
            handle = await client.start_workflow("BigEcho", text, id="big-echo", task_queue=QUEUE)
            began = await asyncio.to_thread(  # the marker file is made, then written
                wait_until,
                lambda: marker.exists() and marker.read_text(),
                60,
                message="the activity never began",
            )
            assert began == str(SIZE)  # the worker read the argument back whole
            workers.kill(first)  # SIGKILL while the attempt holds the 50 MB argument
            workers.start("w2", APP, task_queue=QUEUE, extra_env=store_env)
            result = await handle.result(timeout=timedelta(seconds=90))
            history = await handle.fetch_history()
            # accepted once its start is in the history: an open run holding its argument
            await client.start_workflow("Holds", "h" * 400_000, id="holds", task_queue=QUEUE)
            # written by a client whose start never went out: an orphan
            orphan = converter.to_payload("o" * 400_000)
            return hashlib.sha256(result.encode()).hexdigest(), history, orphan
        finally:
            client.close()

    digest, history, orphan = asyncio.run(main())
    assert digest == expected
    attrs = [e.attributes for e in history]
    started = next(a for a in attrs if isinstance(a, WorkflowStarted))
    scheduled = next(a for a in attrs if isinstance(a, ActivityScheduled))
    completed = next(a for a in attrs if isinstance(a, ActivityCompleted))
    closed = next(a for a in attrs if isinstance(a, WorkflowCompleted))
    assert stored(started.args[0]) > SIZE and stored(scheduled.args[0]) > SIZE
    assert stored(completed.result) > SIZE and stored(closed.result) > SIZE
    assert started.args[0] == scheduled.args[0]  # the same bytes: the same object
    # what went through Kafka: references, each event a few hundred bytes
    assert max(len(wire().event.encode(e)) for e in history) < 4096
    objects = {o.key for o in FileStore(store).objects()}
    assert len(objects) == 5  # argument, activity result, run result, Holds' argument, orphan

    # all of it aged past the retention (1 s, and the run closed longer ago than that):
    # only what the open run needs stays
    close_ms = next(e.time for e in history if isinstance(e.attributes, WorkflowCompleted))
    wait_until(lambda: time.time() * 1000 - close_ms > 1500, 10)
    for path in store.rglob("*"):
        if path.is_file():
            os.utime(path, (1, 1))
    env = {**worker_env, **store_env}
    dry = everflow(env, "payloads", "gc", "--older-than", "1s", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "4 to remove, 1 kept (referenced), 0 kept (younger)" in dry.stdout
    assert {o.key for o in FileStore(store).objects()} == objects
    done = everflow(env, "payloads", "gc", "--older-than", "1s")
    assert done.returncode == 0, done.stderr
    assert "4 removed, 1 kept (referenced)" in done.stdout

    async def after_gc() -> None:
        client = await asyncio.to_thread(Client, config, converter_from_env(env=store_env))
        try:
            with pytest.raises(PayloadNotFoundError, match="is not in the payload store"):
                await client.get_workflow_handle("big-echo").result()
            events = await client.get_workflow_handle("holds").fetch_history()
            (arg,) = next(
                a for a in (e.attributes for e in events) if isinstance(a, WorkflowStarted)
            ).args
            assert client.converter.from_payload(arg) == "h" * 400_000
            assert {o.key for o in FileStore(store).objects()} == {arg.metadata["key"].decode()}
        finally:
            client.close()

    asyncio.run(after_gc())
    with pytest.raises(PayloadNotFoundError):
        converter_from_env(env=store_env).from_payload(orphan)


def test_a_run_waits_for_a_missing_object_and_goes_on_once_it_is_back(
    config: KafkaConfig, workers: WorkerProcesses, tmp_path: Path
) -> None:
    # the client writes to one store, the worker reads another: the argument is missing
    client_store, worker_store = tmp_path / "client-store", tmp_path / "worker-store"
    worker = workers.start(
        "w1",
        APP,
        task_queue=QUEUE,
        extra_env={
            "EVERFLOW_PAYLOAD_STORE": worker_store.as_uri(),
            "EVERFLOW_PAYLOAD_STORE_RETRY": "0.5",
            "EVERFLOW_PARTITIONS": "2",
        },
    )
    data = "d" * 400_000  # past the 256 KiB threshold

    async def main() -> str:
        converter = converter_from_env(env={"EVERFLOW_PAYLOAD_STORE": client_store.as_uri()})
        client = await asyncio.to_thread(Client, config, converter)
        try:
            handle = await client.start_workflow("Relay", data, id="relay", task_queue=QUEUE)
            described = await handle.describe()
            assert described.blocked is not None  # blocked as the start was recorded
            assert described.blocked.type == "PayloadNotFoundError"
            assert "is not in the payload store" in described.blocked.message
            assert worker.poll() is None  # the worker goes on: no crash, no loop
            for path in client_store.rglob("*"):  # the object is put where the worker looks
                if path.is_file():
                    target = worker_store / path.relative_to(client_store)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(path.read_bytes())
            result: str = await handle.result(timeout=timedelta(seconds=60))
            kinds = [type(e.attributes).__name__ for e in await handle.fetch_history()]
            assert kinds[:3] == ["WorkflowStarted", "WorkflowBlocked", "WorkflowUnblocked"]
            return result
        finally:
            client.close()

    assert asyncio.run(main()) == data


def test_workers_remove_stored_payloads_after_the_run_retention_one_at_a_time(
    config: KafkaConfig, workers: WorkerProcesses, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store_env = {"EVERFLOW_PAYLOAD_STORE": store.as_uri(), "EVERFLOW_PARTITIONS": "2"}
    gc_env = {
        **store_env,
        "EVERFLOW_PAYLOAD_GC_EVERY": "0.5",
        "EVERFLOW_CLOSED_RUN_RETENTION": "6",
    }
    procs = [workers.start(f"w{i}", APP, task_queue=QUEUE, extra_env=gc_env) for i in (1, 2)]
    logs = [workers.log_dir / f"worker-w{i}-{i - 1}.log" for i in (1, 2)]

    def keys() -> set[str]:
        return {o.key for o in FileStore(store).objects()}

    async def main() -> tuple[str, int]:
        client = await asyncio.to_thread(Client, config, converter_from_env(env=store_env))
        try:
            echo = await client.start_workflow("BigEcho", "e" * 400_000, id="e", task_queue=QUEUE)
            await echo.result(timeout=timedelta(seconds=60))
            holds = await client.start_workflow("Holds", "h" * 400_000, id="h", task_queue=QUEUE)
            (arg,) = next(
                e.attributes
                for e in await holds.fetch_history()
                if isinstance(e.attributes, WorkflowStarted)
            ).args
            closed = next(
                e.time
                for e in await echo.fetch_history()
                if isinstance(e.attributes, WorkflowCompleted)
            )
            return arg.metadata["key"].decode(), closed
        finally:
            client.close()

    held, closed_ms = asyncio.run(main())
    # within the retention, every object stays: the closed run still answers result()
    assert len(keys()) == 4  # BigEcho's argument, activity result and result; Holds' argument
    assert time.time() * 1000 - closed_ms < 5000, "the check above ran past the retention"
    # past it, the closed run's objects go, by themselves; the open run's stays
    wait_until(lambda: keys() == {held}, 60, message=f"objects left: {keys()}")
    assert time.time() * 1000 - closed_ms >= 6000  # not before the retention
    assert all(p.poll() is None for p in procs)

    # one worker of the two collects: the other only stands by
    def collections() -> list[int]:
        return [p.read_text(errors="replace").count("payload store: removed") for p in logs]

    before = collections()
    time.sleep(3)
    grown = [after - b for after, b in zip(collections(), before, strict=True)]
    assert sorted(grown)[0] == 0 and sorted(grown)[1] >= 1, grown
