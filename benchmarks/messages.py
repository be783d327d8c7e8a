"""Query round trips (cached run, and cold run rebuilt by replay) and signals/s into one run.

python -m benchmarks.messages [--runs 200] [--queries 5] [--signals 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

from streams import Client, kafka
from streams.dev.broker import provision_broker
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import ensure_topics, topic_specs

ROOT = Path(__file__).resolve().parent.parent
Q = "messages"


def start_worker(config: KafkaConfig) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "EVERFLOW_BOOTSTRAP": config.bootstrap,
        "PYTHONPATH": str(ROOT),
        "EVERFLOW_TOPIC_PREFIX": config.topic_prefix,
        "EVERFLOW_PARTITIONS": str(config.partitions),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "worker",
            "tests.integration.apps.messages",
            "--task-queue",
            Q,
            "--instance-id",
            "bench-msg",
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
    )


def stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)


async def timed_queries(client: Client, ids: list[str], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        for wid in ids:
            started = time.perf_counter()
            await client.get_workflow_handle(wid).query("progress")
            samples.append((time.perf_counter() - started) * 1000)
    return sorted(samples)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


async def run(config: KafkaConfig, args: argparse.Namespace) -> None:
    client = await asyncio.to_thread(Client, config)
    try:
        worker = start_worker(config)
        ids = [f"onb-{i}" for i in range(args.runs)]
        for wid in ids:  # long onboarding runs: they stay open while we query them
            await client.start_workflow("Onboarding", 10_000, id=wid, task_queue=Q)
        await asyncio.sleep(2)
        cached = await timed_queries(client, ids, args.queries)
        stop(worker)
        worker = start_worker(config)  # a new worker: every run must be replayed to answer
        await client.get_workflow_handle(ids[0]).describe(timeout=timedelta(seconds=60))
        cold = await timed_queries(client, ids[1:], 1)
        sink = await client.start_workflow(
            "Collector", id=f"sink-{uuid.uuid4().hex[:4]}", task_queue=Q
        )
        started = time.perf_counter()
        await asyncio.gather(*(sink.signal("add", i) for i in range(args.signals)))
        received = await sink.execute_update("count")
        seconds = time.perf_counter() - started
        for wid in ids:
            await client.get_workflow_handle(wid).terminate("benchmark done")
        await sink.signal("finish")
        stop(worker)
    finally:
        client.close()
    print(f"messages — broker {config.bootstrap}, {config.partitions} partitions, 1 worker")
    print(
        f"{'query, cached run':<30} p50 {pct(cached, 0.5):6.1f} ms  p99 {pct(cached, 0.99):6.1f}"
        f" ms  ({len(cached)} queries over {args.runs} open runs)"
    )
    print(
        f"{'query, cold run (replay)':<30} p50 {pct(cold, 0.5):6.1f} ms  p99 {pct(cold, 0.99):6.1f}"
        f" ms  ({len(cold)} first queries after a worker restart)"
    )
    print(
        f"{'signals into one run':<30} {received / seconds:8.0f} signals/s  ({received} signals,"
        f" each waited for until recorded)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--signals", type=int, default=2000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    with provision_broker() as bootstrap:
        config = KafkaConfig(
            bootstrap=bootstrap,
            partitions=args.partitions,
            topic_prefix=f"bm-{uuid.uuid4().hex[:6]}.",
        )
        ensure_topics(kafka.admin(config), topic_specs(config, [Q]))
        asyncio.run(run(config, args))


if __name__ == "__main__":
    main()
