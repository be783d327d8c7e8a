"""Money transfer benchmark: throughput (N runs, K in flight) and latency (sequential runs).

A worker process (workflow processor + activity runner) and this client process share the
machine with the broker, as in the issue's setting. Prints a table; never asserts.

    python -m benchmarks.money_transfer [--runs 2000] [--in-flight 64] [--sequential 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import TopicPartition

from benchmarks.setup import ROOT, bench_config, process_env
from benchmarks.transfer_app import BenchTransfer
from streams import Client, kafka
from streams.dev.broker import provision_broker
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics

QUEUE = "bench"


async def throughput(client: Client, runs: int, in_flight: int, tag: str) -> float:
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with gate:
            await client.execute_workflow(
                BenchTransfer, "alice", "bob", 1, id=f"{tag}-{i}", task_queue=QUEUE
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(runs)))
    return runs / (time.perf_counter() - started)


async def latency(client: Client, runs: int, tag: str) -> list[float]:
    samples = []
    for i in range(runs):
        started = time.perf_counter()
        await client.execute_workflow(
            BenchTransfer, "alice", "bob", 1, id=f"{tag}-{i}", task_queue=QUEUE
        )
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--profile", help="directory for cProfile dumps of the workers")
    args = parser.parse_args()
    with provision_broker() as bootstrap:
        config = bench_config(bootstrap, args.partitions, QUEUE)
        env = process_env(config)
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            env["EVERFLOW_PROFILE"] = str(Path(args.profile).resolve())
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streams.cli",
                    "worker",
                    "benchmarks.transfer_app",
                    "--task-queue",
                    QUEUE,
                    "--instance-id",
                    f"bench-{n}",
                    "--log-level",
                    "WARNING",
                ],
                cwd=ROOT,
                env=env,
            )
            for n in range(args.workers)
        ]
        try:
            wait_for_owners(config, args.workers)
            before = sum(cpu_seconds(w.pid) for w in workers)
            asyncio.run(run(config, args))
            spent = sum(cpu_seconds(w.pid) for w in workers) - before
            per_run = spent * 1000 / (20 + args.runs + args.sequential)
            print(
                f"{'worker CPU per run':<28} {per_run:8.2f} ms    "
                "(all worker processes, user + system)"
            )
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(30)
        print_amplification(config)
        if args.profile:
            print_profiles(Path(args.profile))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_owners(config: KafkaConfig, count: int, timeout: float = 120) -> None:
    """Until `count` processors share every partition (each restored its part)."""
    from streams.cli.workers import workers_view
    from streams.errors import BrokerError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            groups = workers_view(config).groups
        except BrokerError:  # the group coordinator is still loading
            groups = []
        for group in groups:
            owned = sorted(p for m in group.members for p in m.partitions)
            if group.group_id.endswith("workflow-processor") and len(group.members) == count:
                if owned == list(range(config.partitions)):
                    time.sleep(2)  # their restores finish
                    return
        time.sleep(0.5)
    raise TimeoutError(f"{count} workers did not share the partitions in {timeout}s")


def print_amplification(config: KafkaConfig) -> None:
    """Snapshot bytes written per history byte, from the processors' final reports."""
    from streams.cli.workers import workers_view

    statuses = workers_view(config).statuses
    history = sum(s["counters"]["history_bytes"] for s in statuses)
    snapshots = sum(s["counters"]["snapshot_bytes"] for s in statuses)
    if history:
        print(
            f"{'snapshot write amplification':<28} {snapshots / history:8.2f}       "
            f"({snapshots} snapshot bytes / {history} history bytes)"
        )


def print_profiles(directory: Path, top: int = 18) -> None:
    import pstats

    for path in sorted(directory.glob("*workflow-processor*.prof")):
        print(f"\nprofile {path.name} (top {top} by own time)")
        pstats.Stats(str(path)).sort_stats("tottime").print_stats(top)


async def run(config: KafkaConfig, args: argparse.Namespace) -> None:
    client = await asyncio.to_thread(Client, config)
    try:
        await latency(client, 20, "warmup")
        rate = await throughput(client, args.runs, args.in_flight, "tput")
        samples = await latency(client, args.sequential, "lat")
    finally:
        client.close()
    events = history_offsets(config)
    total_runs = 20 + args.runs + args.sequential
    print(
        f"money transfer (2 activities), broker {config.bootstrap} "
        f"(topics {config.topic_prefix}*), "
        f"{config.partitions} partitions, {args.workers} worker process(es)"
    )
    print(f"{'throughput':<28} {rate:8.1f} runs/s  ({args.runs} runs, {args.in_flight} in flight)")
    print(
        f"{'latency p50':<28} {statistics.median(samples):8.1f} ms    "
        f"({args.sequential} sequential)"
    )
    print(f"{'latency p99':<28} {pct(samples, 0.99):8.1f} ms")
    print(
        f"{'history offsets per run':<28} {events / total_runs:8.1f}       "
        "(events + transaction markers)"
    )
    print(f"{'history events/s at peak':<28} {rate * 6:8.0f}       (6 events per run)")


def history_offsets(config: KafkaConfig) -> int:
    """Offsets written to the history topic (events plus transaction markers)."""
    consumer = kafka.consumer(config)
    history = Topics(config.topic_prefix).history
    try:
        return sum(
            hi - lo
            for lo, hi in (
                consumer.get_watermark_offsets(TopicPartition(history, p), timeout=10)
                for p in range(config.partitions)
            )
        )
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
