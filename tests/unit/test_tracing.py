"""Tracing (`streams.tracing`): the trace context a request carries is kept on the events it
causes and handed on to activity tasks and child starts; spans of client requests, workflow
steps and activity attempts form one tree, with workflow span IDs derived from run and event."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from processors.run.commands import handle_command
from processors.run.effects import Effects
from processors.run.state import Run
from processors.workflow_code.registry import Registry
from streams import activity, workflow
from streams.payload import DataConverter
from streams.tracing import (
    Tracing,
    WorkflowIdGenerator,
    carrier_of,
    headers_of,
    span_id,
    trace_ids,
    workflow_carrier,
)
from streams.wire.commands import (
    Command,
    CommandBody,
    CompleteActivity,
    QueryWorkflow,
    SignalWorkflow,
    StartWorkflow,
    UpdateWorkflow,
)
from streams.wire.events import (
    ActivityScheduled,
    ChildWorkflowInitiated,
    HistoryEvent,
    SignalReceived,
    WorkflowStarted,
)
from streams.wire.records import ActivityTask, ReplyBody

ROOT = Path(__file__).resolve().parents[2]
conv = DataConverter()
TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = {"traceparent": f"00-{TRACE}-b7ad6b7169203331-01", "tracestate": "vendor=x"}


@activity.defn
def charge(amount: int) -> str:
    return f"charged {amount}"


@workflow.defn
class Child:
    @workflow.run
    async def run(self) -> str:
        return "child"


@workflow.defn
class Order:
    def __init__(self) -> None:
        self.paid = False

    @workflow.run
    async def run(self) -> str:
        workflow.logger.info("order waiting for payment")
        await workflow.wait_condition(lambda: self.paid)
        await workflow.execute_activity(charge, 5, start_to_close_timeout=timedelta(seconds=5))
        await workflow.execute_child_workflow(Child, id="order-1-child")
        return "done"

    @workflow.signal
    def pay(self) -> None:
        self.paid = True


REG = Registry([Order, Child], [charge])


class Runs(dict[str, Run]):
    def history(self, run: Run) -> tuple[list[bytes], int]:
        return [], 0


class Outbox:
    def __init__(self) -> None:
        self.fx = Effects()

    def effects(self, run: Run) -> Effects:
        return self.fx

    def partition_effects(self, partition: int) -> Effects:
        return self.fx

    def reply(self, to: str | None, request_id: str, body: ReplyBody) -> None:
        pass


def send(runs: Runs, body: CommandBody, now: int, trace: dict[str, str] | None) -> Outbox:
    out = Outbox()
    command = Command(f"cmd-{now}", "order-1", now, body)
    handle_command(command, runs, 0, now, REG, out, trace)
    return out


def parent_span(carrier: dict[str, str]) -> int:
    return int(carrier["traceparent"].split("-")[2], 16)


@pytest.fixture
def spans() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=WorkflowIdGenerator())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider), exporter


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    found: dict[str, ReadableSpan] = {}
    for s in exporter.get_finished_spans():
        assert s.name not in found, f"{s.name} twice"
        found[s.name] = s
    return found


# ---- carriers ---------------------------------------------------------------------------------
def test_workflow_span_ids_are_derived_from_run_and_event() -> None:
    assert span_id("run-1", 3) == span_id("run-1", 3)
    assert len({span_id("run-1", 3), span_id("run-1", 4), span_id("run-2", 3)}) == 3
    carrier = workflow_carrier(PARENT, "run-1", 3)
    assert carrier == {
        "traceparent": f"00-{TRACE}-{span_id('run-1', 3):016x}-01",
        "tracestate": "vendor=x",
    }
    assert workflow_carrier({}, "run-1", 3) == {}
    assert workflow_carrier({"traceparent": "garbage"}, "run-1", 3) == {}


def test_a_carrier_travels_as_record_headers_and_back() -> None:
    headers = headers_of(PARENT)
    assert headers is not None
    assert carrier_of([*headers, ("other", b"x"), ("tracestate", None)]) == PARENT
    assert headers_of({}) is None and carrier_of(None) == {}


# ---- the core keeps and hands on the context ------------------------------------------------
def test_a_runs_trace_context_reaches_its_events_tasks_and_children() -> None:
    runs = Runs()
    out = send(runs, StartWorkflow("r-1", "Order", "q"), 1000, PARENT)
    [started] = out.fx.events
    assert isinstance(started.attributes, WorkflowStarted)
    assert started.attributes.trace == PARENT
    run_carrier = workflow_carrier(PARENT, "r-1", started.event_id)

    signal_trace = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}
    out = send(runs, SignalWorkflow("pay", []), 2000, signal_trace)
    signaled, scheduled = out.fx.events
    assert isinstance(signaled.attributes, SignalReceived)
    assert signaled.attributes.trace == signal_trace
    assert isinstance(scheduled.attributes, ActivityScheduled)
    assert scheduled.attributes.trace == run_carrier  # child of RunWorkflow
    [(_, task)] = out.fx.tasks
    task_trace = out.fx.task_traces[(task.run_id, task.activity_id, task.attempt)]
    assert task_trace == workflow_carrier(run_carrier, "r-1", scheduled.event_id)

    out = send(runs, CompleteActivity("r-1", 1, 1, conv.to_payload("ok")), 3000, None)
    initiated = next(e for e in out.fx.events if isinstance(e.attributes, ChildWorkflowInitiated))
    assert initiated.attributes.trace == run_carrier
    [start] = out.fx.commands
    assert out.fx.command_traces[start.command_id] == workflow_carrier(
        run_carrier, "r-1", initiated.event_id
    )


def test_an_untraced_run_carries_no_context_anywhere() -> None:
    runs = Runs()
    send(runs, StartWorkflow("r-1", "Order", "q"), 1000, None)
    out = send(runs, SignalWorkflow("pay", []), 2000, {})
    assert all(getattr(e.attributes, "trace", {}) == {} for e in out.fx.events)
    assert out.fx.task_traces == {} and out.fx.command_traces == {}


def test_a_restored_run_hands_on_the_same_context() -> None:
    runs = Runs()
    send(runs, StartWorkflow("r-1", "Order", "q"), 1000, PARENT)
    live = runs["order-1"]
    restored = Run("order-1", "r-1", 0, REG)
    for event in live.events:
        restored.apply(event)
    assert restored.trace == live.trace == workflow_carrier(PARENT, "r-1", 1)


# ---- spans ----------------------------------------------------------------------------------
def test_client_request_spans_are_named_as_temporals_and_their_context_is_in_the_headers(
    spans: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = spans
    bodies: list[CommandBody] = [
        StartWorkflow("r-1", "Order", "q"),
        SignalWorkflow("pay", []),
        QueryWorkflow("status", [], None, "c"),
        UpdateWorkflow("rename", [], "u-1", "c"),
    ]
    sent = []
    for body in bodies:
        with tracing.client_span("order-1", body) as headers:
            sent.append(carrier_of(headers))
    finished = exporter.get_finished_spans()
    names = [s.name for s in finished]
    assert names == [
        "StartWorkflow:Order",
        "SignalWorkflow:pay",
        "QueryWorkflow:status",
        "UpdateWorkflow:rename",
    ]
    for span, carrier in zip(finished, sent, strict=True):
        assert span.parent is None and span.kind is trace.SpanKind.CLIENT
        assert span.attributes is not None
        assert span.attributes["everflow.workflow_id"] == "order-1"
        context = span.get_span_context()
        flags = int(context.trace_flags)
        wanted = f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"
        assert carrier["traceparent"] == wanted
    with tracing.client_span("order-1", CompleteActivity("r", 1, 1, conv.to_payload(1))) as h:
        assert h is None  # not a user request: no span, no headers
    assert len(exporter.get_finished_spans()) == 4


def test_workflow_and_activity_spans_form_one_tree_with_derived_ids(
    spans: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = spans
    with tracing.client_span("order-1", StartWorkflow("r-1", "Order", "q")) as headers:
        start_carrier = carrier_of(headers)
    runs = Runs()
    events: list[HistoryEvent] = []
    events += send(runs, StartWorkflow("r-1", "Order", "q"), 1000, start_carrier).fx.events
    out = send(runs, SignalWorkflow("pay", []), 2000, None)
    events += out.fx.events
    tracing.workflow_spans(events)
    [(_, task)] = out.fx.tasks
    task_headers = headers_of(out.fx.task_traces[(task.run_id, task.activity_id, 1)])
    attempt = tracing.start_activity(task, task_headers)
    assert attempt is not None
    with tracing.activated(attempt):
        assert trace.get_current_span() is attempt
    tracing.end_activity(attempt, None)

    s = by_name(exporter)
    client, run = s["StartWorkflow:Order"], s["RunWorkflow:Order"]
    start_activity, run_activity = s["StartActivity:charge"], s["RunActivity:charge"]
    assert "HandleSignal:pay" not in s  # the signal carried no context
    assert {x.context.trace_id for x in s.values()} == {client.context.trace_id}
    assert run.parent is not None and run.parent.span_id == client.context.span_id
    assert run.context.span_id == span_id("r-1", 1)
    scheduled = next(e for e in events if isinstance(e.attributes, ActivityScheduled))
    assert start_activity.context.span_id == span_id("r-1", scheduled.event_id)
    assert start_activity.parent is not None
    assert start_activity.parent.span_id == run.context.span_id
    assert run_activity.parent is not None
    assert run_activity.parent.span_id == start_activity.context.span_id
    assert start_activity.attributes is not None and run_activity.attributes is not None
    assert start_activity.attributes["everflow.event_id"] == scheduled.event_id
    assert start_activity.attributes["everflow.activity_id"] == 1
    assert run_activity.attributes["everflow.attempt"] == 1
    assert run.start_time == run.end_time == 1000 * 1_000_000  # an instant at the event


@workflow.defn
class Account:
    def __init__(self) -> None:
        self.closed = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.closed)

    @workflow.signal
    def close(self) -> None:
        self.closed = True

    @workflow.update
    def rename(self, name: str) -> str:
        return name


def test_signal_and_update_handling_spans_are_children_of_the_senders_spans(
    spans: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = spans
    registry = Registry([Account], [])
    runs, events = Runs(), []
    carriers = []
    for n, body in enumerate(
        [
            StartWorkflow("r-1", "Account", "q"),
            UpdateWorkflow("rename", conv.to_payloads(["b"]), "u-1", "c"),
            SignalWorkflow("close", []),
        ]
    ):
        with tracing.client_span("acct-1", body) as headers:
            carriers.append(carrier_of(headers))
        out = Outbox()
        now = 1000 * (n + 1)
        handle_command(Command(f"c-{n}", "acct-1", now, body), runs, 0, now, registry, out,
                       carriers[-1])  # fmt: skip
        events += out.fx.events
    tracing.workflow_spans(events)
    s = by_name(exporter)
    for client, handled in (
        ("UpdateWorkflow:rename", "HandleUpdate:rename"),
        ("SignalWorkflow:close", "HandleSignal:close"),
    ):
        assert s[handled].parent is not None
        assert s[handled].parent.span_id == s[client].context.span_id
        assert s[handled].context.trace_id == s[client].context.trace_id
    accepted = next(e for e in events if type(e.attributes).__name__ == "UpdateAccepted")
    assert s["HandleUpdate:rename"].context.span_id == span_id("r-1", accepted.event_id)


def test_a_childs_run_joins_its_parents_trace(
    spans: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = spans
    runs = Runs()
    events = send(runs, StartWorkflow("r-1", "Order", "q"), 1000, PARENT).fx.events
    events += send(runs, SignalWorkflow("pay", []), 2000, None).fx.events
    out = send(runs, CompleteActivity("r-1", 1, 1, conv.to_payload("ok")), 3000, None)
    events += out.fx.events
    [start] = out.fx.commands
    assert isinstance(start.body, StartWorkflow)
    child_runs = Runs()
    child = Outbox()
    handle_command(start, child_runs, 1, 3000, REG, child, out.fx.command_traces[start.command_id])
    tracing.workflow_spans([*events, *child.fx.events])
    s = by_name(exporter)
    initiated, child_run = s["StartChildWorkflow:Child"], s["RunWorkflow:Child"]
    assert initiated.parent is not None and child_run.parent is not None
    assert initiated.parent.span_id == s["RunWorkflow:Order"].context.span_id
    assert child_run.parent.span_id == initiated.context.span_id
    assert child_run.context.trace_id == int(TRACE, 16)


def test_workflow_spans_made_again_carry_the_same_ids(
    spans: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = spans
    runs = Runs()
    events = send(runs, StartWorkflow("r-1", "Order", "q"), 1000, PARENT).fx.events
    tracing.workflow_spans(events)
    tracing.workflow_spans(events)
    first, second = exporter.get_finished_spans()
    assert first.context == second.context and first.context.span_id == span_id("r-1", 1)
    assert first.parent is not None and first.parent.span_id == 0xB7AD6B7169203331


def test_a_failed_attempt_records_its_error_on_its_span(
    spans: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = spans
    task = ActivityTask("order-1", "r-1", "Order", 1, "charge", 3, [], 0, 0, None, "k")
    attempt = tracing.start_activity(task, headers_of(workflow_carrier(PARENT, "r-1", 4)))
    tracing.end_activity(attempt, RuntimeError("card declined"))
    [span] = exporter.get_finished_spans()
    assert span.name == "RunActivity:charge" and span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]
    assert span.attributes is not None and span.attributes["everflow.attempt"] == 3
    assert tracing.start_activity(task, None) is None  # an untraced task: no span


def test_without_the_id_generator_a_warning_says_what_to_install(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    events = send(Runs(), StartWorkflow("r-1", "Order", "q"), 1000, PARENT).fx.events
    Tracing(provider).workflow_spans(events)
    assert "WorkflowIdGenerator" in caplog.text


def test_workflow_log_records_get_the_runs_trace_and_span_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert trace_ids(PARENT, "r-1") == (TRACE, f"{span_id('r-1', 1):016x}")
    assert trace_ids({}, "r-1") is None
    caplog.set_level(logging.INFO, "everflow.workflow")
    send(Runs(), StartWorkflow("r-1", "Order", "q"), 1000, PARENT)
    send(Runs(), StartWorkflow("r-2", "Order", "q"), 1000, None)
    traced, untraced = [r for r in caplog.records if "waiting for payment" in r.getMessage()]
    assert (traced.trace_id, traced.span_id) == (TRACE, f"{span_id('r-1', 1):016x}")
    assert not hasattr(untraced, "trace_id")


def test_importing_streams_and_its_engine_loads_no_opentelemetry() -> None:
    probe = (
        "import sys, streams, streams.worker, streams.client, streams.tracing\n"
        "from processors.workflow_processor.processor import WorkflowProcessor\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
