"""How long it takes to get a local Kafka: jar provisioning (cold, warm) and broker starts.

Run from the repository root: `python -m benchmarks.broker_startup [--runs N]`.
Cold provisioning uses an empty temporary cache (EVERFLOW_KAFKA_CACHE); Maven still uses
its own local repository (~/.m2), so "cold" means "cold cache, Maven repo as it is".
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from streams.dev.broker import KAFKA_VERSION, LocalKafka, ensure_kafka_libs, find_java
from streams.dev.cluster import NODES, LocalCluster


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def broker_first_start() -> float:
    with tempfile.TemporaryDirectory(prefix="everflow-bench-") as data:
        kafka = LocalKafka(Path(data) / "kafka")
        try:
            return timed(kafka.start)
        finally:
            kafka.stop()


def broker_restart() -> float:
    with tempfile.TemporaryDirectory(prefix="everflow-bench-") as data:
        kafka = LocalKafka(Path(data) / "kafka").start()
        try:
            kafka.stop()
            return timed(kafka.start)
        finally:
            kafka.stop()


def cluster_start() -> float:
    cluster = LocalCluster()
    try:
        return timed(cluster.start)
    finally:
        cluster.close()


def download_time() -> float:
    """Provisioning as on a fresh machine: empty cache and empty Maven repository."""
    saved = {k: os.environ.get(k) for k in ("EVERFLOW_KAFKA_CACHE", "MAVEN_OPTS")}
    with tempfile.TemporaryDirectory(prefix="everflow-bench-m2-") as scratch:
        os.environ["EVERFLOW_KAFKA_CACHE"] = str(Path(scratch) / "cache")
        os.environ["MAVEN_OPTS"] = f"-Dmaven.repo.local={Path(scratch) / 'm2'}"
        try:
            return timed(ensure_kafka_libs)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs of each start (default 3)")
    parser.add_argument(
        "--download",
        action="store_true",
        help="also provision with an empty Maven repository (downloads ~46 jars from Central)",
    )
    args = parser.parse_args()
    runs = args.runs

    m2 = Path.home() / ".m2" / "repository" / "org" / "apache" / "kafka" / "kafka_2.13"
    m2_warm = (m2 / KAFKA_VERSION).is_dir()
    rows: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="everflow-bench-cache-") as cache:
        os.environ["EVERFLOW_KAFKA_CACHE"] = cache
        rows.append(("provision jars, cold cache (mvn)", [timed(ensure_kafka_libs)]))
        rows.append(("provision jars, warm cache", [timed(ensure_kafka_libs)]))
        if args.download:
            rows.append(("provision jars, cold cache + empty ~/.m2", [download_time()]))
        first: list[float] = []
        again: list[float] = []
        cluster: list[float] = []
        rows.append(("broker start, new data dir (format + start)", first))
        rows.append(("broker start, existing data dir", again))
        rows.append((f"{NODES}-node cluster start (format + start)", cluster))
        for _ in range(runs):
            first.append(broker_first_start())
            again.append(broker_restart())
            cluster.append(cluster_start())

    java = find_java()
    version = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    print(
        f"Kafka {KAFKA_VERSION}; {version.stderr.splitlines()[0]}; {os.cpu_count()} CPUs; "
        f"broker heap -Xmx512m, cluster nodes -Xmx384m; runs {runs}; "
        f"~/.m2 already had kafka_2.13 {KAFKA_VERSION}: {m2_warm}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'what':<46} {'runs':>4} {'median s':>9} {'min s':>7} {'max s':>7}")
    for what, times in rows:
        print(
            f"{what:<46} {len(times):>4} {statistics.median(times):>9.2f} "
            f"{min(times):>7.2f} {max(times):>7.2f}"
        )


if __name__ == "__main__":
    main()
