"""Runs with 1 MB payloads through the payload store: throughput and latency, against the
same runs with small payloads kept in the messages.

Each run hands its argument to an activity and returns the activity's result: three
references (argument, activity result, run result) to one stored object, since the bytes
are the same; the object is written once and rewritten (found, kept) twice, and read by
the workflow code, the activity, the workflow code again and the client.

python -m benchmarks.payload_store [--runs 200] [--concurrency 20] [--size 1048576]
    [--store file:///dir | s3://bucket/prefix]   (default: a fresh temporary folder)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.setup import ROOT, bench_config, process_env
from streams import Client
from streams.dev.broker import provision_broker
from streams.kafka.config import KafkaConfig
from streams.payload_settings import PayloadStoreSettings
from streams.payload_store import FileStore, converter_from_env

Q = "payloads"
APP = "tests.integration.apps.big_payloads"


def start_worker(config: KafkaConfig, store_url: str) -> subprocess.Popen[bytes]:
    env = process_env(config, EVERFLOW_PAYLOAD_STORE=store_url)
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", APP, "--task-queue", Q,
         "--instance-id", f"bench-payloads-{uuid.uuid4().hex[:4]}", "--log-level", "WARNING"],
        cwd=ROOT,
        env=env,
    )  # fmt: skip


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


async def timed_runs(
    client: Client, runs: int, concurrency: int, size: int, tag: str
) -> tuple[float, list[float]]:
    """(seconds for all runs, each run's latency in ms, sorted)."""
    data = ("0123456789abcdef" * (size // 16 + 1))[:size]
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with gate:
            began = time.perf_counter()
            # each run's argument differs (its index first): no two share a stored object
            await client.execute_workflow(
                "Relay", f"{i:08d}{data[8:]}", id=f"{tag}-{i}", task_queue=Q
            )
            latencies.append((time.perf_counter() - began) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(runs)))
    return time.perf_counter() - started, sorted(latencies)


async def run(config: KafkaConfig, args: argparse.Namespace, store_url: str) -> None:
    settings = PayloadStoreSettings(url=store_url)
    env = {"EVERFLOW_PAYLOAD_STORE": store_url}
    client = await asyncio.to_thread(Client, config, converter_from_env(env=env))
    worker = start_worker(config, store_url)
    try:
        # the worker is up, its partitions owned and its caches warm
        await timed_runs(client, 20, args.concurrency, 1024, "warm")
        rows = []
        for label, size in (
            ("small payloads, in the message", 1024),
            ("through the store", args.size),
        ):
            seconds, lat = await timed_runs(
                client, args.runs, args.concurrency, size, uuid.uuid4().hex[:6]
            )
            rows.append((label, size, args.runs / seconds, pct(lat, 0.5), pct(lat, 0.99)))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        client.close()
    print(
        f"payload store — broker {config.bootstrap}, {config.partitions} partitions, 1 worker, "
        f"store {store_url}, threshold {settings.threshold} B, {args.runs} runs, "
        f"{args.concurrency} at a time"
    )
    print(f"{'runs':<32} {'payload':>10} {'runs/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for label, size, rate, p50, p99 in rows:
        print(f"{label:<32} {size:>10} {rate:>8.1f} {p50:>8.1f} {p99:>8.1f}")
    if store_url.startswith("file://"):
        objects = list(FileStore(Path(store_url[len("file://") :])).objects())
        total = sum(o.size for o in objects)
        print(f"stored: {len(objects)} objects, {total / 2**20:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--size", type=int, default=1024 * 1024, help="payload bytes")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--store", help="EVERFLOW_PAYLOAD_STORE (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="everflow-payloads-") as folder:
        store_url = args.store or Path(folder).resolve().as_uri()
        with provision_broker() as bootstrap:
            config = bench_config(bootstrap, args.partitions, Q)
            asyncio.run(run(config, args, store_url))


if __name__ == "__main__":
    main()
