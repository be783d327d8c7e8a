"""The Web UI's actions without a broker: every POST refuses a request without the page's
token or from another site, forms are checked before anything is sent, and the action
templates offer what makes sense for the run's status. (Starlette's test client, lifespan
not run: a request that got past the checks would need the Client and fail loudly.)
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from streams.kafka.config import KafkaConfig
from streams.kafka.dead_letters import DeadLetter, Republished
from streams.kafka.ownership import Group, Member, TaskQueue, WorkersView
from streams.settings import UiSettings
from streams.ui import create_app
from streams.ui.actions import (
    InputError,
    each_bounded,
    json_arguments,
    open_runs_of,
    read_inputs,
    shown,
)
from streams.ui.context import Ui
from streams.ui.security import CSRF_COOKIE
from streams.ui.workers import Snapshot, decode_value, workers_context
from streams.visibility.query import compile_filter
from streams.visibility.store import open_store
from streams.wire import wire
from streams.wire.commands import Command, SignalWorkflow
from tests.run_pages import fill_varied

CONFIG = KafkaConfig(bootstrap="127.0.0.1:1", topic_prefix="ui-test.")
LOCAL = "http://127.0.0.1:8233"  # the UI without sign-in answers to loopback names only
TOKEN = "t" * 43

RUN = "/runs/order-42/run-1"
POSTS = [
    *(f"{RUN}/{a}" for a in ("signal", "query", "update", "cancel", "terminate", "reset",
                             "unblock")),
    *(f"{RUN}/activities/3/{a}" for a in ("retry", "pause", "unpause")),
    "/batch/cancel",
    "/batch/terminate",
    "/dead-letters/0/5/republish",
]  # fmt: skip


def client() -> TestClient:
    c = TestClient(create_app(CONFIG, UiSettings()), follow_redirects=False, base_url=LOCAL)
    c.cookies.set(CSRF_COOKIE, TOKEN)
    return c


@pytest.mark.parametrize("path", POSTS)
def test_every_action_refuses_a_request_without_the_token(path: str) -> None:
    c = client()
    response = c.post(path, data={"name": "approve", "reason": "x"})
    assert response.status_code == 403
    assert "security token" in response.text
    wrong = c.post(path, data={"csrf_token": "x" * 43, "name": "approve"})
    assert wrong.status_code == 403


@pytest.mark.parametrize("path", POSTS)
def test_every_action_refuses_a_request_from_another_site(path: str) -> None:
    response = client().post(
        path,
        data={"csrf_token": TOKEN, "name": "approve"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert "evil.example" in response.text


def test_invalid_json_arguments_are_refused_before_anything_is_sent() -> None:
    c = client()
    # from the page's script: a fragment saying what is wrong (the Client is never asked:
    # it does not exist here, so reaching it would be a server error)
    response = c.post(
        f"{RUN}/signal",
        data={"name": "approve", "args": "{not json"},
        headers={"X-Everflow-CSRF": TOKEN},
    )
    assert response.status_code == 400
    assert 'role="alert"' in response.text and "not valid JSON" in response.text
    # a plain form post: back to the run page with the error
    plain = c.post(f"{RUN}/update", data={"csrf_token": TOKEN, "name": "x", "args": "[1,"})
    assert plain.status_code == 303
    assert plain.headers["location"].startswith(f"{RUN}?error=the+arguments+are+not+valid+JSON")


def test_a_missing_name_or_a_bad_event_id_is_refused() -> None:
    c = client()
    headers = {"X-Everflow-CSRF": TOKEN}
    no_name = c.post(f"{RUN}/query", data={"name": " "}, headers=headers)
    assert no_name.status_code == 400 and "give the query&#39;s name" in no_name.text
    for bad in ("0", "-3", "seven", "", "\u00b2", "\u0663", "1\u00b2"):
        reset = c.post(f"{RUN}/reset", data={"event_id": bad}, headers=headers)
        assert reset.status_code == 400 and "whole number from 1" in reset.text


def test_a_batch_with_an_empty_filter_needs_all_runs_ticked() -> None:
    c = client()
    response = c.post("/batch/terminate", data={"query": " "}, headers={"X-Everflow-CSRF": TOKEN})
    assert response.status_code == 400 and "tick" in response.text and "all runs" in response.text
    plain = c.post("/batch/cancel", data={"csrf_token": TOKEN, "query": ""})
    assert plain.status_code == 303 and plain.headers["location"].startswith("/?error=")


def test_json_arguments_one_value_or_an_array_of_them() -> None:
    assert json_arguments("") == []
    assert json_arguments('"alice"') == ["alice"]
    assert json_arguments('["alice", 3]') == ["alice", 3]
    assert json_arguments("[[1, 2]]") == [[1, 2]]
    assert json_arguments('{"a": 1}') == [{"a": 1}]
    with pytest.raises(InputError, match="not valid JSON"):
        json_arguments("alice")
    assert read_inputs("reset", {"event_id": "7", "reason": " r "}).event_id == 7
    assert read_inputs("signal", {"name": "add", "args": "5"}).args == (5,)
    # answers: text as it is (its lines kept), anything else as indented JSON
    assert shown("at line 3\nat line 9") == "at line 3\nat line 9"
    assert shown({"step": 2}) == '{\n  "step": 2\n}'



# ---- the templates -----------------------------------------------------------------------------
@dataclass
class Pending:
    activity_id: int
    activity_type: str
    attempt: int


def render(template: str, **context: Any) -> str:
    ui = Ui(CONFIG, UiSettings())
    return ui.templates.get_template(template).render({"csrf_token": TOKEN, **context})


def run_actions(status: str, history_length: int = 12, query_names: list[str] | None = None) -> str:
    return render(
        "actions_run.html",
        workflow_id="order/42",
        run_id="run-1",
        status=status,
        pending_activities=[Pending(5, "charge", 2)],
        paused_activities=set(),
        history_length=history_length,
        query_names=query_names or [],
    )


def forms(html: str) -> set[str]:
    return set(re.findall(r'id="action-(\w+)"', html))


def test_a_running_run_offers_every_action_but_unblock() -> None:
    html = run_actions("Running", query_names=["progress", "__stack_trace"])
    assert forms(html) == {"signal", "query", "update", "cancel", "terminate", "reset"}
    # the workflow ID is one path segment; every change is confirmed first
    assert 'action="/runs/order%2F42/run-1/signal"' in html
    assert html.count("data-confirm=") == 5  # all but the query, which changes nothing
    assert f'value="{TOKEN}"' in html
    assert 'max="12"' in html and 'min="1"' in html
    assert '<option value="progress">progress</option>' in html
    assert read_inputs("query", {"name": "", "name_choice": "progress"}).name == "progress"
    assert read_inputs("query", {"name": "other", "name_choice": "progress"}).name == "other"
    assert 'name="name" required' not in html.split('id="action-query"')[1].split("</form>")[0]
    assert 'placeholder="__stack_trace"' in run_actions("Running")


def test_a_blocked_run_offers_unblock_and_no_update() -> None:
    html = run_actions("Blocked")
    assert forms(html) == {"unblock", "signal", "query", "cancel", "terminate", "reset"}
    assert "updates cannot run" in html


@pytest.mark.parametrize(
    "status", ["Completed", "Failed", "Canceled", "Terminated", "TimedOut", "ContinuedAsNew"]
)
def test_a_closed_run_offers_only_query_and_reset_and_says_why(status: str) -> None:
    html = run_actions(status)
    assert forms(html) == {"query", "reset"}
    assert f"This run is {status}" in html and "need an open run" in html


def test_no_reset_without_events() -> None:
    html = run_actions("Running", history_length=0)
    assert 'name="event_id"' not in html and "nothing to reset to" in html


def test_activity_buttons_follow_whether_it_is_paused() -> None:
    macro = (
        '{% from "actions_macros.html" import activity_buttons %}'
        "{{ activity_buttons('wf', 'r', 4, paused, token) }}"
    )
    ui = Ui(CONFIG, UiSettings())
    running = ui.templates.from_string(macro).render(paused=False, token=TOKEN)
    assert "/runs/wf/r/activities/4/retry" in running and "/activities/4/pause" in running
    assert "/activities/4/unpause" not in running and running.count("data-confirm=") == 2
    paused = ui.templates.from_string(macro).render(paused=True, token=TOKEN)
    assert "/activities/4/unpause" in paused and "/activities/4/pause\"" not in paused


def test_the_batch_form_counts_the_runs_and_asks_for_all_runs_without_a_filter() -> None:
    html = render("actions_batch.html", query="WorkflowType = 'Charge'", total=12)
    assert "Terminate 12 runs matching WorkflowType = &#39;Charge&#39;?" in html
    assert 'name="all"' not in html
    everything = render("actions_batch.html", query="", total=40)
    assert "Cancel 40 runs matching ALL RUNS" in everything
    assert everything.count('name="all" value="yes" required') == 2


# ---- workers and dead letters, the parts that need no broker ------------------------------------
RESTORE = {"partition": 0, "runs_open": 2, "runs_indexed": 5, "snapshot_records": 4,
           "snapshot_bytes": 100, "tail_records": 6, "tail_bytes": 90, "timers": 1,
           "waited_s": 0.0, "seconds": 0.25}  # fmt: skip


def test_workers_context_splits_processors_from_runners_and_adds_reports() -> None:
    view = WorkersView(
        groups=[
            Group("p.workflow-processor", "p.commands", "stable",
                  [Member("everflow-wp-w1", "/10.0.0.1", [0, 1], 3)], {0: 3, 1: 0}),
            Group("p.activities.q", "p.tasks.q", "stable",
                  [Member("runner", "/h", [0], 0)], {0: 0}),
        ],
        statuses=[{"instance_id": "w1", "runs_loaded": 2, "runs_known": 9, "age_s": 1.5,
                   "pid": 7, "restore_reports": [RESTORE]}],
        task_queues=[TaskQueue("q", "p.tasks.q", 1, {0: 0}), TaskQueue("idle", "p.tasks.idle", 0,
                                                                       {0: 4, 1: 1})],
    )  # fmt: skip
    context = workers_context(view, "")
    assert [p["client_id"] for p in context["processors"]] == ["everflow-wp-w1"]
    assert context["processors"][0]["report"]["runs_known"] == 9
    assert context["processors"][0]["partitions"] == [(0, 3), (1, 0)]
    assert [r["client_id"] for r in context["runners"]] == ["runner"]
    assert context["restores"] == [{"instance_id": "w1", **RESTORE}]
    html = render("workers_body.html", **context)
    assert "p0 · 3" in html and "2 / 9" in html and 'data-queue="idle"' in html
    assert view.to_dict()["task_queues"][1]["total"] == 5


def test_the_dead_letters_page_refuses_a_bad_page_start() -> None:
    response = client().get("/dead-letters?start=-1")
    assert response.status_code == 400 and "whole number" in response.text
    for digits in ("\u00b2", "\u0663", "1\u00b2"):  # digits to str.isdigit, not to int
        response = client().get("/dead-letters", params={"start": digits})
        assert response.status_code == 400 and "whole number" in response.text


def letter(value: bytes | None, source: str = "ui-test.commands") -> DeadLetter:
    headers = (("everflow.reason", b"x"), ("trace", b"abc"))
    when = datetime(2026, 1, 2, tzinfo=UTC)
    return DeadLetter(1, 9, when, "poison: bad bytes", source, 2, 33, b"order-42", value, headers)


def test_a_dead_letter_is_decoded_when_it_is_an_everflow_message() -> None:
    ui = Ui(CONFIG, UiSettings())
    body = SignalWorkflow("approve", [], None, "client-1")
    raw = wire().command.encode(Command("c-1", "order-42", 5, body))
    text, kind = decode_value(letter(raw), ui.topics, ui.converter)
    assert kind == "command" and '"approve"' in text
    garbage, kind = decode_value(letter(b"\xff\x00garbage"), ui.topics, ui.converter)
    assert kind.startswith("not an Everflow message") and garbage.startswith("hex ff 00")
    plain, kind = decode_value(letter(b"hello", "ui-test.other"), ui.topics, ui.converter)
    assert (plain, kind) == ("hello", "raw")
    assert letter(b"").other_headers == (("trace", b"abc"),)


def test_the_dead_letters_page_shows_reason_source_and_re_publication() -> None:
    from streams.ui.workers import shown_letter

    ui = Ui(CONFIG, UiSettings())
    fixed = DeadLetter(**{**{f: getattr(letter(b"x"), f) for f in DeadLetter.__slots__},
                          "republished": (Republished(datetime(2026, 1, 3, tzinfo=UTC),
                                                      "ui-test.commands/2/40"),)})  # fmt: skip
    shown = [shown_letter(d, ui.topics, ui.converter) for d in (letter(b"x"), fixed)]

    @dataclass
    class Listing:
        start: int = 0
        total: int = 2
        capped: bool = False

    html = render("dead_letters.html", page="dead_letters", prefix="p", navigation=(),
                  request=None, error="", letters=shown, listing=Listing(), done="",
                  failure="", page_size=25)  # fmt: skip
    assert html.count("poison: bad bytes") == 2
    assert "ui-test.commands partition 2 offset 33" in html
    assert "re-published at 2026-01-03 00:00:00.000 UTC" in html
    assert 'name="force" value="yes"' in html and html.count("/dead-letters/1/9/republish") == 2


def test_the_action_scripts_and_styles_are_packaged_and_name_no_other_site() -> None:
    for name in ("actions.js", "actions.css"):
        body = client().get(f"/static/{name}").text
        assert body and "http://" not in body and "https://" not in body


def test_one_workers_snapshot_serves_every_page_and_stream_asking_at_once() -> None:
    reads = 0

    async def read() -> int:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0)  # others ask meanwhile: they wait for this read, not start one
        return reads

    async def ask(snapshot: Snapshot[int], times: int) -> list[int]:
        together = await asyncio.gather(*(snapshot.get() for _ in range(times)))
        return [*together, await snapshot.get()]

    shared = Snapshot(read, max_age=3600)
    assert asyncio.run(ask(shared, 20)) == [1] * 21 and reads == 1
    reads = 0
    always = Snapshot(read, max_age=0)  # too old at once: each turn reads again
    answers = asyncio.run(ask(always, 3))
    assert reads == 4 and answers[-1] == 4


def test_a_batch_lists_only_the_open_runs_of_its_filter_whatever_its_order(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "ix.sqlite"))
    fill_varied(store)
    types = store.attribute_types()

    def statuses(query: str) -> list[str]:
        f = compile_filter(query, dialect="sqlite", attribute_types=types)
        return [r.status for r in store.list_runs(f.where, f.params, f.order_by, limit=10_000)]

    for query in ("WorkflowType = 'Order' ORDER BY HistoryLength DESC", "ORDER BY CloseTime",
                  "ExecutionStatus = 'Completed' OR HistoryLength > 3", ""):  # fmt: skip
        narrowed = statuses(open_runs_of(query))
        where = query.split("ORDER BY")[0].strip()
        everything = statuses(where)
        assert narrowed and set(narrowed) <= {"Running", "Blocked"}
        assert sorted(narrowed) == sorted(s for s in everything if s in ("Running", "Blocked"))


def test_a_batch_acts_on_a_few_runs_at_a_time_and_lists_no_further_ahead() -> None:
    listed = finished = in_flight = most = 0
    seen: list[int] = []

    async def runs() -> AsyncIterator[int]:
        nonlocal listed
        for n in range(100):
            assert listed - finished <= 5  # the listing waits while 4 are in flight
            listed += 1
            yield n

    async def act(n: int) -> None:
        nonlocal finished, in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        for _ in range(n % 3 + 1):
            await asyncio.sleep(0)
        seen.append(n)
        in_flight -= 1
        finished += 1

    assert asyncio.run(each_bounded(runs(), 4, act)) == 100
    assert most == 4 and sorted(seen) == list(range(100))
