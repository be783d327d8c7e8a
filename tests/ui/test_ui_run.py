"""The run page in a real browser, on a real broker with real workers: a retried activity
shows its attempt of its budget and its last failure, a sleeping run shows the line of code
it waits on (from the running code, and as recorded when no worker is up), a run that
closes while its page is open shows it without a reload, the live stream of a closed run
catches up and ends, its history downloads as JSON lines and Avro that replay reads back
(also with no history pages indexed and no worker), and a 50,000-event history opens and
scrolls to its last event."""

from __future__ import annotations

import json
import sqlite3
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from playwright.sync_api import expect

from benchmarks.ui_run import write_long_history
from processors.visibility.projector import Projector
from streams import Client, kafka
from streams.cli.history import read_history_file
from streams.kafka.topics import Topics
from streams.settings import visibility_url
from streams.visibility.store import open_store
from streams.wire import wire
from tests.helpers import wait_until
from tests.integration.workers import WorkerProcesses, with_client
from tests.ui.conftest import RunningUi, shot

pytestmark = pytest.mark.integration

APP = "tests.integration.apps.run_page"
SLEEP_LINE = "await workflow.sleep(timedelta(seconds=seconds))"


def start(ui: RunningUi, workflow: str, arg: Any, workflow_id: str) -> str:
    async def go(client: Client) -> str:
        handle = await client.start_workflow(workflow, arg, id=workflow_id, task_queue="default")
        return str(handle.run_id)

    # Playwright's sync API keeps an event loop on this thread: the client runs on another
    with ThreadPoolExecutor(1) as pool:
        return str(pool.submit(with_client, ui.config, go).result(60))


def test_run_page_shows_attempts_the_current_line_and_a_close_without_reload(
    ui: RunningUi, workers: WorkerProcesses, page: Any, tmp_path: Path
) -> None:
    worker = workers.start("run-page", APP, task_queue="default")
    start(ui, "FlakyCharge", 42, "charge-1")
    start(ui, "Sleeper", 600, "sleeper-long")

    # attempts 1 and 2 fail at once; attempt 3 waits 20 s for its backoff
    page.goto(ui.url("/runs/charge-1"))
    pending = page.locator("#run-pending")
    expect(pending).to_contain_text("attempt 3 of 100", timeout=30_000)
    expect(pending).to_contain_text("card network unreachable (attempt 2)")
    expect(pending.locator("[data-countdown-to]")).to_contain_text("in ")
    expect(page.locator("#run-summary")).to_contain_text("42")
    shot(page, "run-flaky-activity")
    page.get_by_role("link", name="Compact").click()
    steps = "scheduled → failed #1 → retried #2 → failed #2"
    expect(page.locator("table.compact")).to_contain_text(steps)
    shot(page, "run-compact")
    page.get_by_role("link", name="Timeline").click()
    expect(page.locator(".timeline .bar-failed")).to_have_count(2)
    shot(page, "run-timeline")

    response = page.goto(ui.url("/runs/charge-1/no-such-run"))
    assert response is not None and response.status == 404
    expect(page.locator("main")).to_contain_text("no run no-such-run of workflow charge-1")

    # the running code answers the stack query: the sleep line, highlighted in its source
    page.goto(ui.url("/runs/sleeper-long"))
    current = page.locator("#run-current")
    expect(current).to_contain_text("From the running code")
    expect(current.locator(".source-line.current")).to_contain_text(SLEEP_LINE)
    expect(page.locator("#run-waits")).to_contain_text("Timer 1 due")
    shot(page, "run-current-line")

    # a run that closes while its page is open: the page shows it, no reload
    short_run = start(ui, "Sleeper", 4, "sleeper-short")
    page.goto(ui.url("/runs/sleeper-short"))
    expect(page.locator("#run-status")).to_have_text("Running")
    page.evaluate("window.keptAcrossUpdates = 'yes'")
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=30_000)
    expect(page.locator("#run-summary")).to_contain_text('"slept 4 s"')
    expect(page.locator("#history-count")).to_have_text("4")  # started, timer, fired, done
    assert page.evaluate("window.keptAcrossUpdates") == "yes"
    shot(page, "run-closed-live")

    # both downloads are histories `everflow replay` reads back
    for ext in ("jsonl", "avro"):
        url = ui.url(f"/runs/sleeper-short/{short_run}/history.{ext}")
        with urllib.request.urlopen(url, timeout=30) as response:
            (tmp_path / f"h.{ext}").write_bytes(response.read())
        (events,) = read_history_file(tmp_path / f"h.{ext}")
        assert [e.event_id for e in events] == [1, 2, 3, 4]
        assert type(events[-1].attributes).__name__ == "WorkflowCompleted"

    # the page of a closed run: its live stream ends (no connection held open); a stream
    # that starts behind the run (a reconnect, a close before it connected) catches up first
    page.goto(ui.url(f"/runs/sleeper-short/{short_run}"))
    expect(page.locator("#run-status")).to_have_text("Completed")
    page.wait_for_function("document.getElementById('run-page').efLive.readyState === 2")
    live = ui.url(f"/live/runs/sleeper-short/{short_run}?seen=1")
    with urllib.request.urlopen(live, timeout=30) as response:
        body = response.read().decode()
    assert '"history_length":4' in body and "WorkflowCompleted" in body
    assert "status-completed" in body  # the status swap
    assert body.endswith('event: end\ndata: {"status":"Completed"}\n\n')

    # no worker: the location recorded with the timer, and the source around it
    workers.kill(worker)
    page.goto(ui.url("/runs/sleeper-long"))
    current = page.locator("#run-current")
    expect(current).to_contain_text("Recorded when the run scheduled timer 1")
    expect(current.locator(".source-line.current")).to_contain_text(SLEEP_LINE)
    shot(page, "run-recorded-location")

    # a closed run the index has no history pages of (indexed before they were kept) and no
    # processor describes: read from where the partition was at the run's start
    index = visibility_url(ui.config.topic_prefix, None).removeprefix("sqlite://")
    with sqlite3.connect(index) as db:
        db.execute("DELETE FROM history_pages WHERE run_id = ?", (short_run,))
    url = ui.url(f"/runs/sleeper-short/{short_run}/history.jsonl")
    with urllib.request.urlopen(url, timeout=30) as response:
        (tmp_path / "again.jsonl").write_bytes(response.read())
    (events,) = read_history_file(tmp_path / "again.jsonl")
    assert [e.event_id for e in events] == [1, 2, 3, 4]


def test_a_50000_event_history_opens_and_scrolls_to_its_last_event(
    ui: RunningUi, page: Any, browser: Any
) -> None:
    write_long_history(ui.config, "long-run", "run-long-1", 50_000)
    stop = threading.Event()
    projector = Projector(ui.config)  # the UI's default index for the prefix
    thread = threading.Thread(target=projector.run, args=(stop,), daemon=True)
    thread.start()
    try:
        api = ui.url("/api/runs/long-run/run-long-1/history?from=1&size=1")

        def indexed() -> bool:
            try:
                with urllib.request.urlopen(api, timeout=10) as response:
                    return bool(json.load(response)["history_length"] == 50_000)
            except OSError:
                return False

        wait_until(indexed, timeout=120, interval=0.5, message="the run was not indexed")
    finally:
        stop.set()
        thread.join(30)

    # the projector kept where each page of 200 events starts: the last one is event 49801
    store = open_store(visibility_url(ui.config.topic_prefix, None), create=False)
    try:
        last_page = store.history_page("run-long-1")
    finally:
        store.close()
    assert last_page is not None and last_page.first_event_id == 49_801
    consumer = kafka.consumer(ui.config)
    try:
        topic = Topics(ui.config.topic_prefix).history
        consumer.assign([TopicPartition(topic, last_page.partition, last_page.offset)])
        msg = wait_until(lambda: consumer.poll(0.5), timeout=30)
        assert wire().event.decode(msg.value()).event_id == 49_801
    finally:
        consumer.close()

    page.goto(ui.url("/runs/long-run/run-long-1"))
    expect(page.locator("#run-status")).to_have_text("Completed")
    expect(page.locator("#history-count")).to_have_text("50000")
    rows = page.locator("#history-table .vrow")
    expect(rows.first).to_contain_text("WorkflowStarted")
    assert rows.count() < 500  # a virtual list: only the rows in view exist
    page.locator(".vviewport").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    last = page.locator('#history-table .vrow[data-event-id="50000"]')
    expect(last).to_contain_text("WorkflowCompleted")
    expect(last).to_be_visible()
    last.click()
    expect(page.locator(".vdetail")).to_contain_text('"event_id": 50000')
    shot(page, "run-long-history-end")

    # without JavaScript the table pages with plain links
    plain = browser.new_context(java_script_enabled=False)
    try:
        tab = plain.new_page()
        tab.goto(ui.url("/runs/long-run/run-long-1"))
        expect(tab.locator("table.events tbody tr")).to_have_count(200)
        tab.get_by_role("link", name="Last").click()
        expect(tab.locator("table.events tbody tr").last).to_contain_text("50000")
        expect(tab.locator(".pager")).to_contain_text("of 50000")
        expect(tab.locator(".pager")).to_contain_text("Events 49801")
        shot(tab, "run-long-history-no-js")
    finally:
        plain.close()
