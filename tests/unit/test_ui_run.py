"""The run page's pure parts: payloads shown (and undecodable ones named), what a run waits
on, the compact grouping, the timeline's geometry, the stack and the recorded location, the
page's model (attempt N of M), the history page table's fold and store, and the page's
templates rendered from a model."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.testclient import TestClient

from processors.visibility.fold import fold, starts_page
from streams.kafka.config import KafkaConfig
from streams.payload import DataConverter, Payload, to_payload
from streams.retry import RetryPolicy
from streams.settings import UiSettings
from streams.ui import create_app
from streams.ui.context import Ui
from streams.ui.history import (
    blocked,
    compact,
    parse_stack,
    pending_timers,
    recorded_location,
    show_payload,
    source_lines,
    timeline,
)
from streams.ui.history_pages import HistoryReader
from streams.ui.run import CurrentLine, RunPages
from streams.ui.run_model import RunFacts, build_view
from streams.visibility.records import HistoryPage, RunRow, WorkflowExecution
from streams.visibility.schema import PAGE_EVENTS
from streams.visibility.store import open_store
from streams.wire.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityHeartbeatRecorded,
    ActivityRetried,
    ActivityScheduled,
    ActivityStarted,
    ChildWorkflowInitiated,
    EventAttributes,
    HistoryEvent,
    SignalReceived,
    TimerFired,
    TimerStarted,
    WorkflowBlocked,
    WorkflowCompleted,
    WorkflowStarted,
    WorkflowUnblocked,
)
from streams.wire.records import Failure, SourceLocation

T0 = 1_767_225_600_000
HERE = SourceLocation(__file__, 30, "run")


def history(*attributes: EventAttributes, step: int = 1000) -> list[HistoryEvent]:
    return [HistoryEvent("wf-1", "r-1", i + 1, T0 + i * step, a) for i, a in enumerate(attributes)]


def scheduled(activity_id: int = 1, maximum: int = 100) -> ActivityScheduled:
    policy = RetryPolicy(maximum_attempts=maximum)
    return ActivityScheduled(
        activity_id, "charge", "q", [to_payload(5)], 1000, None, policy, source=HERE
    )


def started() -> WorkflowStarted:
    return WorkflowStarted("Transfer", "q", [to_payload({"amount": 5})], "cmd")


def failure(message: str) -> Failure:
    return Failure(message, "ConnectionError", stack="Traceback…\nConnectionError: " + message)


def facts(**changes: object) -> RunFacts:
    values: dict[str, object] = dict(
        workflow_id="wf-1", run_id="r-1", workflow_type="Transfer", task_queue="q",
        status="Running", start_time=T0, close_time=None, history_length=0,
    )  # fmt: skip
    values.update(changes)
    return RunFacts(**values)  # type: ignore[arg-type]


# ---- payloads ---------------------------------------------------------------------------------


def test_a_payload_is_pretty_json_and_an_undecodable_one_is_named_not_raised() -> None:
    converter = DataConverter()
    shown = show_payload(converter, to_payload({"a": [1, 2]}))
    assert shown == '{\n  "a": [\n    1,\n    2\n  ]\n}'
    sealed = Payload(b"\x00" * 48, {"encoding": b"binary/encrypted"})
    assert show_payload(converter, sealed) == (
        "encrypted or undecodable payload (encoding: binary/encrypted, 48 bytes)"
    )
    broken = Payload(b"{not json", {"encoding": b"json/plain"})
    assert "undecodable payload (encoding: json/plain, 9 bytes)" in show_payload(converter, broken)


# ---- what the run waits on --------------------------------------------------------------------


def test_pending_timers_are_those_started_and_not_fired() -> None:
    events = history(
        started(),
        TimerStarted(1, T0 + 60_000, HERE),
        TimerStarted(2, T0 + 5_000),
        TimerFired(2),
    )
    timers = pending_timers(events)
    assert [(t.timer_id, t.fire_at, t.source) for t in timers] == [(1, T0 + 60_000, HERE)]
    assert pending_timers([*events, *history(WorkflowCompleted(to_payload(1)))]) == []


def test_blocked_is_the_last_block_not_lifted() -> None:
    block = WorkflowBlocked("non-determinism", failure("replayed TimerStarted"))
    assert blocked(history(started(), block)) is not None
    assert blocked(history(started(), block)).reason == "non-determinism"  # type: ignore[union-attr]
    assert blocked(history(started(), block, WorkflowUnblocked())) is None


def test_the_view_shows_attempt_n_of_m_the_last_failure_with_stack_and_heartbeat() -> None:
    events = history(
        started(),
        scheduled(),
        ActivityStarted(1, 1),
        ActivityAttemptFailed(1, 1, failure("gateway down (1)"), T0 + 3000),
        ActivityStarted(1, 2),
        ActivityHeartbeatRecorded(1, 2, [to_payload({"done": 3})]),
        ActivityAttemptFailed(1, 2, failure("gateway down (2)"), T0 + 90_000),
    )
    view = build_view(facts(), events, False, DataConverter())
    (card,) = view.activities
    assert card.of == "3 of 100"
    assert card.activity.last_failure == "gateway down (2)"
    assert card.failure_stack.endswith("ConnectionError: gateway down (2)")
    assert card.heartbeat is not None and '"done": 3' in card.heartbeat.details
    assert view.status == "Running"
    assert '"amount": 5' in view.input
    endless = history(started(), scheduled(maximum=0))
    unlimited = build_view(facts(), endless, False, DataConverter())
    assert unlimited.activities[0].of == "1 of unlimited"


def test_a_closed_run_shows_its_result_and_no_pending_work() -> None:
    events = history(started(), scheduled(), WorkflowCompleted(to_payload("done")))
    view = build_view(facts(history_length=2), events, False, DataConverter())
    assert view.status == "Completed"
    assert view.result == '"done"'
    assert view.activities == []
    assert view.history_length == 3


# ---- compact and timeline ---------------------------------------------------------------------


def test_compact_groups_each_activity_timer_child_and_signal_name() -> None:
    events = history(
        started(),
        scheduled(),
        ActivityStarted(1, 1),
        ActivityAttemptFailed(1, 1, failure("boom"), T0 + 3000),
        ActivityRetried(1, 2),
        ActivityCompleted(1, 2, to_payload("ok")),
        TimerStarted(1, T0 + 9000),
        SignalReceived("approve"),
        SignalReceived("approve"),
        ChildWorkflowInitiated(1, "child-1", "Ship", "q"),
        TimerFired(1),
    )
    rows = {r.kind: r for r in compact(events)}
    assert rows["activity"].steps == [
        "scheduled", "started #1", "failed #1", "retried #2", "completed"
    ]  # fmt: skip
    assert (rows["activity"].attempts, rows["activity"].state) == (2, "completed")
    assert rows["activity"].failure == "boom"
    assert (rows["timer"].steps, rows["timer"].state) == (["started", "fired"], "fired")
    assert rows["signal"].steps == ["received 2 times"]
    assert rows["child"].label == "Ship child-1" and rows["child"].state == "pending"
    assert [r.kind for r in compact(events)] == ["activity", "timer", "signal", "child"]


def test_the_timeline_has_a_bar_per_attempt_and_timer_over_the_runs_span() -> None:
    events = history(
        started(),  # t=0 s
        scheduled(),  # 1 s
        ActivityAttemptFailed(1, 1, failure("boom"), T0 + 2500),  # 2 s
        ActivityRetried(1, 2),  # 3 s
        ActivityCompleted(1, 2, to_payload("ok")),  # 4 s
        TimerStarted(1, T0 + 9000),  # 5 s
        TimerFired(1),  # 6 s
        WorkflowCompleted(to_payload("ok")),  # 7 s
    )
    t = timeline(events, now=T0 + 60_000)
    assert (t.start, t.end) == (T0, T0 + 7000)
    assert t.lanes == ["charge #1", "timer 1"]
    first, second, timer = sorted(t.bars, key=lambda b: b.start)
    assert (first.lane, first.failed, first.left, first.width) == (0, True, 14.286, 14.286)
    assert (second.lane, second.failed, second.left, second.width) == (0, False, 42.857, 14.286)
    assert (timer.lane, timer.kind, timer.left, timer.width) == (1, "timer", 71.429, 14.286)
    open_run = timeline(history(started(), scheduled()), now=T0 + 10_000)
    (bar,) = open_run.bars
    assert bar.end is None and (bar.left, bar.width) == (10.0, 90.0)


# ---- where the code stands --------------------------------------------------------------------


def test_the_stack_answer_is_parsed_and_its_source_read_around_the_line() -> None:
    text = (
        f"{__file__}:12 in run\n    await self.step()\n"
        f"{__file__}:40 in step\n    await workflow.sleep(1)\n\n"
        f"{__file__}:50 in handler\n    await workflow.wait_condition(lambda: self.go)"
    )
    tasks = parse_stack(text)
    assert [[(f.line, f.function) for f in t] for t in tasks] == [
        [(12, "run"), (40, "step")], [(50, "handler")]
    ]  # fmt: skip
    assert tasks[0][1].source == "await workflow.sleep(1)"
    line = CurrentLine(tasks, None, "")
    assert line.awaits == [
        "await workflow.sleep(1)", "await workflow.wait_condition(lambda: self.go)"
    ]  # fmt: skip
    current = [s for s in line.source if s.current]
    assert current[0].number == 40
    assert source_lines("/no/such/file.py", 3) == []


def test_the_recorded_location_is_the_latest_commands() -> None:
    timer_at = SourceLocation("app.py", 77, "run")
    events = history(started(), scheduled(), TimerStarted(1, T0 + 5000, timer_at))
    found = recorded_location(events)
    assert found is not None
    assert (found.event_id, found.command, found.source) == (3, "timer 1", timer_at)
    assert recorded_location(history(started())) is None


# ---- the history page table ------------------------------------------------------------------


def test_every_page_events_first_event_starts_a_page_once(tmp_path: Path) -> None:
    events = history(started(), *[TimerFired(i) for i in range(2 * PAGE_EVENTS + 5)], step=1)
    row: RunRow | None = None
    firsts = []
    for event in events:
        after = fold(row, event)
        if starts_page(row, after, event):
            firsts.append(event.event_id)
        row = after
    assert firsts == [1, PAGE_EVENTS + 1, 2 * PAGE_EVENTS + 1]
    assert not starts_page(row, fold(row, events[0]), events[0])  # re-read: no page again
    orphan = HistoryEvent("wf-2", "r-2", 1, T0, TimerFired(1))
    assert not starts_page(None, fold(None, orphan), orphan)  # no row, no page

    store = open_store(f"sqlite://{tmp_path}/ix.sqlite")
    pages = [HistoryPage("r-1", 1, 2, 100), HistoryPage("r-1", 201, 2, 900)]
    store.write_batch([], {}, {("history", 2): 1000}, pages=pages)
    store.write_batch([], {}, {("history", 2): 1000}, pages=pages[1:])  # idempotent
    assert store.history_page("r-1", 1) == pages[0]
    assert store.history_page("r-1", 200) == pages[0]
    assert store.history_page("r-1", 5000) == pages[1]
    assert store.history_page("r-1") == pages[1]
    assert store.history_page("r-9", 1) is None
    store.clear()
    assert store.history_page("r-1") is None


# ---- templates --------------------------------------------------------------------------------


def test_the_run_page_renders_its_cards_from_a_model() -> None:
    ui = Ui(KafkaConfig(bootstrap="127.0.0.1:1", topic_prefix="t."), UiSettings(port=0))
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [],
                       "query_string": b""})  # fmt: skip
    events = history(
        started(),
        scheduled(),
        ActivityAttemptFailed(1, 1, failure("gateway down"), T0 + 90_000),
        TimerStarted(1, T0 + 60_000, HERE),
    )
    view = build_view(facts(), events, False, DataConverter())

    context = {
        **RunPages(ui).run_context(view, CurrentLine(None, recorded_location(events), "no worker")),
        "page": "run", "view_name": "table", "children": [], "rows": [], "first": 1,
        "page_size": 200, "compact": [], "timeline": None, "done": "Signal sent", "error": "",
    }  # fmt: skip
    html = ui.render(request, "run.html", context)
    assert "attempt 2 of 100" in html
    assert "gateway down" in html and "ConnectionError: gateway down" in html
    assert f'data-countdown-to="{T0 + 90_000}"' in html
    assert "Recorded when the run scheduled timer 1" in html
    assert 'role="status">Signal sent' in html
    assert 'id="run-actions"' in html


def test_a_blocked_run_with_an_encrypted_input_renders_its_reason_and_no_error() -> None:
    ui = Ui(KafkaConfig(bootstrap="127.0.0.1:1", topic_prefix="t."), UiSettings(port=0))
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [],
                       "query_string": b""})  # fmt: skip
    sealed = Payload(b"\x01" * 32, {"encoding": b"binary/encrypted"})
    events = history(
        WorkflowStarted("Transfer", "q", [sealed], "cmd"),
        WorkflowBlocked("non-determinism", failure("replayed TimerStarted at event 2")),
    )
    view = build_view(facts(), events, False, DataConverter())
    assert view.status == "Blocked"
    context = {
        **RunPages(ui).run_context(view, CurrentLine(None, None, "no worker")),
        "page": "run", "view_name": "compact", "children": [], "rows": [], "first": 1,
        "page_size": 200, "compact": compact(events), "timeline": None, "done": "",
        "error": "the run is not running",
    }  # fmt: skip
    html = ui.render(request, "run.html", context)
    assert "encrypted or undecodable payload (encoding: binary/encrypted, 32 bytes)" in html
    assert 'id="blocked-reason">non-determinism' in html
    assert "ConnectionError: replayed TimerStarted at event 2" in html  # its stack
    assert 'role="alert">the run is not running' in html
    assert 'class="status status-blocked"' in html


# ---- the routes, on a real index and no broker ------------------------------------------------

LOCAL = "http://127.0.0.1:8233"  # the UI without sign-in answers to loopback names only
NO_BROKER = KafkaConfig(bootstrap="127.0.0.1:1", topic_prefix="ui-run.")
CLOSED = RunRow("r-1", "wf-1", "Transfer", "q", "Completed", T0, 5, close_time=T0 + 5000)


def indexed(tmp_path: Path, *rows: RunRow) -> UiSettings:
    store = open_store(f"sqlite://{tmp_path}/ix.sqlite")
    store.write_batch(list(rows), {}, {("history", 0): 1})
    store.close()
    return UiSettings(visibility=f"sqlite://{tmp_path}/ix.sqlite")


def get(path: str, path_params: dict[str, str], query: bytes = b"") -> Request:
    return Request({"type": "http", "method": "GET", "path": path, "headers": [],
                    "query_string": query, "path_params": path_params})  # fmt: skip


@pytest.mark.timeout(30)
def test_the_live_stream_of_a_closed_run_it_has_caught_up_on_ends(tmp_path: Path) -> None:
    client = TestClient(create_app(NO_BROKER, indexed(tmp_path, CLOSED)), base_url=LOCAL)
    for seen in ("5", "99999"):  # the page's length, or past it (clamped): nothing to read
        response = client.get(f"/live/runs/wf-1/r-1?seen={seen}")
        assert response.status_code == 200
        assert 'event: end\ndata: {"status":"Completed"}' in response.text


def test_history_positions_are_checked_and_clamped_never_a_500(tmp_path: Path) -> None:
    client = TestClient(create_app(NO_BROKER, indexed(tmp_path, CLOSED)), base_url=LOCAL)
    for path in (
        "/api/runs/wf-1/r-1/history?from=99999999999999999999",  # past BIGINT
        "/api/runs/wf-1/r-1/history?from=²",  # a digit to str.isdigit, not to int()
        "/api/runs/wf-1/r-1/history?from=-3",
        "/api/runs/wf-1/r-1/history?size=1e9",
        "/live/runs/wf-1/r-1?seen=-1e30",
        "/runs/wf-1/r-1?from=%D9%A3",  # an Arabic-Indic 3
    ):
        response = client.get(path)
        assert response.status_code == 400, path
        assert "is not a whole number" in response.text
    past = client.get("/api/runs/wf-1/r-1/history?from=999999999999999999")
    assert past.status_code == 200  # past the run's end: no events, and nothing read
    assert past.json() == {"history_length": 5, "events": []}


def test_a_history_that_cannot_be_read_is_said_on_the_page_and_refused_as_a_download(
    tmp_path: Path,
) -> None:
    ui = Ui(NO_BROKER, indexed(tmp_path, CLOSED))
    pages = RunPages(ui)
    pages.loader.reader = HistoryReader(NO_BROKER, metadata_timeout=0.2)
    ids = {"workflow_id": "wf-1", "run_id": "r-1"}
    try:
        page = asyncio.run(pages.run_page(get("/runs/wf-1/r-1", ids)))
        assert page.status_code == 200
        html = bytes(page.body).decode()
        assert 'id="history-error" role="alert">history unavailable: cannot read the' in html
        assert 'class="status status-completed"' in html  # the rest of the page is there
        for download in (pages.download_json, pages.download_avro):
            with pytest.raises(HTTPException) as refused:  # before any header goes out
                asyncio.run(download(get("/runs/wf-1/r-1/history.jsonl", ids)))
            assert refused.value.status_code == 503
            assert refused.value.detail.startswith("history unavailable: ")
        api = asyncio.run(pages.history_api(get("/api/runs/wf-1/r-1/history", ids)))
        assert api.status_code == 503
    finally:
        pages.loader.reader.close()
        asyncio.run(ui.close())


def test_kafka_reads_run_on_the_readers_own_threads() -> None:
    ui = Ui(NO_BROKER, UiSettings())
    loader = RunPages(ui).loader
    try:
        name = asyncio.run(loader.on_reader(lambda: threading.current_thread().name))
    finally:
        loader.reader.close()
    assert name.startswith("ui-history")


def test_a_live_swap_keeps_the_children_list() -> None:
    ui = Ui(NO_BROKER, UiSettings())
    child = WorkflowExecution(
        "child-7", "r-7", "Refund", "q", "Running", datetime.fromtimestamp(T0 / 1000, UTC),
        None, None, 2, "wf-1", "r-1", {},
    )  # fmt: skip
    view = build_view(facts(), history(started()), False, DataConverter())
    swaps = RunPages(ui).swaps(get("/", {}), view, [child])
    summary = next(s["html"] for s in swaps if s["id"] == "run-summary")
    assert "Children" in summary and "child-7" in summary


def test_source_is_shown_only_from_python_files_and_read_fresh(tmp_path: Path) -> None:
    assert source_lines("/proc/self/environ", 1) == []
    assert source_lines("/proc/self/cwd/" + Path(__file__).name, 3) == []  # not via /proc
    secret = tmp_path / "secret.txt"
    secret.write_text("TOKEN=1\n")
    assert source_lines(str(secret), 1) == []
    (tmp_path / "link.py").symlink_to(secret)  # a .py name that is not a Python file
    assert source_lines(str(tmp_path / "link.py"), 1) == []
    (tmp_path / "dir.py").mkdir()
    assert source_lines(str(tmp_path / "dir.py"), 1) == []

    code = tmp_path / "app.py"
    code.write_text("a = 1\nb = 2\n")
    assert [s.text for s in source_lines(str(code), 2) if s.current] == ["b = 2"]
    code.write_text("a = 1\nb = 'redeployed'\nc = 3\n")  # a new mtime and size
    assert [s.text for s in source_lines(str(code), 2) if s.current] == ["b = 'redeployed'"]


def test_the_waits_card_says_when_it_read_only_the_head_and_tail_of_a_long_history() -> None:
    ui = Ui(NO_BROKER, UiSettings())
    view = build_view(facts(history_length=9000), history(started()), True, DataConverter())
    html = ui.render(get("/", {}), "run_waits.html", RunPages(ui).run_context(view, None))
    assert "read from the first event and the last events of this long history" in html
