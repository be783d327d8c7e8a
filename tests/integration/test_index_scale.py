"""The run index at scale: 10,000 real runs of three types, with varied ends and typed
search attributes, projected into SQLite and PostgreSQL; twelve filters return exactly the
runs the test computes itself from what each run was told to do."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from processors.visibility.projector import Projector
from streams import Client
from streams.settings import VisibilitySettings
from streams.visibility.store import open_store
from tests.helpers import wait_until
from tests.integration.apps.scale import DUE, outcome
from tests.integration.workers import WorkerProcesses, topics_for

pytestmark = pytest.mark.integration

RUNS = 10_000
TYPES = ("Order", "Refund", "Audit")
QUEUE = "scale"


def status(n: int) -> str:
    """The status run `n` ends in: waiting runs with n % 10 == 1 get terminated."""
    what = outcome(n)
    if what == "fail":
        return "Failed"
    if what == "wait":
        return "Terminated" if n % 10 == 1 else "Running"
    return "Completed"


# filter -> the runs it must return, computed from the run numbers
FILTERS: dict[str, Callable[[int], bool]] = {
    "ExecutionStatus = 'Running'": lambda n: status(n) == "Running",
    "WorkflowType = 'Refund' AND ExecutionStatus = 'Failed'": (
        lambda n: TYPES[n % 3] == "Refund" and status(n) == "Failed"
    ),
    "ExecutionStatus IN ('Terminated', 'Failed') AND Region = 'eu'": (
        lambda n: status(n) in ("Terminated", "Failed") and n % 3 == 0
    ),
    "Amount BETWEEN 100 AND 120.5": lambda n: 100 <= (n % 1000) / 4 <= 120.5,
    "Priority >= 5 OR Vip = true": lambda n: n % 7 >= 5 or n % 11 == 0,
    "Tags = 'big'": lambda n: n % 1000 >= 900,
    "Tags IN ('t1', 't3') AND ExecutionStatus != 'Completed'": (
        lambda n: n % 1000 < 900 and n % 4 in (1, 3) and status(n) != "Completed"
    ),
    "Due < '2026-01-01T05:00:00Z'": lambda n: n % 48 < 5,
    "Note = 'gold'": lambda n: n % 13 == 0,
    "WorkflowId STARTS_WITH 'run-00042'": lambda n: f"run-{n:05d}".startswith("run-00042"),
    "(WorkflowType = 'Audit' OR WorkflowType = 'Order') AND Priority = 3 AND Vip = false": (
        lambda n: TYPES[n % 3] in ("Audit", "Order") and n % 7 == 3 and n % 11 != 0
    ),
    "CloseTime IS NULL AND Region != 'us'": lambda n: status(n) == "Running" and n % 3 != 1,
}


def test_ten_thousand_runs_and_twelve_filters_on_sqlite_and_postgresql(
    kafka_bootstrap: str,
    topic_prefix: str,
    workers: WorkerProcesses,
    postgres_dsn: str,
    tmp_path: Path,
) -> None:
    assert len(FILTERS) == 12
    assert DUE.year == 2026
    config = topics_for(kafka_bootstrap, topic_prefix, QUEUE)
    workers.start(
        "w1", "tests.integration.apps.scale", task_queue=QUEUE,
        extra_env={"EVERFLOW_VISIBILITY_PROJECTOR": "off"},
    )

    async def run_them() -> None:
        client = await Client.connect(kafka_bootstrap, topic_prefix=topic_prefix)
        try:
            gate = asyncio.Semaphore(200)

            async def start(n: int) -> None:
                async with gate:
                    await client.start_workflow(
                        TYPES[n % 3], n, id=f"run-{n:05d}", task_queue=QUEUE,
                        search_attributes={"Customer": f"c-{n % 37}"},
                    )

            await asyncio.gather(*(start(n) for n in range(RUNS)))

            async def terminate(n: int) -> None:
                async with gate:
                    await client.get_workflow_handle(f"run-{n:05d}").terminate("enough")

            await asyncio.gather(*(terminate(n) for n in range(RUNS) if n % 10 == 1))
        finally:
            client.close()

    asyncio.run(run_them())
    expected_counts: dict[str, int] = {}
    for n in range(RUNS):
        expected_counts[status(n)] = expected_counts.get(status(n), 0) + 1

    urls = {"sqlite": f"sqlite:///{tmp_path / 'index.sqlite'}", "postgresql": postgres_dsn}
    stop = threading.Event()
    threads = []
    for url in urls.values():
        projector = Projector(config, VisibilitySettings(url=url, batch_records=2000))
        thread = threading.Thread(target=projector.run, args=(stop,), daemon=True)
        thread.start()
        threads.append(thread)
    try:
        for name, url in urls.items():
            def counts(url: str = url) -> bool:
                try:
                    store = open_store(url, create=False)
                except Exception:  # the projector has not made the tables yet
                    return False
                try:
                    return store.count_runs(group_by_status=True).groups == expected_counts
                finally:
                    store.close()

            wait_until(counts, timeout=240, message=f"{name}: every run with its final status")
            store = open_store(url, create=False)
            try:
                types = store.attribute_types()
                from streams.visibility.query import compile_filter

                for query, wanted in FILTERS.items():
                    f = compile_filter(query, dialect=store.dialect, attribute_types=types)
                    found = {e.workflow_id for e in store.list_runs(
                        f.where, f.params, f.order_by, limit=RUNS + 1)}
                    expected = {f"run-{n:05d}" for n in range(RUNS) if wanted(n)}
                    assert expected, query  # every filter selects something
                    assert found == expected, (name, query, len(found), len(expected))
                    assert store.count_runs(f.where, f.params).count == len(expected)
            finally:
                store.close()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
