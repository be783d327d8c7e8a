"""The run index's projector is SIGKILLed mid-batch (inside its SQL transaction) and at a
random moment while runs keep completing; restarted, its index equals a rebuild from scratch
row for row, and every run's history length is what the history topic says."""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from processors.visibility.projector import Projector
from streams import Client, kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.settings import VisibilitySettings
from streams.visibility.records import RunRow
from streams.visibility.store import Store, open_store
from streams.wire import wire
from tests.helpers import wait_until
from tests.integration.workers import ROOT, WorkerProcesses, topics_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

APP = "tests.integration.apps.indexed"
RUNS = 60


class ProjectorProcess:
    """`everflow visibility` as a real process, its output in a log file."""

    def __init__(self, env: dict[str, str], url: str, log_dir: Path) -> None:
        self.env, self.url, self.log_dir = env, url, log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, **extra_env: str) -> subprocess.Popen[bytes]:
        self.starts += 1
        with open(self.log_dir / f"projector-{self.starts}.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "visibility", "--visibility", self.url],
                cwd=ROOT,
                env={**self.env, **extra_env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self.proc

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def history_lengths(config: KafkaConfig) -> Counter[str]:
    """Events per run on the history topic (what the index must say)."""
    reader = kafka.consumer(config, settings={"enable.partition.eof": True})
    topic = Topics(config.topic_prefix).history
    try:
        every = [TopicPartition(topic, p, 0) for p in range(config.partitions)]
        decode = wire().event.decode
        return Counter(decode(m.value()).run_id for m in kafka.read_to_end(reader, every))
    finally:
        reader.close()


def snapshot(store: Store) -> list[RunRow]:
    """Every row of the index with its pending activities, by run ID."""
    run_ids = [e.run_id for e in store.list_runs(limit=10_000, order_by="run_id")]
    loaded = store.load_rows(run_ids)
    return [loaded[r] for r in run_ids]


def test_projector_killed_mid_batch_and_restarted_equals_a_rebuild_from_scratch(
    kafka_bootstrap: str,
    topic_prefix: str,
    workers: WorkerProcesses,
    worker_env: dict[str, str],
    tmp_path: Path,
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "indexed")
    url = f"sqlite://{tmp_path}/incremental.sqlite"
    workers.start(
        "w1", APP, task_queue="indexed", extra_env={"EVERFLOW_VISIBILITY_PROJECTOR": "off"}
    )
    projector = ProjectorProcess(worker_env, url, tmp_path)
    # small batches, and the third one dies inside its SQL transaction
    small = {"EVERFLOW_VISIBILITY_BATCH_RECORDS": "7"}
    doomed = projector.start(**small, EVERFLOW_FAULT_KILL_INDEX_BEFORE_COMMIT="3")
    client = Client(config, visibility=url)
    started: list[str] = []

    async def start_runs() -> None:
        for i in range(RUNS):
            kind = "Doomed" if i % 10 == 9 else "Greet"
            args = ["no funds"] if kind == "Doomed" else [f"n{i}"]
            handle = await client.start_workflow(kind, *args, id=f"r-{i}", task_queue="indexed")
            started.append(handle.run_id or "")
            await asyncio.sleep(0.02)

    starter = threading.Thread(target=asyncio.run, args=(start_runs(),), daemon=True)
    try:
        starter.start()
        assert doomed.wait(40) == -signal.SIGKILL, "the fault hook killed the projector"
        again = projector.start(**small)
        store = open_store(url, create=False)
        try:
            wait_until(lambda: store.count_runs().count >= 10, timeout=40)
            again.send_signal(signal.SIGKILL)  # wherever it is
            again.wait(10)
            projector.start(**small)
            starter.join(60)
            assert len(started) == RUNS
            wait_until(
                lambda: (
                    store.count_runs(group_by_status=True).groups
                    == {"Completed": RUNS - RUNS // 10, "Failed": RUNS // 10}
                ),
                timeout=40,
                message="every run reaches the index closed",
            )
            workers.stop_all()  # the history stops growing
            lengths = history_lengths(config)
            wait_until(
                lambda: {r.run_id: r.last_event_id for r in snapshot(store)} == dict(lengths),
                timeout=30,
                message="every event of the history is in the index, once",
            )
            projector.stop()
            incremental = snapshot(store)
            incremental_offsets = store.offsets(Topics(topic_prefix).history)
        finally:
            store.close()
    finally:
        projector.stop()
        client.close()

    # a new store replays history from the start; --rebuild empties a store and does the same
    rebuilt_url = f"sqlite://{tmp_path}/rebuilt.sqlite"
    for rebuild in (False, True):
        out = Terminal()
        rebuild_index(config, rebuilt_url, rebuild, out)
        rebuilt = open_store(rebuilt_url, create=False)
        try:
            assert snapshot(rebuilt) == incremental
            assert rebuilt.offsets(Topics(topic_prefix).history) == incremental_offsets
        finally:
            rebuilt.close()
        ends = history_end(config)  # records and transaction markers: offsets from 0
        assert f"] {ends:,}/{ends:,} records" in out.getvalue()
    assert sorted(lengths) == sorted(started)


def history_end(config: KafkaConfig) -> int:
    reader = kafka.consumer(config)
    try:
        topic = Topics(config.topic_prefix).history
        return sum(kafka.end_offset(reader, topic, p) for p in range(config.partitions))
    finally:
        reader.close()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def rebuild_index(config: KafkaConfig, url: str, rebuild: bool, out: Terminal) -> None:
    """Runs a projector into `url` until it has applied all of history."""
    fresh = Projector(config, VisibilitySettings(url=url), rebuild=rebuild, progress_out=out)
    stop = threading.Event()
    thread = threading.Thread(target=fresh.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: (
                fresh.ends_read_at > 0
                and fresh.lag()
                and not any(n for n, _ in fresh.lag().values())
            ),
            timeout=40,
            message="the rebuild catches up",
        )
    finally:
        stop.set()
        thread.join(30)
