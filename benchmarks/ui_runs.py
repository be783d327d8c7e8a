"""Runs page benchmark: how fast the UI's run list answers over a large run index, through a
real `UiServer` over HTTP, and how much memory the server holds while serving. Prints a
table; never asserts.

    python -m benchmarks.ui_runs [--runs 1000000] [--tries 20]

An index of `--runs` runs (the kinds `benchmarks.index_data` writes: three types, four
endings, custom search attributes) is written straight into a new SQLite file; a broker is
provisioned only because the UI's client connects to one. Each view is fetched once cold (the
chips' counts per status computed) and then `--tries` times (the counts reused, as they are
while the index does not move): time to the first byte of the answer and to its last byte.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from benchmarks.index_data import T0, _kinds
from benchmarks.setup import bench_config
from processors.visibility.fold import attribute_types, fold
from streams.dev.broker import provision_broker
from streams.settings import UiSettings
from streams.ui import UiServer
from streams.visibility.query import compile_filter
from streams.visibility.records import RunRow
from streams.visibility.store import Store, open_store
from streams.wire.events import HistoryEvent

BATCH = 20_000


def fill(store: Store, runs: int) -> None:
    """`runs` rows as `benchmarks.visibility.fill` folds them, but folded once per kind of
    run and copied with the run's IDs and times: a million rows in a couple of minutes."""
    kinds: list[RunRow] = []
    types: dict = {}
    for k in range(60):
        row = None
        for i, a in enumerate(_kinds(k)):
            event = HistoryEvent(f"wf-{k:012d}", f"run-{k:012d}", i + 1, T0 + i * 100, a)
            row = fold(row, event)
            types.update(attribute_types(event))
        assert row is not None
        kinds.append(row)
    chunk: list[RunRow] = []
    for n in range(runs):
        kind = kinds[n % 60]
        chunk.append(replace(
            kind,
            run_id=f"run-{n:012d}",
            workflow_id=f"wf-{n:012d}",
            start_time=kind.start_time + n * 1000,
            close_time=None if kind.close_time is None else kind.close_time + n * 1000,
        ))  # fmt: skip
        if len(chunk) == BATCH:
            store.write_batch(chunk, types, {})
            chunk, types = [], {}
    if chunk:
        store.write_batch(chunk, types, {})


def rss_kib() -> tuple[int, int]:
    """This process's resident memory now and at its peak, in KiB (/proc/self/status)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def fetch(address: str, path: str) -> tuple[float, float, int, int]:
    """GET `path`: (ms to the first byte, ms to the last, status, bytes)."""
    parts = urlsplit(address)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        started = time.perf_counter()
        conn.request("GET", path, headers={"Accept": "text/html"})
        response = conn.getresponse()
        first = response.read(1)
        first_byte = time.perf_counter()
        body = first + response.read()
        done = time.perf_counter()
        return (first_byte - started) * 1000, (done - started) * 1000, response.status, len(body)
    finally:
        conn.close()


def views(store: Store) -> dict[str, str]:
    """The views timed: the default list, a status chip, a type, both, and a page deep in
    the list (a keyset cursor half-way through)."""
    default = compile_filter("", dialect=store.dialect, attribute_types=store.attribute_types())
    total = store.count_runs().count
    deep = store.cursor_at(default.where, default.params, default.order, offset=total // 2)
    if deep is None:
        raise SystemExit("the index is empty: fill it with --runs 1 or more")
    return {
        "default": "/",
        "status chip": "/?" + urlencode({"status": "Running"}),
        "type filter": "/?" + urlencode({"q": "WorkflowType = 'Transfer'"}),
        "type + status": "/?" + urlencode({"q": "WorkflowType = 'Transfer'", "status": "Failed"}),
        "sorted by start": "/?" + urlencode({"sort": "-StartTime"}),
        "deep keyset page": "/?" + urlencode({"after": deep.encode()}),
        "json, deep page": "/api/runs?" + urlencode({"cursor": deep.encode()}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs in the index")
    parser.add_argument("--tries", type=int, default=20, help="warm fetches per view")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, provision_broker() as bootstrap:
        url = f"sqlite://{Path(tmp) / 'index.sqlite'}"
        store = open_store(url)
        started = time.perf_counter()
        fill(store, args.runs)
        print(
            f"filled {args.runs:,} runs in {time.perf_counter() - started:.0f} s "
            f"(SQLite, {Path(tmp, 'index.sqlite').stat().st_size / 2**20:,.0f} MiB)"
        )
        paths = views(store)
        store.close()
        config = bench_config(bootstrap, 4)
        rss_before, _ = rss_kib()
        server = UiServer(config, UiSettings(port=0, visibility=url))
        address = server.start()
        try:
            print(
                f"{'view':18} {'cold':>7} {'first byte p50':>14} {'max':>8} {'full p50':>9}"
                f" {'max':>8} {'KiB':>6}"
            )
            for name, path in paths.items():
                cold, _, status, _ = fetch(address, path)  # counts per status not yet kept
                if status != 200:
                    raise SystemExit(f"{name}: {path} answered HTTP {status}")
                timings = [fetch(address, path) for _ in range(args.tries)]
                firsts = [t[0] for t in timings]
                fulls = [t[1] for t in timings]
                size = timings[0][3] / 1024
                print(
                    f"{name:18} {cold:7.1f} {statistics.median(firsts):14.1f} {max(firsts):8.1f}"
                    f" {statistics.median(fulls):9.1f} {max(fulls):8.1f} {size:6.0f}"
                )
            print(
                f"(ms; cold: the first fetch, which counts the filter's runs per status; then"
                f" {args.tries} tries, counts reused while the index is unchanged;"
                " 50 rows a page)"
            )
            rss, peak = rss_kib()
            print(
                f"process RSS before the server {rss_before / 1024:,.0f} MiB, while serving "
                f"{rss / 1024:,.0f} MiB (peak {peak / 1024:,.0f} MiB, the fill included)"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
