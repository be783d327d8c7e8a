"""Acting on a run from its page, in a real browser, against a real worker and broker: a
signal typed in the form (JSON) reaches the run, Cancel in the confirmation sends nothing,
a reset starts a new run that the answer links to, and a pending activity's buttons pause
it and retry it.

These open the run page (`/runs/{workflow_id}/{run_id}`), which includes the actions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from playwright.sync_api import expect

from streams.client import Client
from streams.wire.events import ActivityPaused
from streams.wire.records import RunStatus
from tests.helpers import wait_until
from tests.integration.workers import WorkerProcesses, with_client
from tests.ui.conftest import RunningUi, shot

pytestmark = pytest.mark.integration

QUEUE = "ui-actions"
APP = "tests.integration.apps.messages"


def talk(ui: RunningUi, body: Callable[[Client], Awaitable[Any]]) -> Any:
    """`body(client)` on its own thread and loop (Playwright's sync API owns this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(with_client, ui.config, body).result(120)


def start_collector(ui: RunningUi, workflow_id: str) -> str:
    async def start(client: Client) -> str:
        handle = await client.start_workflow("Collector", id=workflow_id, task_queue=QUEUE)
        assert handle.run_id is not None
        return handle.run_id

    run_id: str = talk(ui, start)
    return run_id


def send(page: Any, form: str, **fields: str) -> None:
    """Fills the form's fields and submits it; the confirmation dialog is then open."""
    box = page.locator(f"#action-{form}")
    for name, value in fields.items():
        box.locator(f'[name="{name}"]').fill(value)
    box.locator("button[type=submit]").click()


def confirm(page: Any, answer: str) -> None:
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=answer).click()
    expect(dialog).to_be_hidden()


def test_a_signal_typed_in_the_form_reaches_the_run_and_cancel_sends_nothing(
    ui: RunningUi, workers: WorkerProcesses, page: Any
) -> None:
    workers.start("ui-actions-1", APP, task_queue=QUEUE)
    run_id = start_collector(ui, "collect-1")
    page.goto(ui.url(f"/runs/collect-1/{run_id}"))
    actions = page.locator("#run-actions")
    expect(actions.locator("#action-signal")).to_be_visible()
    expect(actions.locator("#action-unblock")).to_have_count(0)

    # Cancel in the confirmation: nothing is sent (the result below has no 99)
    send(page, "signal", name="add", args="99")
    expect(page.locator("#confirm-dialog .confirm-message")).to_contain_text(
        "Send this signal to collect-1?"
    )
    confirm(page, "Cancel")
    expect(page.locator("#signal-result")).to_be_empty()

    # what is not JSON is said at once, and the form is not sent
    page.locator('#action-signal [name="args"]').fill("{oops")
    expect(page.locator("#action-signal .json-error")).to_contain_text("Not valid JSON")
    page.locator("#action-signal button[type=submit]").click()
    expect(page.locator("#confirm-dialog")).to_be_hidden()

    send(page, "signal", name="add", args="7")
    confirm(page, "Confirm")
    expect(page.locator("#signal-result [role=status]")).to_contain_text(
        "Signal add sent to collect-1"
    )
    shot(page, "actions-signal")
    # a query's answer is shown decoded; an update the run does not know is refused, clearly
    send(page, "query", name="__stack_trace")
    answer = page.locator("#query-result [role=status]")
    expect(answer).to_contain_text("Query __stack_trace answered")
    expect(page.locator("#query-result pre")).to_contain_text("wait_condition")
    send(page, "update", name="no_such_update", args="1")
    confirm(page, "Confirm")
    expect(page.locator("#update-result [role=alert]")).to_contain_text("no_such_update")
    shot(page, "actions-query-update")
    send(page, "signal", name="finish", args="")
    confirm(page, "Confirm")
    expect(page.locator("#signal-result [role=status]")).to_contain_text("Signal finish sent")

    async def result(client: Client) -> Any:
        return await client.get_workflow_handle("collect-1").result(timeout=timedelta(seconds=60))

    assert talk(ui, result) == [7]


def test_a_reset_from_the_form_starts_a_new_run_and_links_to_it(
    ui: RunningUi, workers: WorkerProcesses, page: Any
) -> None:
    workers.start("ui-actions-2", APP, task_queue=QUEUE)
    run_id = start_collector(ui, "collect-2")
    page.goto(ui.url(f"/runs/collect-2/{run_id}"))
    send(page, "reset", event_id="1", reason="from the browser")
    expect(page.locator("#confirm-dialog .confirm-message")).to_contain_text("Reset collect-2?")
    confirm(page, "Confirm")
    link = page.locator("#reset-result a.action-link")
    expect(link).to_be_visible()
    href = link.get_attribute("href")
    assert href is not None and href.startswith("/runs/collect-2/")
    new_run = unquote(href.rsplit("/", 1)[1])
    assert new_run != run_id
    shot(page, "actions-reset")

    async def describe(client: Client) -> Any:
        return await client.get_workflow_handle("collect-2", new_run).describe()

    fresh = talk(ui, describe)
    assert (fresh.run_id, fresh.status) == (new_run, RunStatus.RUNNING)
    link.click()
    page.wait_for_url(ui.url(href))
    expect(page.locator("#run-actions #action-signal")).to_be_visible()

    # a batch terminate of what a filter matches, as the runs page sends it: the filter
    # matches both runs, the reset one (terminated by the reset) and the new one; only the
    # open one is acted on
    query = "WorkflowId = 'collect-2'"

    async def count(client: Client) -> dict[str, int]:
        return (await client.count_workflows(query, group_by_status=True)).groups

    wait_until(lambda: talk(ui, count) == {"Terminated": 1, "Running": 1}, timeout=60,
               interval=0.5)  # fmt: skip
    said = page.evaluate(
        """async (query) => {
            const form = new FormData();
            form.append("query", query);
            form.append("reason", "batch from the browser");
            return (await EF.post("/batch/terminate", form)).html;
        }""",
        query,
    )
    assert "1 runs matched: 1 terminated, 0 already closed, 0 failed." in said

    async def status(client: Client) -> Any:
        return (await client.get_workflow_handle("collect-2", new_run).describe()).status

    assert talk(ui, status) is RunStatus.TERMINATED


def test_an_activitys_pause_and_retry_buttons_hold_then_rerun_it(
    ui: RunningUi, workers: WorkerProcesses, page: Any, tmp_path: Path
) -> None:
    lock = tmp_path / "locked"
    lock.touch()  # the charge fails while the account is locked, retried without end
    files = {"EVERFLOW_REPAIR_LOCK": str(lock), "EVERFLOW_REPAIR_LOG": str(tmp_path / "log")}
    workers.start("ui-actions-3", "tests.integration.apps.repair", task_queue=QUEUE,
                  extra_env=files)  # fmt: skip

    async def start(client: Client) -> str:
        handle = await client.start_workflow("Checkout", "o-9", 0, id="o-9", task_queue=QUEUE)
        assert handle.run_id is not None
        return handle.run_id

    run_id = talk(ui, start)
    page.goto(ui.url(f"/runs/o-9/{run_id}"))
    pause = page.locator('form[action$="/activities/2/pause"] button')

    def shown() -> bool:  # the run page lists pending activities from the run index
        if pause.count():
            return True
        page.reload()
        return False

    wait_until(shown, timeout=60, interval=0.5, message="the charge is not shown pending")
    held: list[tuple[Any, Any]] = []

    def hold(route: Any) -> None:  # the server has answered; the page gets it when let go
        held.append((route, route.fetch()))

    page.route("**/activities/2/pause", hold)
    pause.click()
    expect(page.locator("#confirm-dialog .confirm-message")).to_contain_text(
        "Pause activity 2?"
    )
    confirm(page, "Confirm")
    # the change shows before the answer does (the live view swaps the activity's card in,
    # paused): the answer still lands in the section's result, not in the one swapped out
    expect(page.locator('form[action$="/activities/2/unpause"] button')).to_be_visible(
        timeout=30_000
    )
    route, answer = held[0]
    route.fulfill(response=answer)
    page.unroute("**/activities/2/pause")
    expect(page.locator("#activity-result [role=status]")).to_contain_text(
        "Activity 2 paused"
    )
    shot(page, "actions-activity")
    lock.unlink()  # the account is fixed: retry now, without waiting for an unpause
    page.locator('form[action$="/activities/2/retry"] button').click()
    confirm(page, "Confirm")
    expect(page.locator("#activity-result [role=status]")).to_contain_text(
        "Activity 2: its next attempt starts now"
    )

    async def result(client: Client) -> Any:
        return await client.get_workflow_handle("o-9").result(timeout=timedelta(seconds=60))

    assert talk(ui, result) == "reserved, charged"

    async def history(client: Client) -> list[Any]:
        return await client.get_workflow_handle("o-9").fetch_history()

    paused = [e.attributes for e in talk(ui, history) if isinstance(e.attributes, ActivityPaused)]
    assert [p.activity_id for p in paused] == [2]
