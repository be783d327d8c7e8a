"""Tracing with OpenTelemetry (the optional `otel` extra): Temporal's span names, the W3C
trace context carried in Kafka record headers and kept in history.

Two halves. The carrier helpers (`carrier_of`, `headers_of`, `span_id`, `workflow_carrier`)
are plain Python: the engine calls them to copy a command's trace context into the event it
causes and to pass a run's context on to its activities and children, at no cost when a
command carries none. `Tracing` makes the spans; it imports `opentelemetry` when it is
built, which happens only when tracing is turned on (`EVERFLOW_TRACING=1`, or
`tracing=True` on `Client.connect` / `Worker`), so without it nothing imports OpenTelemetry.

Workflow-side spans (`RunWorkflow`, `StartActivity`, `HandleSignal`, `HandleUpdate`,
`StartChildWorkflow`) are instants at their event's time, made by the processor once the
transaction that wrote the event committed: never on restore or replay. Their span IDs are
derived from (run ID, event ID), so a span made again would carry the same ID, and the
context an event hands on (to an activity task, a child's start) names its span before it
exists. The SDK picks span IDs through its ID generator: install `WorkflowIdGenerator` on
the worker's `TracerProvider(id_generator=WorkflowIdGenerator())`; without it those spans get
random IDs and their children point at IDs no span has (a warning says so, once).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from streams.wire.commands import CommandBody, QueryWorkflow, SignalWorkflow, StartWorkflow
from streams.wire.commands import UpdateWorkflow as UpdateCommand
from streams.wire.events import (
    ActivityScheduled,
    ChildWorkflowInitiated,
    HistoryEvent,
    SignalReceived,
    UpdateAccepted,
    WorkflowStarted,
)
from streams.wire.records import ActivityTask

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger(__name__)

# the W3C Trace Context fields a carrier keeps (record headers, the `trace` of events)
FIELDS = ("traceparent", "tracestate")
TRACER_NAME = "everflow"

Headers = list[tuple[str, str | bytes | None]]  # as confluent_kafka takes them


# ---- carriers (no OpenTelemetry) ----------------------------------------------------------------
def span_id(run_id: str, event_id: int) -> int:
    """The span ID of the workflow span of a run's event: the first 8 bytes of
    blake2b(run ID, event ID), never 0 (the invalid span ID)."""
    digest = hashlib.blake2b(f"{run_id}/{event_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


def workflow_carrier(parent: Mapping[str, str], run_id: str, event_id: int) -> dict[str, str]:
    """The trace context of the workflow span of event `event_id` of run `run_id`, whose
    parent context is `parent`: same trace, flags and state, the derived span ID. Empty
    when `parent` carries no valid context (no span then: nobody traced the request)."""
    traceparent = parent.get("traceparent")
    if not traceparent:
        return {}
    parts = traceparent.split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[3]) != 2:
        return {}
    carrier = {"traceparent": f"00-{parts[1]}-{span_id(run_id, event_id):016x}-{parts[3]}"}
    if parent.get("tracestate"):
        carrier["tracestate"] = parent["tracestate"]
    return carrier


def carrier_of(
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
) -> dict[str, str]:
    """The trace context among a Kafka record's headers (empty if it has none)."""
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {
        k: v.decode() if isinstance(v, bytes) else v
        for k, v in items
        if k in FIELDS and v is not None
    }


def headers_of(carrier: Mapping[str, str]) -> Headers | None:
    """A carrier as Kafka record headers (None for an empty one: no headers at all)."""
    return [(k, v.encode()) for k, v in carrier.items()] or None


# ---- deterministic span IDs -----------------------------------------------------------------
_next = threading.local()


class WorkflowIdGenerator:
    """An OpenTelemetry SDK ID generator that gives Everflow's workflow spans their derived
    span IDs and every other span a random one (as the SDK's default generator does).

    `TracerProvider(id_generator=WorkflowIdGenerator())` in the worker's process."""

    def generate_span_id(self) -> int:
        fixed: int | None = getattr(_next, "span_id", None)
        if fixed is not None:
            _next.span_id = None
            return fixed
        return random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return random.getrandbits(128) or 1

    def is_trace_id_random(self) -> bool:
        return True


@contextmanager
def _span_id_next(value: int) -> Iterator[None]:
    _next.span_id = value
    try:
        yield
    finally:
        _next.span_id = None


# ---- spans ------------------------------------------------------------------------------------
class Tracing:
    """Makes Everflow's spans with `tracer_provider` (default: the global one); built only
    when tracing is on: it imports OpenTelemetry (ImportError without the `otel` extra)."""

    def __init__(self, tracer_provider: Any = None) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        self._context = context
        self._propagator = TraceContextTextMapPropagator()
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._warned = False

    # ---- client ---------------------------------------------------------------------------
    @contextmanager
    def client_span(self, workflow_id: str, body: CommandBody) -> Iterator[Headers | None]:
        """Around a client request: a `StartWorkflow:<type>`, `SignalWorkflow:<name>`,
        `QueryWorkflow:<name>` or `UpdateWorkflow:<name>` span, current while the request
        runs; yields the record headers carrying it (None for a request not traced)."""
        name = _client_span_name(body)
        if name is None:
            yield None
            return
        attributes = {"everflow.workflow_id": workflow_id}
        if isinstance(body, StartWorkflow):
            attributes["everflow.run_id"] = body.run_id
        kind = self._trace.SpanKind.CLIENT
        with self._tracer.start_as_current_span(name, kind=kind, attributes=attributes):
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            yield headers_of(carrier)

    # ---- workflow processor ---------------------------------------------------------------
    def workflow_spans(self, events: Sequence[HistoryEvent]) -> None:
        """The spans of committed events that start something (see the module doc); events
        without a trace context have none."""
        for event in events:
            a = event.attributes
            extra: dict[str, Any]
            match a:
                case WorkflowStarted():
                    name, extra = f"RunWorkflow:{a.workflow_type}", {}
                case ActivityScheduled():
                    name = f"StartActivity:{a.activity_type}"
                    extra = {"everflow.activity_id": a.activity_id}
                case SignalReceived():
                    name, extra = f"HandleSignal:{a.signal_name}", {}
                case UpdateAccepted():
                    name, extra = f"HandleUpdate:{a.update_name}", {}
                case ChildWorkflowInitiated():
                    name = f"StartChildWorkflow:{a.workflow_type}"
                    extra = {"everflow.child_workflow_id": a.workflow_id}
                case _:
                    continue
            if a.trace:
                self._instant(event, name, a.trace, extra)

    def _instant(
        self, event: HistoryEvent, name: str, parent: Mapping[str, str], extra: dict[str, Any]
    ) -> None:
        wanted = span_id(event.run_id, event.event_id)
        attributes: dict[str, Any] = {
            "everflow.workflow_id": event.workflow_id,
            "everflow.run_id": event.run_id,
            "everflow.event_id": event.event_id,
            **extra,
        }
        at = event.time * 1_000_000
        with _span_id_next(wanted):
            span = self._tracer.start_span(
                name,
                context=self._propagator.extract(parent),
                kind=self._trace.SpanKind.INTERNAL,
                attributes=attributes,
                start_time=at,
            )
        # a span nobody records (no SDK, or sampled out) carries whatever ID it was given
        if span.is_recording() and span.get_span_context().span_id != wanted:
            self._warn_random_ids(name)
        span.end(end_time=at)

    def _warn_random_ids(self, name: str) -> None:
        if self._warned:
            return
        self._warned = True
        log.warning(
            "workflow span %s got a random span ID: install streams.tracing.WorkflowIdGenerator "
            "on the TracerProvider (TracerProvider(id_generator=WorkflowIdGenerator())), or "
            "the spans of activities and children point at parents no span has",
            name,
        )

    # ---- activity runner ------------------------------------------------------------------
    def start_activity(self, task: ActivityTask, headers: Any) -> Span | None:
        """The `RunActivity:<type>` span of one attempt, child of the context in the task
        record's headers (None when the task carries none)."""
        carrier = carrier_of(headers)
        if not carrier:
            return None
        return self._tracer.start_span(
            f"RunActivity:{task.activity_type}",
            context=self._propagator.extract(carrier),
            kind=self._trace.SpanKind.SERVER,
            attributes={
                "everflow.workflow_id": task.workflow_id,
                "everflow.run_id": task.run_id,
                "everflow.activity_id": task.activity_id,
                "everflow.attempt": task.attempt,
            },
        )

    @contextmanager
    def activated(self, span: Span | None) -> Iterator[None]:
        """`span` is the current span inside (the activity's own spans nest under it)."""
        if span is None:
            yield
            return
        token = self._context.attach(self._trace.set_span_in_context(span))
        try:
            yield
        finally:
            self._context.detach(token)

    def end_activity(self, span: Span | None, error: BaseException | None) -> None:
        """Ends an attempt's span; a failed attempt records its error."""
        if span is None:
            return
        if error is not None:
            span.record_exception(error)
            status = self._trace.Status(self._trace.StatusCode.ERROR, f"{error!r}")
            span.set_status(status)
        span.end()


def _client_span_name(body: CommandBody) -> str | None:
    match body:
        case StartWorkflow():
            return f"StartWorkflow:{body.workflow_type}"
        case SignalWorkflow():
            return f"SignalWorkflow:{body.signal_name}"
        case QueryWorkflow():
            return f"QueryWorkflow:{body.query_name}"
        case UpdateCommand():
            return f"UpdateWorkflow:{body.update_name}"
        case _:
            return None


def trace_ids(started: Mapping[str, str], run_id: str) -> tuple[str, str] | None:
    """(trace ID, span ID) in hex of a run's `RunWorkflow` span, from its start's carrier
    (for log records); None when the run is not traced."""
    carrier = workflow_carrier(started, run_id, 1)
    if not carrier:
        return None
    _, trace_hex, span_hex, _ = carrier["traceparent"].split("-")
    return trace_hex, span_hex
