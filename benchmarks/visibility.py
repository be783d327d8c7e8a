"""Run index benchmark: how fast the projector folds `history` into SQLite and PostgreSQL,
and how fast typical filters list and count runs. Prints tables; never asserts.

    python -m benchmarks.visibility [--events 1000000] [--list-runs 1000000] [--postgres]

Apply rate: `--events` history events (runs of three types ending in varied ways, see
`benchmarks.index_data`) are written to a fresh history topic, then a projector folds them
into a new store; events/s is counted from its start until its offsets reach the end.
List latency: `--list-runs` rows are folded straight into a new store (no Kafka: the
benchmark times the queries, not the writes), then each filter's first page (100 rows) and
its count are timed 20 times.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.index_data import T0, _kinds, write_history
from benchmarks.setup import bench_config
from processors.visibility.fold import attribute_types, fold
from processors.visibility.projector import Projector
from streams.dev.broker import provision_broker
from streams.settings import VisibilitySettings
from streams.visibility.query import compile_filter
from streams.visibility.records import RunRow
from streams.visibility.store import Store, open_store
from streams.wire.events import HistoryEvent

FILTERS = {
    "running": "ExecutionStatus = 'Running'",
    "type+status": "WorkflowType = 'Transfer' AND ExecutionStatus = 'Failed'",
    "customer": "CustomerId = 'c-007'",
    "amount range": "Amount BETWEEN 100 AND 120 AND ExecutionStatus != 'Terminated'",
    "retrying": "ActivityAttempt >= 1 AND StartTime > '2026-01-01T00:30:00Z'",
}


def apply_rate(bootstrap: str, url: str, events: int) -> tuple[int, float]:
    config = bench_config(bootstrap, 4)
    runs = max(1, round(events / 5.25))
    written = write_history(config, runs)
    projector = Projector(config, VisibilitySettings(url=url, batch_records=2000),
                          progress_out=open("/dev/null", "w"))
    stop = threading.Event()
    started = time.perf_counter()
    thread = threading.Thread(target=projector.run, args=(stop,), daemon=True)
    thread.start()
    store = None
    try:
        while True:
            time.sleep(0.5)
            if store is None:
                with contextlib.suppress(Exception):
                    store = open_store(url, create=False)
            done = store is not None and sum(store.offsets(projector.topics.history).values())
            if done and done >= written:
                break
            if not thread.is_alive():
                raise RuntimeError("the projector stopped")
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        thread.join(30)
        if store is not None:
            store.close()
    return written, written / elapsed


def fill(store: Store, runs: int) -> None:
    """`runs` rows folded from the benchmark's run kinds, written in batches."""
    chunk: list[RunRow] = []
    types: dict = {}
    for n in range(runs):
        row = None
        for i, a in enumerate(_kinds(n % 60)):
            event = HistoryEvent(f"wf-{n:012d}", f"run-{n:012d}", i + 1,
                                 T0 + n * 1000 + i * 100, a)
            row = fold(row, event)
            types.update(attribute_types(event))
        assert row is not None
        chunk.append(row)
        if len(chunk) == 5000:
            store.write_batch(chunk, types, {})
            chunk, types = [], {}
    if chunk:
        store.write_batch(chunk, types, {})


def list_latency(store: Store) -> dict[str, tuple[float, float, float, float, int]]:
    out = {}
    types = store.attribute_types()
    for name, query in FILTERS.items():
        f = compile_filter(query, dialect=store.dialect, attribute_types=types)
        pages, counts = [], []
        for _ in range(20):
            t = time.perf_counter()
            store.list_runs(f.where, f.params, f.order_by, limit=100)
            pages.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            n = store.count_runs(f.where, f.params).count
            counts.append((time.perf_counter() - t) * 1000)
        out[name] = (statistics.median(pages), max(pages), statistics.median(counts),
                     max(counts), n)
    return out


@contextlib.contextmanager
def stores(use_postgres: bool) -> Iterator[list[tuple[str, str]]]:
    with tempfile.TemporaryDirectory() as tmp:
        found = [("sqlite", f"sqlite:///{Path(tmp) / 'index.sqlite'}"),
                 ("sqlite", f"sqlite:///{Path(tmp) / 'list.sqlite'}")]
        if not use_postgres:
            yield found
            return
        import psycopg

        from tests.postgres import local_postgres

        with local_postgres() as dsn:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("CREATE DATABASE apply")
                conn.execute("CREATE DATABASE list")
            base = dsn.rsplit("/", 1)[0]
            yield [*found, ("postgresql", f"{base}/apply"), ("postgresql", f"{base}/list")]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="history events the projector applies"
    )
    parser.add_argument(
        "--list-runs", type=int, default=1_000_000, help="runs in the store the filters read"
    )
    parser.add_argument("--postgres", action="store_true", help="also PostgreSQL (local cluster)")
    args = parser.parse_args()
    with provision_broker() as bootstrap, stores(args.postgres) as urls:
        for i in range(0, len(urls), 2):
            (dialect, apply_url), (_, list_url) = urls[i], urls[i + 1]
            written, rate = apply_rate(bootstrap, apply_url, args.events)
            print(f"{dialect:10} apply: {written:,} history events at {rate:,.0f} events/s",
                  flush=True)
            store = open_store(list_url)
            started = time.perf_counter()
            fill(store, args.list_runs)
            print(f"{dialect:10} filled {args.list_runs:,} runs in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            print(f"{'filter':14} {'page p50':>9} {'page max':>9} {'count p50':>10} "
                  f"{'count max':>10} {'matches':>9}   (ms, 20 tries each)")
            for name, (p50, pmax, c50, cmax, n) in list_latency(store).items():
                print(f"{name:14} {p50:9.2f} {pmax:9.2f} {c50:10.2f} {cmax:10.2f} {n:9,}")
            store.close()


if __name__ == "__main__":
    main()
