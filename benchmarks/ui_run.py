"""Run page benchmark: one run with 50,000 history events, then the run page's time to
first byte and to its full HTML, the time to fetch its first and its last page of history
(`/api/runs/.../history`), and the UI server's memory. Prints a table; never asserts.

    python -m benchmarks.ui_run [--events 50000] [--repeat 5]

The run's events are written straight to the history topic (as its processor would have:
a start, activities scheduled, started and completed, markers, a completion), a projector
indexes them (with the run index's history pages), then a UI server serves the pages.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks.setup import bench_config
from processors.visibility.projector import Projector
from streams import kafka
from streams.dev.broker import provision_broker
from streams.errors import VisibilityUnavailableError
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.payload import to_payload
from streams.retry import RetryPolicy
from streams.settings import UiSettings, VisibilitySettings
from streams.ui import UiServer
from streams.visibility.store import open_store
from streams.wire import wire
from streams.wire.events import (
    ActivityCompleted,
    ActivityScheduled,
    ActivityStarted,
    EventAttributes,
    HistoryEvent,
    MarkerRecorded,
    WorkflowCompleted,
    WorkflowStarted,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def long_history(events: int) -> list[EventAttributes]:
    """A run of `events` events: start, (scheduled, started, completed, marker)…, completed."""
    body: list[EventAttributes] = []
    n = 0
    while len(body) < events - 2:
        n += 1
        body += [
            ActivityScheduled(n, "step", "default", [to_payload(n)], 10_000, None, RetryPolicy()),
            ActivityStarted(n, 1),
            ActivityCompleted(n, 1, to_payload({"step": n})),
            MarkerRecorded(f"marker-{n}"),
        ]
    start = WorkflowStarted("LongRun", "default", [to_payload({"steps": n})], "cmd")
    return [start, *body[: events - 2], WorkflowCompleted(to_payload("done"))]


def write_long_history(
    config: KafkaConfig, workflow_id: str, run_id: str, events: int = 50_000
) -> None:
    """Writes one closed run of `events` events to the history topic of `config`."""
    encode = wire().event.encode
    topic = Topics(config.topic_prefix).history
    partition = kafka.partition_for(workflow_id, config.partitions)
    producer = kafka.producer(config, **{"linger.ms": 20, "batch.size": 1_000_000})
    for i, attributes in enumerate(long_history(events)):
        event = HistoryEvent(workflow_id, run_id, i + 1, T0 + i * 10, attributes)
        while True:
            try:
                producer.produce(topic, encode(event), workflow_id.encode(), partition=partition)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)


def index_run(config: KafkaConfig, url: str, run_id: str, events: int) -> None:
    """Runs a projector until the index has the run's `events` events."""
    stop = threading.Event()
    projector = Projector(config, VisibilitySettings(url=url), progress_out=open(os.devnull, "w"))
    thread = threading.Thread(target=projector.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                store = open_store(url, create=False)
            except VisibilityUnavailableError:  # the projector has not created it yet
                time.sleep(0.2)
                continue
            try:
                found = store.describe_run(run_id)
            finally:
                store.close()
            if found is not None and found.history_length >= events:
                return
            time.sleep(0.2)
        raise RuntimeError("the projector did not index the run within 5 minutes")
    finally:
        stop.set()
        thread.join(30)


def rss_mib() -> float:
    """This process's resident memory now (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed_get(url: str) -> tuple[float, float, int]:
    """Seconds to the first byte and to the whole body, and the body's size."""
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read(1)
        first = time.perf_counter() - began
        size = 1 + len(response.read())
    return first, time.perf_counter() - began, size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=50_000, help="events of the run")
    parser.add_argument("--repeat", type=int, default=5, help="fetches of each page")
    args = parser.parse_args()
    with provision_broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        config = bench_config(bootstrap, 4, "default")
        url = f"sqlite://{Path(tmp) / 'index.sqlite'}"
        wf, run = "long-run", "run-long-1"
        began = time.perf_counter()
        write_long_history(config, wf, run, args.events)
        written = time.perf_counter() - began
        began = time.perf_counter()
        index_run(config, url, run, args.events)
        indexed = time.perf_counter() - began
        before = rss_mib()
        server = UiServer(config, UiSettings(port=0, visibility=url))
        address = server.start()
        try:
            rows = measure(address, wf, run, args.events, args.repeat)
            serving = rss_mib()
        finally:
            server.stop()
    print(f"run of {args.events:,} events: written in {written:.1f} s, indexed in {indexed:.1f} s")
    print(f"{'what':<34} {'median ms':>10} {'max ms':>10} {'bytes':>10}")
    for name, times, size in rows:
        print(
            f"{name:<34} {statistics.median(times) * 1000:>10.1f} {max(times) * 1000:>10.1f}"
            f" {size:>10,}"
        )
    print(
        f"RSS of this process: {before:.0f} MiB before the UI server started (writer and"
        f" projector done), {serving:.0f} MiB after serving the requests above"
        f" (+{serving - before:.0f} MiB)"
    )
    print(f"settings: repeat={args.repeat} partitions=4 index=SQLite")


def measure(
    address: str, wf: str, run: str, events: int, repeat: int
) -> list[tuple[str, list[float], int]]:
    page = f"{address}/runs/{wf}/{run}"
    api = f"{address}/api/runs/{wf}/{run}/history?size=200&from="
    last_page = events - (events - 1) % 200
    firsts, wholes, first_pages, last_pages = [], [], [], []
    size = first_size = last_size = 0
    timed_get(page)  # warm up: the first request connects the pool's consumers
    for _ in range(repeat):
        ttfb, whole, size = timed_get(page)
        firsts.append(ttfb)
        wholes.append(whole)
        _, t, first_size = timed_get(api + "1")
        first_pages.append(t)
        _, t, last_size = timed_get(api + str(last_page))
        last_pages.append(t)
    return [
        ("run page: time to first byte", firsts, size),
        ("run page: full HTML", wholes, size),
        ("history page 1 (events 1-200)", first_pages, first_size),
        (f"last history page (from {last_page})", last_pages, last_size),
    ]


if __name__ == "__main__":
    main()
