"""The Workers and Dead letters pages in a real browser, against a real worker and broker:
a worker's partitions are shown, and a poison record on `commands` is listed among the dead
letters with its reason, then re-published to where it came from (and shown as such).
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from streams import kafka
from tests.helpers import wait_until
from tests.integration.workers import WorkerProcesses
from tests.ui.conftest import RunningUi, shot

pytestmark = pytest.mark.integration

QUEUE = "ui-workers"
APP = "tests.integration.apps.messages"
STARTUP_MS = 90_000  # a worker's first start: its group joins, then it restores


def test_a_workers_partitions_are_shown_and_a_poison_record_is_re_published(
    ui: RunningUi, workers: WorkerProcesses, page: Any
) -> None:
    workers.start("ui-w1", APP, task_queue=QUEUE)
    page.goto(ui.url("/workers"))
    processor = page.locator("#processors tr.processor")
    # the page follows live: the worker appears once its group has assigned it partitions
    expect(processor.locator(".partition")).to_have_count(4, timeout=STARTUP_MS)
    expect(processor.first).to_contain_text("ui-w1")
    expect(page.locator('#task-queues tr[data-queue="ui-workers"]')).to_be_visible()
    shot(page, "workers")
    twin = page.request.get(ui.url("/api/workers")).json()
    processors = [g for g in twin["groups"] if g["topic"] == ui.config.topic_prefix + "commands"]
    assert [sorted(m["partitions"]) for m in processors[0]["members"]] == [[0, 1, 2, 3]]
    assert "ui-workers" in [q["name"] for q in twin["task_queues"]]

    producer = kafka.producer(ui.config)
    producer.produce(ui.config.topic_prefix + "commands", b"\x00garbage, not a command",
                     b"poison-1", partition=2)  # fmt: skip
    assert producer.flush(30) == 0

    page.goto(ui.url("/dead-letters"))
    letter = page.locator("article.dead-letter").first

    def listed() -> bool:  # the processor dead-letters it within its next batch
        if letter.count():
            return True
        page.reload()
        return False

    wait_until(listed, timeout=60, interval=0.5, message="the poison record was not listed")
    expect(letter).to_contain_text("commands partition 2")
    expect(letter.locator(".reason")).to_contain_text("cannot decode")
    expect(letter).to_contain_text("poison-1")
    expect(letter).to_contain_text("not an Everflow message")
    shot(page, "dead-letters")

    letter.get_by_role("button", name="Re-publish").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("Re-publish this record to")
    dialog.get_by_role("button", name="Confirm").click()
    expect(letter.locator("[role=status]")).to_contain_text("re-published as")
    letter_id = letter.get_attribute("id")
    assert letter_id is not None
    _, partition, offset = letter_id.rsplit("-", 2)
    page.reload()
    republished = page.locator(f"#{letter_id}")
    expect(republished.locator(".republished")).to_contain_text("re-published at")
    expect(republished.get_by_role("button", name="Re-publish again")).to_be_visible()

    # still poison: it comes back as a new dead letter, listed first (newest first), and
    # says which dead letter it was re-published from
    articles = page.locator("article.dead-letter")

    def came_back() -> bool:
        if articles.count() >= 2:
            return True
        page.reload()
        return False

    wait_until(came_back, timeout=60, interval=0.5, message="the re-published record is back")
    expect(articles.first).not_to_have_id(letter_id)
    expect(articles.first).to_contain_text(f"dead-letters/{partition}/{offset}")
    shot(page, "dead-letters-republished")

    # a second re-publish is refused unless forced
    twice = page.evaluate(
        """async (path) => (await EF.post(path, new FormData())).html""",
        f"/dead-letters/{partition}/{offset}/republish",
    )
    assert "re-published already" in twice and 'role="alert"' in twice
