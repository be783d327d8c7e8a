"""Recovery and memory benchmark: restore time against closed-history size, and the
processor's resident memory per 10,000 open runs. Prints tables; never asserts.

    python -m benchmarks.recovery [--open 10000] [--sizes 0,1000000,2000000,4000000]
                                  [--rss-runs 40000]

A worker process owns the partitions; open runs wait for a signal. Closed history is
written straight to the history topic (benchmarks.synthetic), then a short run per
partition lets a checkpoint pass it, and a restore of every partition is timed here, in
process, exactly as a processor taking over would do it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.money_transfer import wait_for_owners
from benchmarks.setup import ROOT, bench_config, process_env
from benchmarks.synthetic import EVENTS_PER_RUN, write_closed_history
from benchmarks.transfer_app import Instant, Parked
from processors.workflow_code.registry import Registry
from processors.workflow_processor.restore import restore_partitions
from streams import Client, kafka
from streams.dev.broker import provision_broker
from streams.kafka.config import KafkaConfig
from streams.wire import wire

QUEUE = "bench"


async def start_parked(client: Client, first: int, count: int) -> None:
    for i in range(first, first + count, 500):
        ids = range(i, min(first + count, i + 500))
        await asyncio.gather(
            *(client.start_workflow(Parked, id=f"parked-{n}", task_queue=QUEUE) for n in ids)
        )


async def poke(client: Client, config: KafkaConfig, tag: str) -> None:
    ids: dict[int, str] = {}
    n = 0
    while len(ids) < config.partitions:
        wf = f"poke-{tag}-{n}"
        ids.setdefault(kafka.partition_for(wf, config.partitions), wf)
        n += 1
    await asyncio.gather(
        *(client.execute_workflow(Instant, id=wf, task_queue=QUEUE) for wf in ids.values())
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--open", type=int, default=10_000, help="open runs during restores")
    parser.add_argument("--sizes", default="0,1000000,2000000,4000000", help="closed events")
    parser.add_argument("--rss-runs", type=int, default=40_000, help="open runs, memory table")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    with provision_broker() as bootstrap:
        config = bench_config(bootstrap, args.partitions, QUEUE)
        # open runs snapshotted within a second (default: 32 events or 30 s), so the
        # closed history written here in seconds is behind the watermark
        env = process_env(config, EVERFLOW_SNAPSHOT_DEFER_SECONDS="1")
        command = [sys.executable, "-m", "streams.cli", "worker", "benchmarks.transfer_app"]
        worker = subprocess.Popen(
            [*command, "--task-queue", QUEUE, "--instance-id", "bench", "--log-level", "WARNING"],
            cwd=ROOT,
            env=env,
        )
        try:
            wait_for_owners(config, 1)
            asyncio.run(run(config, args, worker.pid))
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)


async def run(config: KafkaConfig, args: argparse.Namespace, pid: int) -> None:
    client = await asyncio.to_thread(Client, config)
    try:
        print("processor memory (RSS of the worker process; run cache 10,000 by default)")
        print(f"{'open runs':>10} {'RSS MiB':>9} {'MiB per 10k since last':>24}")
        base = rss_mib(pid)
        print(f"{0:>10} {base:9.1f}")
        step, started, last = 10_000, 0, base
        while started < max(args.rss_runs, args.open):
            await start_parked(client, started, step)
            started += step
            await asyncio.sleep(3)  # checkpointed, cache trimmed
            now = rss_mib(pid)
            print(f"{started:>10} {now:9.1f} {now - last:24.1f}")
            last = now
        print(f"\nrestore of {args.partitions} partitions with {started} open runs")
        print(f"{'closed events':>14} {'restore s':>10} {'snapshot recs':>14} {'tail recs':>10}")
        written = 0
        for size in (int(s) for s in args.sizes.split(",")):
            runs = (size - written) // EVENTS_PER_RUN
            if runs > 0:
                write_closed_history(config, runs, start=written // EVENTS_PER_RUN)
                written += runs * EVENTS_PER_RUN
            await poke(client, config, str(size))
            await asyncio.sleep(3)  # a checkpoint passes the new history
            began = time.perf_counter()
            parts = await asyncio.to_thread(
                restore_partitions,
                config,
                wire(),
                list(range(config.partitions)),
                Registry([Instant, Parked], []),
            )
            seconds = time.perf_counter() - began
            snaps = sum(p.snapshot_records for p in parts.values())
            tail = sum(p.tail_records for p in parts.values())
            print(f"{written:>14} {seconds:10.2f} {snaps:>14} {tail:>10}")
    finally:
        client.close()


if __name__ == "__main__":
    main()
