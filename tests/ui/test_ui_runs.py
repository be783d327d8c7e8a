"""The runs page in a real browser, over runs that real workers ran: a filter typed into the
box (its names suggested as you type) lists only the runs it matches, a status chip shows its
count and its runs, a heading sorts the table both ways, and a run started while the page is
open appears in it without a reload; a view is saved in the browser and deleted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from playwright.sync_api import expect

from streams import Client
from streams.errors import VisibilityUnavailableError
from streams.kafka.config import KafkaConfig
from streams.settings import visibility_url
from streams.visibility.store import open_store
from tests.helpers import wait_until
from tests.integration.workers import WorkerProcesses, topics_for, with_client
from tests.ui.conftest import RunningUi, shot

pytestmark = pytest.mark.integration

APP = "tests.integration.apps.indexed"


def with_client_aside(config: KafkaConfig, body: Callable[[Client], Awaitable[Any]]) -> Any:
    """`with_client` on a thread of its own (Playwright's sync API owns this thread's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(with_client, config, body).result(60)


def start_runs(client: Client) -> Any:
    async def body() -> None:
        for i in range(2):
            await client.start_workflow("Greet", f"n{i}", id=f"greet-{i}", task_queue="indexed")
            await client.start_workflow("Waiter", id=f"waiter-{i}", task_queue="indexed")
        await client.start_workflow("Doomed", "no funds", id="doomed-0", task_queue="indexed")
        await client.start_workflow("Flaky", id="flaky", task_queue="indexed")

    return body()


def indexed_counts(url: str) -> dict[str, int]:
    try:
        store = open_store(url, create=False)
    except VisibilityUnavailableError:  # the projector has not created it yet
        return {}
    try:
        return store.count_runs(group_by_status=True).groups
    finally:
        store.close()


def test_the_runs_page_filters_counts_sorts_updates_live_and_saves_views(
    ui: RunningUi, workers: WorkerProcesses, page: Any
) -> None:
    config = topics_for(ui.config.bootstrap, ui.config.topic_prefix, "indexed")
    workers.start("w1", APP, task_queue="indexed")
    with_client_aside(config, start_runs)
    url = visibility_url(config.topic_prefix)
    wanted = {"Completed": 2, "Running": 3, "Failed": 1}
    wait_until(lambda: indexed_counts(url) == wanted, timeout=45, message="the runs are indexed")

    # a filter typed into the box, its first name completed from the suggestions
    page.goto(ui.url("/"))
    rows = page.locator("#runs-rows tr")
    expect(rows).to_have_count(6)
    box = page.get_by_label("Filter", exact=True)
    box.click()
    box.press_sequentially("WorkflowTy")
    expect(page.get_by_role("option", name="WorkflowType")).to_be_visible()
    shot(page, "runs-suggestions")
    box.press("Tab")
    expect(box).to_have_value("WorkflowType ")
    box.press_sequentially("= 'Waiter' AND ExecutionStatus = 'Running'")
    box.press("Enter")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("waiter-1")
    expect(rows.nth(1)).to_contain_text("waiter-0")
    expect(page.locator("#runs-chips a", has_text="Running")).to_contain_text("2")
    shot(page, "runs-filtered")

    # a status chip: its count, its runs, marked as the current one
    page.get_by_role("link", name="All", exact=True).first.click()
    expect(rows).to_have_count(6)
    completed = page.locator("#runs-chips a", has_text="Completed")
    expect(completed.locator(".count")).to_have_text("2")
    completed.click()
    expect(page.locator("#runs-chips a", has_text="Completed")).to_have_attribute(
        "aria-current", "true"
    )
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="greet-0")).to_have_count(1)
    expect(rows.filter(has_text="greet-1")).to_have_count(1)
    expect(rows.filter(has_text="Completed")).to_have_count(2)
    shot(page, "runs-chip-completed")

    # a heading sorts the rows, descending first, then ascending
    page.locator("#runs-chips a", has_text="All").click()
    expect(rows).to_have_count(6)
    page.get_by_role("link", name="Workflow ID").click()
    expect(page.get_by_role("columnheader", name="Workflow ID")).to_have_attribute(
        "aria-sort", "descending"
    )
    expect(rows.nth(0)).to_contain_text("waiter-1")
    expect(rows.nth(5)).to_contain_text("doomed-0")
    page.get_by_role("link", name="Workflow ID").click()
    expect(page.get_by_role("columnheader", name="Workflow ID")).to_have_attribute(
        "aria-sort", "ascending"
    )
    expect(rows.nth(0)).to_contain_text("doomed-0")
    expect(rows.filter(has_text="flaky").locator(".retrying")).to_be_visible()
    shot(page, "runs-sorted")

    # with the page open, a new run appears without a reload (the default order: newest first)
    page.goto(ui.url("/"))
    expect(rows).to_have_count(6)
    page.evaluate("window.stillTheSamePage = true")

    async def one_more(client: Client) -> None:
        await client.start_workflow("Waiter", id="waiter-live", task_queue="indexed")

    with_client_aside(config, one_more)
    expect(rows.nth(0)).to_contain_text("waiter-live")
    expect(rows).to_have_count(7)
    expect(page.locator("#runs-chips a", has_text="Running").locator(".count")).to_have_text("4")
    assert page.evaluate("window.stillTheSamePage") is True
    shot(page, "runs-live")

    # a built-in view, then a view saved in this browser: named, listed, opened, deleted
    page.get_by_role("link", name="Retrying", exact=True).click()
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_contain_text("flaky")
    page.get_by_placeholder("Name this view").fill("Gateway trouble")
    page.get_by_role("button", name="Save view").click()
    saved = page.locator("#saved-views").get_by_role("link", name="Gateway trouble")
    expect(saved).to_have_attribute("aria-current", "true")
    shot(page, "runs-saved-view")
    page.get_by_role("link", name="All", exact=True).first.click()
    expect(rows).to_have_count(7)
    saved.click()
    expect(rows).to_have_count(1)
    expect(page.get_by_label("Filter", exact=True)).to_have_value("ActivityAttempt >= 2")
    page.get_by_role("button", name="Delete the view Gateway trouble").click()
    expect(saved).to_have_count(0)
