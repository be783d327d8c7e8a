"""The runs page over a real SQLite run index (no broker: the routes read only the index):
filter errors next to the box, status chips and their counts, sorting by a column, keyset
pages through Next / Previous links, the JSON twin, and the live stream's swaps."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from streams.kafka.config import KafkaConfig
from streams.settings import UiSettings
from streams.ui import create_app
from streams.ui.runs import RunsView, StatusCounts, split_order
from streams.visibility.query import compile_filter
from streams.visibility.records import RunRow
from streams.visibility.store import Store, open_store
from tests.run_pages import fill_varied

CONFIG = KafkaConfig(bootstrap="127.0.0.1:1", topic_prefix="ui-runs.")
LOCAL = "http://127.0.0.1:8233"  # the UI without sign-in answers to loopback names only


@pytest.fixture
def index(tmp_path: Path) -> Store:
    store = open_store(str(tmp_path / "ix.sqlite"))
    fill_varied(store)
    return store


def app_for(store: Store) -> Starlette:
    return create_app(CONFIG, UiSettings(visibility=f"sqlite://{store.location.target}"))


@pytest.fixture
def client(index: Store) -> TestClient:
    return TestClient(app_for(index), follow_redirects=False, base_url=LOCAL)


def run_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-run-id="([^"]+)"', html)


def link(html: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]*)" rel="{rel}">', html)
    return unescape(found.group(1)) if found else None


def expected(store: Store, query: str) -> list[str]:
    f = compile_filter(query, dialect="sqlite", attribute_types=store.attribute_types())
    return [r.run_id for r in store.list_runs(f.where, f.params, f.order_by, limit=10_000)]


def test_the_page_lists_the_latest_runs_first_with_links_to_each(
    client: TestClient, index: Store
) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert run_ids(page.text) == expected(index, "")[:50]
    assert '<span class="status status-running">Running</span>' in page.text
    assert re.search(r'<a href="/runs/wf-\d\d/r-\d{4}">wf-\d\d</a>', page.text)
    # the attempt column highlights runs retrying an activity
    assert re.search(r'<span class="retrying"[^>]*>[234]</span>', page.text)
    assert 'data-live="/live/runs?"' in page.text and 'id="batch-actions"' in page.text
    # without scripts, a datalist and the help line name every field, custom ones included
    assert '<option value="Amount">' in page.text and '<option value="WorkflowType">' in page.text
    assert "<code>Customer</code>" in page.text


def test_a_filter_that_does_not_compile_is_shown_next_to_the_box_with_its_caret(
    client: TestClient,
) -> None:
    page = client.get("/", params={"q": "WorkflowType = 'Order' AND Statuss = 'Running'"})
    assert page.status_code == 400
    alert = re.search(r'<pre id="runs-filter-error"[^>]*role="alert">(.*?)</pre>', page.text, re.S)
    assert alert is not None
    text = unescape(alert.group(1))
    assert "unknown attribute 'Statuss'" in text and "\n  " + " " * 27 + "^^^^^^^" in text
    # the page still renders: the box keeps what was typed, no rows, no live stream
    assert 'value="WorkflowType = &#39;Order&#39; AND Statuss = &#39;Running&#39;"' in page.text
    assert run_ids(page.text) == [] and "data-live" not in page.text
    assert "Fix the filter to see runs." in page.text


def test_status_chips_count_the_filter_and_filter_it(client: TestClient, index: Store) -> None:
    page = client.get("/", params={"q": "WorkflowType = 'Order'"})
    chips = dict(re.findall(r'data-status="(\w+)">\w+ <span class="count">(\d+)</span>', page.text))
    assert chips["All"] == str(len(expected(index, "WorkflowType = 'Order'")))
    assert chips["Failed"] == str(
        len(expected(index, "WorkflowType = 'Order' AND ExecutionStatus = 'Failed'"))
    )
    assert chips["Canceled"] == "0"
    assert re.search(r'aria-current="true" data-status="All"', page.text)
    failed = re.search(r'<a class="chip chip-failed" href="([^"]+)"', page.text)
    assert failed is not None
    assert parse_qs(urlsplit(unescape(failed.group(1))).query) == {
        "q": ["WorkflowType = 'Order'"], "status": ["Failed"]}  # fmt: skip
    chosen = client.get("/" + unescape(failed.group(1)))
    query = "WorkflowType = 'Order' AND ExecutionStatus = 'Failed'"
    assert run_ids(chosen.text) == expected(index, query)
    assert re.search(r'aria-current="true" data-status="Failed"', chosen.text)
    # the chips still count every status of the filter; the batch acts on the chip's runs
    assert re.search(r'data-status="Completed">Completed <span class="count">[1-9]', chosen.text)
    assert (
        'name="query" value="(WorkflowType = &#39;Order&#39;) AND ExecutionStatus = &#39;Failed'
        in (chosen.text)
        and f"Terminate {len(expected(index, query))} runs</button>" in chosen.text
    )


def test_clicking_a_heading_sorts_by_it_and_clicking_again_reverses(
    client: TestClient, index: Store
) -> None:
    by_run = "ExecutionStatus != 'Running' ORDER BY RunId"
    first = client.get("/", params={"q": by_run})
    assert run_ids(first.text) == expected(index, by_run)[:50]
    assert re.search(r'<th scope="col" aria-sort="ascending"><a [^>]*>Run ID', first.text)
    heading = re.search(
        r'<th scope="col" aria-sort="none"><a href="([^"]+)"[^>]*>Duration', first.text
    )
    assert heading is not None
    by_duration = client.get("/" + unescape(heading.group(1)))
    query = "ExecutionStatus != 'Running' ORDER BY ExecutionDuration DESC"
    assert run_ids(by_duration.text) == expected(index, query)[:50]
    assert re.search(
        r'aria-sort="descending"><a href="([^"]+)"[^>]*>Duration<span class="arrow"'
        r' aria-hidden="true"> ▼',
        by_duration.text,
    )
    again = re.search(r'aria-sort="descending"><a href="([^"]+)"', by_duration.text)
    assert again is not None
    ascending = client.get("/" + unescape(again.group(1)))
    query = "ExecutionStatus != 'Running' ORDER BY ExecutionDuration"
    assert run_ids(ascending.text) == expected(index, query)[:50]
    assert 'aria-sort="ascending"' in ascending.text


def test_next_and_previous_links_walk_every_page_by_cursor(
    client: TestClient, index: Store
) -> None:
    query = "ORDER BY CloseTime DESC"
    everything = expected(index, query)
    pages = [client.get("/", params={"q": query, "size": "20"}).text]
    assert link(pages[0], "prev") is None and link(pages[0], "first") is None
    while (after := link(pages[-1], "next")) is not None:
        assert "after=" in after and "offset" not in after
        pages.append(client.get("/" + after).text)
    assert [run for page in pages for run in run_ids(page)] == everything
    assert len(pages) == 8 and link(pages[-1], "first") is not None
    back = link(pages[-1], "prev")
    assert back is not None and "before=" in back
    assert run_ids(client.get("/" + back).text) == run_ids(pages[-2])
    bad = client.get("/", params={"after": "not-a-cursor"})
    assert bad.status_code == 400 and "not a cursor of the run list" in bad.text


def test_the_json_twin_pages_by_cursor(client: TestClient, index: Store) -> None:
    seen: list[str] = []
    cursor = ""
    while True:
        answer = client.get("/api/runs", params={"q": "Blocked = true", "cursor": cursor,
                                                 "size": "4"}).json()  # fmt: skip
        seen += [run["run_id"] for run in answer["runs"]]
        assert all(run["status"] == "Blocked" for run in answer["runs"])
        if answer["next"] is None:
            break
        cursor = answer["next"]
    assert seen == expected(index, "Blocked = true")
    refused = client.get("/api/runs", params={"q": "Blocked = 'yes'"})
    assert refused.status_code == 400 and "Blocked needs true or false" in refused.json()["error"]


def test_a_status_chip_and_a_sort_combine_with_the_filter_text() -> None:
    view = RunsView(q="WorkflowType = 'A' OR WorkflowType = 'B' ORDER BY StartTime",
                    status="Failed", sort="-HistoryLength")  # fmt: skip
    assert view.condition == (
        "(WorkflowType = 'A' OR WorkflowType = 'B') AND ExecutionStatus = 'Failed'"
    )
    assert view.query == view.condition + " ORDER BY HistoryLength DESC"
    assert split_order("ORDER BY StartTime") == ("", "ORDER BY StartTime")
    assert RunsView.from_params({"status": "Nope", "sort": "Evil--", "size": "x"}) == RunsView()


def test_the_live_stream_swaps_in_a_run_the_index_gains(index: Store) -> None:
    app = app_for(index)
    newest = RunRow("r-new", "wf-new", "Order", "q", "Running", 9_000_000, 2)
    running = len(expected(index, "ExecutionStatus = 'Running'")) + 1
    chip = f'data-status="Running">Running <span class="count">{running}</span>'

    async def listen() -> list[dict[str, Any]]:
        swaps: list[dict[str, Any]] = []
        gone = asyncio.Event()
        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            body = message.get("body", b"").decode()
            for event in re.findall(r"event: swap\ndata: (.*)\n\n", body):
                swaps.extend(json.loads(event))
                if len(swaps) == 2:  # the first render: the page as it is; now add a run
                    await asyncio.to_thread(index.write_batch, [newest], {}, {("h", 0): 1})
                elif any(chip in s["html"] for s in swaps[2:]):
                    gone.set()  # the chips catch up too, once their counts are recounted

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": "/live/runs", "raw_path": b"",
                 "query_string": b"status=Running", "root_path": "",
                 "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 5000),
                 "server": ("127.0.0.1", 80), "state": {}}  # fmt: skip
        await asyncio.wait_for(app(scope, receive, send), timeout=20)
        return swaps

    swaps = asyncio.run(listen())
    assert [s["id"] for s in swaps[:2]] == ["runs-chips", "runs-list"]
    table = next(s["html"] for s in swaps[2:] if s["id"] == "runs-list")
    assert run_ids(table)[0] == "r-new"  # on the first page, the newest run comes first
    chips = [s["html"] for s in swaps if s["id"] == "runs-chips"]
    assert chip not in chips[0] and chip in chips[-1]


def test_status_counts_are_reused_until_the_index_moves(index: Store) -> None:
    counts = StatusCounts(fresh_for=0)
    first = counts.count(index, "1=1", ())
    unseen = RunRow("r-unseen", "wf", "Order", "q", "Failed", 1, 2, close_time=5)
    index.write_batch([unseen], {}, {})  # rows without offsets: the change mark stays
    assert counts.count(index, "1=1", ()) == first
    index.write_batch([], {}, {("h", 0): 7})
    assert counts.count(index, "1=1", ()).groups["Failed"] == first.groups["Failed"] + 1


def test_without_an_index_the_page_says_how_to_get_one(tmp_path: Path) -> None:
    settings = UiSettings(visibility=f"sqlite://{tmp_path}/none.sqlite")
    client = TestClient(create_app(CONFIG, settings), base_url=LOCAL)
    page = client.get("/")
    assert page.status_code == 503 and "No run index yet" in page.text
    assert "everflow worker" in page.text
    answer = client.get("/api/runs")
    assert answer.status_code == 503 and "everflow visibility" in answer.json()["error"]


def test_status_counts_from_many_threads_at_once_keep_at_most_their_size(index: Store) -> None:
    counts = StatusCounts(fresh_for=0, size=2)
    failures: list[BaseException] = []
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave as often as they can: evictions collide

    def count_many(n: int) -> None:
        try:
            for i in range(200):
                counts.count(index, f"{n * 1000 + i} = {n * 1000 + i}", ())
        except BaseException as e:  # any error of any thread fails the test
            failures.append(e)

    try:
        threads = [threading.Thread(target=count_many, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    assert failures == []
    assert counts.count(index, "1=1", ()).count == len(expected(index, ""))


def test_opening_the_index_never_holds_up_the_server(index: Store) -> None:
    """While the index is slow to open (here: held by another thread), the page waits in a
    thread and the server keeps answering other requests."""
    app = app_for(index)
    ui = app.state.ui
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            ui._lock.release()  # noqa: SLF001  (holding it is how opening stays slow)

    async def get(path: str) -> int:
        status = 0
        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": path, "raw_path": b"",
                 "query_string": b"", "root_path": "", "headers": [(b"host", b"127.0.0.1")],
                 "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
                 "state": {}}  # fmt: skip
        await app(scope, receive, send)
        return status

    async def both() -> tuple[int, bool, int]:
        listing = asyncio.create_task(get("/api/runs"))
        await asyncio.sleep(0)  # the listing starts first and waits for the index
        health = await get("/api/health")
        answered_while_held = not released.is_set()
        release()
        return health, answered_while_held, await listing

    ui._lock.acquire()  # noqa: SLF001  (the lock Ui.store takes to open the index)
    fallback = threading.Timer(30, release)  # without the fix the loop itself waits for this
    fallback.start()
    try:
        health, answered_while_held, listed = asyncio.run(both())
    finally:
        fallback.cancel()
        release()
    assert health == 200 and answered_while_held
    assert listed == 200


def test_without_an_index_the_live_stream_ends_saying_so(tmp_path: Path) -> None:
    settings = UiSettings(visibility=f"sqlite://{tmp_path}/none.sqlite")
    client = TestClient(create_app(CONFIG, settings), base_url=LOCAL)
    answer = client.get("/live/runs")
    assert answer.status_code == 200
    event, data = re.fullmatch(r"event: (\w+)\ndata: (.*)\n\n", answer.text).groups()  # type: ignore[union-attr]
    assert event == "end" and "everflow visibility" in json.loads(data)["message"]


def test_times_say_they_are_utc(client: TestClient) -> None:
    page = client.get("/").text
    assert ">Start (UTC)<" in page and ">End (UTC)<" in page
    assert ">Today (UTC)<" in page
