"""Timer benchmark: firing lag with many pending timers, and the cost of 1M pending timers.

Lag: 1,000 sleeping runs (real workflows) become due together while the processor also holds
K other pending timers (synthetic records on the timers topic, for runs that do not exist:
they are skipped when due). Memory and reload: a processor restores 1M pending timers of a
partition set; we measure the time and the resident memory they take.

    python -m benchmarks.timers [--runs 1000] [--pending 0,100000] [--reload 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import heapq
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import TopicPartition

from streams import Client, kafka
from streams.dev.broker import provision_broker
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, ensure_topics, topic_specs
from streams.wire import wire
from streams.wire.events import TimerFired, TimerStarted
from streams.wire.records import Timer, TimerKind

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "timing"


def write_synthetic_timers(config: KafkaConfig, count: int, start_ms: int, spread_ms: int) -> None:
    producer = kafka.producer(config, **{"linger.ms": 20})
    topic = Topics(config.topic_prefix).timers
    codec = wire().timer
    for i in range(count):
        timer = Timer(
            f"ghost-{i}", "r", TimerKind.USER_TIMER, 1, 0, start_ms + (i * 7919) % spread_ms
        )
        value = codec.encode(timer)
        while True:
            try:
                producer.produce(topic, value, timer.key.encode(), partition=i % config.partitions)
                break
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.5)
        if i % 20000 == 0:
            producer.poll(0)
    producer.flush(120)


def lag(config: KafkaConfig, runs: int, pending: int) -> list[float]:
    ensure_topics(kafka.admin(config), topic_specs(config, [QUEUE]))
    now = int(time.time() * 1000)
    write_synthetic_timers(config, pending, now + 25_000, 10_000)
    env = {
        **os.environ,
        "EVERFLOW_BOOTSTRAP": config.bootstrap,
        "PYTHONPATH": str(ROOT),
        "EVERFLOW_TOPIC_PREFIX": config.topic_prefix,
        "EVERFLOW_PARTITIONS": str(config.partitions),
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "worker",
            "tests.integration.apps.timing",
            "--task-queue",
            QUEUE,
            "--instance-id",
            "bench-timers",
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        asyncio.run(start_naps(config, runs, now + 30_000))
        time.sleep(max(0.0, (now + 30_000) / 1000 + 10 - time.time()))  # all due, plus slack
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    due: dict[str, int] = {}
    lags: list[float] = []
    for raw in read_all(config, Topics(config.topic_prefix).history):
        event = wire().event.decode(raw)
        if isinstance(event.attributes, TimerStarted):
            due[event.workflow_id] = event.attributes.fire_at
        elif isinstance(event.attributes, TimerFired):
            lags.append(event.time - due[event.workflow_id])
    return sorted(lags)


async def start_naps(config: KafkaConfig, runs: int, wake_at_ms: int) -> None:
    client = await asyncio.to_thread(Client, config)
    gate = asyncio.Semaphore(128)
    try:

        async def one(i: int) -> None:
            async with gate:
                # every run wakes within one second of `wake_at_ms`
                seconds = (wake_at_ms + (i * 37) % 1000) / 1000 - time.time()
                await client.start_workflow("Nap", seconds, id=f"nap-{i}", task_queue=QUEUE)

        await asyncio.gather(*(one(i) for i in range(runs)))
    finally:
        client.close()


def read_all(config: KafkaConfig, topic: str) -> list[bytes]:
    consumer = kafka.consumer(config, settings={"enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(config.partitions)])
    out, eof = [], set()
    while len(eof) < config.partitions:
        for m in consumer.consume(5000, 1.0):
            if m.error():
                eof.add(m.partition())
            else:
                out.append(m.value())
    consumer.close()
    return out


def reload(config: KafkaConfig, count: int) -> tuple[float, float]:
    """Seconds to restore `count` pending timers into a heap, and the MiB they take."""
    from processors.workflow_code.registry import Registry
    from processors.workflow_processor.restore import restore_partitions

    ensure_topics(kafka.admin(config), topic_specs(config))
    write_synthetic_timers(config, count, int(time.time() * 1000) + 3_600_000, 3_600_000)
    gc.collect()
    before = rss_mib()
    started = time.perf_counter()
    restored = restore_partitions(config, wire(), list(range(config.partitions)), Registry([], []))
    heap: list[tuple[int, int, int, Timer]] = []
    seq = 0
    for p, part in restored.items():
        for timer in part.timers.values():
            heap.append((timer.fire_at, seq, p, timer))
            seq += 1
        part.timers.clear()  # the processor keeps the heap, not the restore dicts
    heapq.heapify(heap)
    seconds = time.perf_counter() - started
    gc.collect()
    return seconds, rss_mib() - before


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--pending", default="0,100000")
    parser.add_argument("--reload", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    with provision_broker() as bootstrap:
        print(f"timers — broker {bootstrap}, {args.partitions} partitions, 1 worker process")
        print(f"{'pending timers':>15} {'runs':>6} {'lag p50 ms':>11} {'lag p99 ms':>11}")
        for pending in [int(x) for x in args.pending.split(",") if x]:
            config = KafkaConfig(
                bootstrap=bootstrap,
                partitions=args.partitions,
                topic_prefix=f"bt-{uuid.uuid4().hex[:6]}.",
            )
            lags = lag(config, args.runs, pending)
            print(
                f"{pending + args.runs:>15} {len(lags):>6} {pct(lags, 0.5):>11.0f} "
                f"{pct(lags, 0.99):>11.0f}",
                flush=True,
            )
        config = KafkaConfig(
            bootstrap=bootstrap,
            partitions=args.partitions,
            topic_prefix=f"bt-{uuid.uuid4().hex[:6]}.",
        )
        seconds, mib = reload(config, args.reload)
        print(
            f"reload of {args.reload:,} pending timers: {seconds:.1f} s, "
            f"{mib:.0f} MiB resident ({mib * 2**20 / args.reload:.0f} bytes per timer); "
            f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
        )


if __name__ == "__main__":
    main()
