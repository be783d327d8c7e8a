"""Bounded recovery: a processor SIGKILLed with 10,000 open runs restores from snapshots and
the history tail, whether the partitions hold 1,000,000 or 2,000,000 events of closed runs;
afterwards every open run goes on."""

from __future__ import annotations

import ast
import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

from benchmarks.synthetic import EVENTS_PER_RUN, write_closed_history
from streams import Client, kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.wire import wire
from tests.helpers import wait_until
from tests.integration.apps.messages import Collector, Quick
from tests.integration.history_check import read_topic
from tests.integration.test_scale import _owned_by
from tests.integration.workers import WorkerProcesses, topics_for, with_client

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
APPS = "tests.integration.apps.messages"
OPEN = 10_000
CLOSED_RUNS = 100_000  # x 10 events: a million history events per round


def _restores(log: Path) -> list[dict[str, float]]:
    text = log.read_text(errors="replace")
    return [
        ast.literal_eval(line.split("restored ", 1)[1])
        for line in text.splitlines()
        if "processors.workflow_processor.restore: restored {" in line
    ]


async def _in_chunks(calls: list, size: int = 500) -> list:  # type: ignore[type-arg]
    out = []
    for i in range(0, len(calls), size):
        out += await asyncio.gather(*(c() for c in calls[i : i + size]))
    return out


def _poke_every_partition(config: KafkaConfig, round_no: int) -> None:
    """A short run on each partition: history written after the closed history, so the
    next checkpoint's watermark passes it."""
    ids, n = {}, 0
    while len(ids) < config.partitions:
        wf = f"poke-{round_no}-{n}"
        ids.setdefault(kafka.partition_for(wf, config.partitions), wf)
        n += 1

    async def main(client: Client) -> list[str]:
        return list(
            await asyncio.gather(
                *(
                    client.execute_workflow(Quick, False, id=wf, task_queue="messages")
                    for wf in ids.values()
                )
            )
        )

    assert with_client(config, main) == ["ok"] * config.partitions


def test_restore_after_sigkill_is_flat_in_closed_history_and_every_open_run_goes_on(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, "messages")
    # open runs get their snapshot within a second (default 30 s): the closed history this
    # test writes in seconds would take a processor hours, and must not be in the tail
    env = {"EVERFLOW_CHECKPOINT_INTERVAL": "0.5", "EVERFLOW_SNAPSHOT_DEFER_SECONDS": "1"}
    proc = workers.start("w1", APPS, task_queue="messages", extra_env=env)
    wait_until(lambda: _owned_by(config, 1), 60, 0.5, "w1 should own every partition")
    ids = [f"open-{i}" for i in range(OPEN)]

    async def start_all(client: Client) -> None:
        await _in_chunks(
            [
                lambda wf=wf: client.start_workflow(Collector, id=wf, task_queue="messages")
                for wf in ids
            ]
        )

    with_client(config, start_all)
    figures = []
    for round_no in (1, 2):
        write_closed_history(config, CLOSED_RUNS, start=(round_no - 1) * CLOSED_RUNS)
        _poke_every_partition(config, round_no)
        time.sleep(2)  # a checkpoint (every 0.5 s here) covers all of it
        workers.kill(proc)
        killed = time.monotonic()
        proc = workers.start("w1", APPS, task_queue="messages", extra_env=env)
        log = sorted(workers.log_dir.glob("worker-w1-*.log"))[-1]
        restores = wait_until(
            lambda log=log: len(_restores(log)) == config.partitions and _restores(log),
            120,
            0.2,
            "the restarted worker should restore every partition",
        )
        figures.append(
            {
                "closed_events": round_no * CLOSED_RUNS * EVENTS_PER_RUN,
                "open_runs": sum(r["runs_open"] for r in restores),
                "tail_records": sum(r["tail_records"] for r in restores),
                "snapshot_records": sum(r["snapshot_records"] for r in restores),
                "restore_s": max(r["seconds"] for r in restores),
                "kill_to_restored_s": round(time.monotonic() - killed, 2),
            }
        )
    print("\nrecovery figures:", *figures, sep="\n  ")
    for f in figures:
        assert f["open_runs"] == OPEN
        # the closed history (1M, then 2M events) is never read: only the tail since the
        # last checkpoint (a handful of poke-run events)
        assert f["tail_records"] < 1_000, f
        assert f["snapshot_records"] < 3 * OPEN, f

    async def finish_all(client: Client) -> None:
        await _in_chunks(
            [lambda wf=wf: client.get_workflow_handle(wf).signal(Collector.finish) for wf in ids]
        )

    with_client(config, finish_all)
    completions = Topics(config.topic_prefix).completions

    def finished() -> int:
        closed = {
            wire().completion.decode(v).workflow_id for _, _, v in read_topic(config, completions)
        }
        return len(closed & set(ids))

    wait_until(lambda: finished() == OPEN, 120, 2, "every open run should complete")
    handle_result = with_client(
        config, lambda c: c.get_workflow_handle(ids[-1]).result(timeout=timedelta(seconds=30))
    )
    assert handle_result == []
