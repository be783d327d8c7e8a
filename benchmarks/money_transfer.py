"""Money transfer benchmark: throughput (N runs, K in flight) and latency (sequential runs).

A worker process (workflow processor + activity runner) and this client process share the
machine with the broker, as in the issue's setting. Per mode (`transfer_app.MODES`: the
workflow and the worker's environment) it prints runs/s, p50, p99, history offsets per run,
CPU per run of the worker processes and of the broker separately (/proc), and the requests
the worker's Kafka clients sent per run (librdkafka statistics); then a summary, a row per
mode with the median of the rounds. Modes run in rounds, in alternating order, each after a
warm-up of its own (the broker's JIT and the worker's caches), so modes compare within the
same hour. Never asserts.

    python -m benchmarks.money_transfer [--runs 2000] [--in-flight 64] [--sequential 300]
        [--modes activities,activities-no-eager,local,encrypted] [--rounds 3] [--warmup 500]
        [--gc on|off] [--gc-threshold 50000,20,100] [--txn-verification on|off|both]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from benchmarks.setup import ROOT, bench_config, process_env
from benchmarks.transfer_app import MODES
from streams import Client, kafka
from streams.dev.broker import provision_broker
from streams.encryption import configured_codecs, generate_key
from streams.kafka.config import KafkaConfig
from streams.kafka.statistics import STATISTICS_INTERVAL_MS, RequestTally, observe_statistics
from streams.kafka.topics import Topics
from streams.payload import DataConverter
from streams.payload_settings import PayloadSettings
from streams.payload_store import converter_from_env

QUEUE = "bench"


async def throughput(client: Client, flow: type, runs: int, in_flight: int, tag: str) -> float:
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with gate:
            await client.execute_workflow(
                flow, "alice", "bob", 1, id=f"{tag}-{i}", task_queue=QUEUE
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(runs)))
    return runs / (time.perf_counter() - started)


async def latency(client: Client, flow: type, runs: int, tag: str) -> list[float]:
    samples = []
    for i in range(runs):
        started = time.perf_counter()
        await client.execute_workflow(flow, "alice", "bob", 1, id=f"{tag}-{i}", task_queue=QUEUE)
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
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated modes to run, each on fresh topics (of: {', '.join(MODES)})",
    )
    parser.add_argument(
        "--gc",
        choices=("on", "off"),
        help="the workers' GC tuning (EVERFLOW_GC; default: the worker's default, on)",
    )
    parser.add_argument("--gc-threshold", help="gen0,gen1,gen2 (EVERFLOW_GC_THRESHOLD)")
    parser.add_argument(
        "--broker-pid",
        type=int,
        help="the broker's process for its CPU figure (default: the one listening on the "
        "bootstrap port, if it is on this machine)",
    )
    parser.add_argument("--profile", help="directory for cProfile dumps of the workers")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every mode (median)")
    parser.add_argument(
        "--warmup", type=int, default=500, help="runs before each mode's measurement"
    )
    parser.add_argument(
        "--txn-verification",
        choices=("on", "off", "both"),
        default="on",
        help="the broker's transaction.partition.verification.enable while a mode runs; "
        "'both' runs each mode with it on and off (the broker's dynamic setting is changed, "
        "and put back at the end)",
    )
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; known: {', '.join(MODES)}")
    verifications = ["on", "off"] if args.txn_verification == "both" else [args.txn_verification]
    variants = [(mode, v) for mode in modes for v in verifications]
    measured: dict[str, list[Figures]] = {}
    with provision_broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        broker = args.broker_pid or listening_pid(bootstrap)
        original = verification(bootstrap)
        try:
            for n in range(args.rounds):
                for mode, verify in variants if n % 2 == 0 else variants[::-1]:
                    label = mode if verify == "on" else f"{mode}/no-verify"
                    if verify != verification(bootstrap):
                        set_verification(bootstrap, verify)
                    print(f"\n== round {n + 1} of {args.rounds}: {label}")
                    figures = run_mode(mode, bootstrap, broker, Path(tmp), args)
                    figures.mode = label
                    measured.setdefault(label, []).append(figures)
        finally:
            if verification(bootstrap) != original:
                set_verification(bootstrap, original)
    rows = [median_of(label, runs) for label, runs in measured.items()]
    print(
        f"\nsummary: median of {args.rounds} round(s); {args.runs} runs, {args.in_flight} in "
        f"flight; {args.sequential} sequential; transaction verification "
        f"{args.txn_verification}"
    )
    width = max(12, *(len(row.mode) for row in rows))
    print(
        f"{'mode':<{width}} {'runs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'worker CPU':>11} "
        f"{'broker CPU':>11} {'requests':>9} {'seq. req.':>9}  runs/s of each round"
    )
    for row in rows:
        print(
            f"{row.mode:<{width}} {row.rate:8.1f} {row.p50:8.1f} {row.p99:8.1f} "
            f"{row.worker_cpu:8.2f} ms {_or_dash(row.broker_cpu, 'ms')} "
            f"{_or_dash(row.requests, '')} {_or_dash(row.requests_sequential, '')}  "
            + " ".join(f"{rate:.0f}" for rate in row.rates)
        )
    print(
        "(CPU and requests per run; requests: sent by the worker's Kafka clients, with "
        f"{args.in_flight} in flight and sequential)"
    )


@dataclass(slots=True)
class Figures:
    """One mode's figures; CPU in ms per run, requests per run (None: not measured)."""

    mode: str
    rate: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    worker_cpu: float = 0.0
    broker_cpu: float | None = None
    requests: float | None = None  # with many in flight
    requests_sequential: float | None = None
    rates: list[float] = field(default_factory=list)  # every round's runs/s, in the summary


def median_of(label: str, runs: list[Figures]) -> Figures:
    """Each figure's median over the rounds of one mode."""

    def mid(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    out = Figures(label)
    for name in ("rate", "p50", "p99", "worker_cpu"):
        setattr(out, name, statistics.median(getattr(f, name) for f in runs))
    for name in ("broker_cpu", "requests", "requests_sequential"):
        setattr(out, name, mid([getattr(f, name) for f in runs]))
    out.rates = sorted(f.rate for f in runs)
    return out


VERIFICATION = "transaction.partition.verification.enable"


def _broker_resource(bootstrap: str) -> tuple[AdminClient, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    node = str(next(iter(admin.list_topics(timeout=10).brokers)))
    return admin, node


def verification(bootstrap: str) -> str:
    """The broker's transaction partition verification setting ("on" or "off")."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    admin, node = _broker_resource(bootstrap)
    resource = ConfigResource(ResourceType.BROKER, node)
    configs = admin.describe_configs([resource])[resource].result(30)
    return "on" if configs[VERIFICATION].value == "true" else "off"


def set_verification(bootstrap: str, state: str) -> None:
    """Turns the broker's transaction partition verification on or off (a dynamic setting)."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    admin, node = _broker_resource(bootstrap)
    entry = ConfigEntry(
        VERIFICATION,
        "true" if state == "on" else "false",
        incremental_operation=AlterConfigOpType.SET,
    )
    resource = ConfigResource(ResourceType.BROKER, node, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def _or_dash(value: float | None, unit: str) -> str:
    if value is None:
        return f"{'-':>{8 + (len(unit) + 1 if unit else 1)}}"
    return f"{value:8.2f} {unit}".rstrip() if unit else f"{value:9.2f}"


def run_mode(
    mode: str, bootstrap: str, broker: int | None, tmp: Path, args: argparse.Namespace
) -> Figures:
    """Starts the workers of one mode on fresh topics, measures, stops them."""
    flow, extra = MODES[mode]
    extra = {name: value.replace("{tmp}", str(tmp)) for name, value in extra.items()}
    keys = extra.get("EVERFLOW_PAYLOAD_KEYS")
    if keys and not Path(keys).exists():
        Path(keys).write_text(f"bench={base64.b64encode(generate_key()).decode()}\n")
    config = bench_config(bootstrap, args.partitions, QUEUE)
    env = process_env(config, **extra)
    if args.gc:
        env["EVERFLOW_GC"] = args.gc
    if args.gc_threshold:
        env["EVERFLOW_GC_THRESHOLD"] = args.gc_threshold
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        env["EVERFLOW_PROFILE"] = str(Path(args.profile).resolve())
    stats = [tmp / f"{mode}-{n}.json" for n in range(args.workers)]
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
            env={**env, "EVERFLOW_REQUEST_STATS": str(stats[n])},
        )
        for n in range(args.workers)
    ]
    figures = Figures(mode)
    try:
        wait_for_owners(config, args.workers)
        before = sum(cpu_seconds(w.pid) for w in workers)
        broker_before = cpu_seconds(broker) if broker else 0.0
        converter = converter_from_env(configured_codecs(PayloadSettings.from_env(extra)))
        asyncio.run(run(config, flow, mode, args, stats, figures, converter))
        total_runs = args.warmup + 20 + args.runs + args.sequential
        figures.worker_cpu = (sum(cpu_seconds(w.pid) for w in workers) - before) * 1000 / total_runs
        print(
            f"{'worker CPU per run':<28} {figures.worker_cpu:8.2f} ms    "
            "(all worker processes, user + system)"
        )
        if broker:
            figures.broker_cpu = (cpu_seconds(broker) - broker_before) * 1000 / total_runs
            print(f"{'broker CPU per run':<28} {figures.broker_cpu:8.2f} ms    (pid {broker})")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(30)
    print_amplification(config)
    if args.profile:
        print_profiles(Path(args.profile))
    return figures


def listening_pid(bootstrap: str) -> int | None:
    """The process on this machine listening on the bootstrap's port, if any (Linux /proc)."""
    port = int(bootstrap.split(",")[0].rsplit(":", 1)[1])
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:  # gone, or not ours to read
            continue
    return None


def requests_sent(stats: list[Path]) -> tuple[int, dict[str, int]]:
    """Requests the workers' Kafka clients sent so far, in total and by type, from the
    files the workers keep (`EVERFLOW_REQUEST_STATS`); and the workers' GC collections per
    generation, as `gc0`, `gc1`, `gc2`."""
    total, by_type = 0, {}
    for path in stats:
        if path.exists():
            report = json.loads(path.read_text())
            total += report["requests"]
            counts = {**report["by_type"]}
            for generation, n in enumerate(report.get("gc_collections", [])):
                counts[f"gc{generation}"] = n
            for name, count in counts.items():
                by_type[name] = by_type.get(name, 0) + count
    return total, by_type


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


async def run(
    config: KafkaConfig,
    flow: type,
    mode: str,
    args: argparse.Namespace,
    stats: list[Path],
    figures: Figures,
    converter: DataConverter,
) -> None:
    driver = stats[0].with_name(f"{mode}-driver.json")  # this process's own requests
    observe_statistics(RequestTally(driver))
    client = await asyncio.to_thread(Client, config, converter)
    observe_statistics(None)

    async def counted() -> tuple[dict[str, int], int]:
        # the statistics come every STATISTICS_INTERVAL_MS: wait for ones taken after now
        await asyncio.sleep(STATISTICS_INTERVAL_MS * 2.5 / 1000)
        sent, by_type = requests_sent(stats)
        return {"requests": sent, **by_type}, requests_sent([driver])[0]

    try:
        await throughput(client, flow, args.warmup, args.in_flight, "warmup")
        await latency(client, flow, 20, "warmup-seq")
        start = await counted()
        rate = await throughput(client, flow, args.runs, args.in_flight, "tput")
        middle = await counted()
        samples = await latency(client, flow, args.sequential, "lat")
        end = await counted()
    finally:
        client.close()
    events = history_offsets(config)
    total_runs = args.warmup + 20 + args.runs + args.sequential
    figures.rate, figures.p50, figures.p99 = rate, statistics.median(samples), pct(samples, 0.99)
    print(
        f"\nmoney transfer (2 activities), mode {mode}, broker {config.bootstrap} "
        f"(topics {config.topic_prefix}*), "
        f"{config.partitions} partitions, {args.workers} worker process(es)"
    )
    print(f"{'throughput':<28} {rate:8.1f} runs/s  ({args.runs} runs, {args.in_flight} in flight)")
    print(f"{'latency p50':<28} {figures.p50:8.1f} ms    ({args.sequential} sequential)")
    print(f"{'latency p99':<28} {figures.p99:8.1f} ms")
    print(
        f"{'history offsets per run':<28} {events / total_runs:8.1f}       "
        "(events + transaction markers)"
    )
    print(f"{'history events/s at peak':<28} {rate * 6:8.0f}       (6 events per run)")
    if end[0]["requests"]:
        for phase, (before, after), runs in (
            (f"{args.in_flight} in flight", (start, middle), args.runs),
            ("sequential", (middle, end), args.sequential),
        ):
            per_run = {k: (n - before[0].get(k, 0)) / runs for k, n in after[0].items()}
            if phase == "sequential":
                figures.requests_sequential = per_run["requests"]
            else:
                figures.requests = per_run["requests"]
            gcs = [per_run.pop(f"gc{g}", 0.0) * 1000 for g in range(3)]
            total = per_run.pop("requests")
            top = sorted(per_run.items(), key=lambda kv: -kv[1])[:8]
            print(
                f"{'broker requests per run':<28} {total:8.1f}       {phase}: sent by the "
                f"worker's Kafka clients (+{(after[1] - before[1]) / runs:.1f} by this client)"
            )
            print(f"{'':<28} " + ", ".join(f"{name} {n:.2f}" for name, n in top if n >= 0.01))
            print(
                f"{'worker GC per 1000 runs':<28} {gcs[2]:8.1f}       {phase}: full "
                f"collections ({gcs[1]:.0f} of gen1, {gcs[0]:.0f} of gen0)"
            )


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
