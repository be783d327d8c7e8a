"""The Avro wire format: every message type round-trips, old writers stay readable,
garbage gets one clear error."""

from __future__ import annotations

import copy

import pytest

from streams.errors import PayloadDecodeError
from streams.payload import Payload, to_payload
from streams.retry import RetryPolicy
from streams.wire import Wire
from streams.wire.avro import SchemaRegistry
from streams.wire.commands import (
    Command,
    CompleteActivity,
    DescribeWorkflow,
    FailActivity,
    StartWorkflow,
)
from streams.wire.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityRetried,
    ActivityScheduled,
    ChildWorkflowInitiated,
    HistoryEvent,
    SearchAttributesUpserted,
    SignalReceived,
    TimerFired,
    TimerStarted,
    WorkflowBlocked,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowUnblocked,
)
from streams.wire.records import (
    ActivityTask,
    Completion,
    Failure,
    NotFound,
    Reply,
    RunDescription,
    RunStatus,
    SearchAttribute,
    SearchAttributeType,
    Snapshot,
    SourceLocation,
    StartAccepted,
    StartRejected,
    Timer,
    TimerKind,
)

P = to_payload({"amount": 10, "to": "bob"})
F = Failure("boom", "ValueError", stack="tb", details=[P], cause=Failure("inner", "KeyError"))

EVENTS = [
    WorkflowStarted("Transfer", "q", [P, to_payload(None)], "cmd-1"),
    ActivityScheduled(1, "withdraw", "q", [P], 1000, None, RetryPolicy(maximum_attempts=3)),
    ActivityAttemptFailed(1, 1, F, 12345),
    ActivityRetried(1, 2),
    ActivityCompleted(1, 2, P),
    ActivityFailed(2, 5, F),
    TimerStarted(1, 99999),
    TimerFired(1),
    WorkflowCompleted(P),
    WorkflowFailed(F),
    WorkflowBlocked("non_determinism", F),
    WorkflowUnblocked("fixed"),
    WorkflowStarted(
        "Transfer", "q", [P], "cmd-2",
        search_attributes=[SearchAttribute("Customer", SearchAttributeType.KEYWORD, '"c-1"')],
        trace={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    ),
    ActivityScheduled(
        2, "deposit", "q", [P], None, 5000, RetryPolicy(),
        source=SourceLocation("/app/transfer.py", 42, "run"), trace={"traceparent": "00-x"},
    ),
    TimerStarted(2, 123, source=SourceLocation("/app/transfer.py", 50, "run")),
    SignalReceived("approve", [P], trace={"traceparent": "00-y"}),
    ChildWorkflowInitiated(1, "child-1", "Child", "q", source=SourceLocation("f.py", 3, "run")),
    SearchAttributesUpserted([
        SearchAttribute("Amount", SearchAttributeType.DOUBLE, "12.5"),
        SearchAttribute("Tags", SearchAttributeType.KEYWORD_LIST, '["a","b"]'),
        SearchAttribute("Gone", SearchAttributeType.INT, "null"),
    ]),
]
COMMANDS = [
    StartWorkflow("run-1", "Transfer", "q", [P], "client-1"),
    StartWorkflow(
        "run-2", "Transfer", "q", [P], "client-1",
        search_attributes=[SearchAttribute("Due", SearchAttributeType.DATETIME, "1767225600000")],
    ),
    DescribeWorkflow("client-1", None, True),
    CompleteActivity("run-1", 1, 1, P),
    FailActivity("run-1", 1, 1, F),
]
REPLIES = [
    StartAccepted("run-1"),
    StartRejected("already_started", "running", "run-0"),
    RunDescription("wf", "run", "T", "q", RunStatus.FAILED, F, 1, 2, 7, None, F, [b"x"]),
    NotFound("nope"),
]


@pytest.fixture(scope="module")
def wire() -> Wire:
    return Wire()


@pytest.mark.parametrize("attrs", EVENTS, ids=lambda a: type(a).__name__)
def test_every_history_event_round_trips(wire: Wire, attrs: object) -> None:
    event = HistoryEvent("wf-1", "run-1", 3, 1700000000000, attrs)  # type: ignore[arg-type]
    assert wire.event.decode(wire.event.encode(event)) == event


@pytest.mark.parametrize("body", COMMANDS, ids=lambda b: type(b).__name__)
def test_every_command_round_trips(wire: Wire, body: object) -> None:
    command = Command("cmd-1", "wf-1", 1, body)  # type: ignore[arg-type]
    assert wire.command.decode(wire.command.encode(command)) == command


@pytest.mark.parametrize("body", REPLIES, ids=lambda b: type(b).__name__)
def test_every_reply_round_trips(wire: Wire, body: object) -> None:
    reply = Reply("client-1", "req-1", body)  # type: ignore[arg-type]
    assert wire.reply.decode(wire.reply.encode(reply)) == reply


def test_tasks_timers_snapshots_completions_round_trip(wire: Wire) -> None:
    task = ActivityTask("wf", "run", "T", 1, "withdraw", 2, [P], 3, 5, None, "wf/run/1")
    timer = Timer("wf", "run", TimerKind.ACTIVITY_RETRY, 1, 2, 777)
    snap = Snapshot("wf", "run", False, [b"\x00\x01", b""])
    done = Completion("wf", "run", "T", RunStatus.COMPLETED, P, None, 1, 2, 6)
    assert wire.task.decode(wire.task.encode(task)) == task
    assert wire.timer.decode(wire.timer.encode(timer)) == timer
    assert wire.snapshot.decode(wire.snapshot.encode(snap)) == snap
    assert wire.completion.decode(wire.completion.encode(done)) == done


def test_encoding_is_single_object_with_the_schema_fingerprint(wire: Wire) -> None:
    raw = wire.timer.encode(Timer("wf", "run", TimerKind.USER_TIMER, 1, 0, 5))
    assert raw[:2] == b"\xc3\x01"
    assert int.from_bytes(raw[2:10], "little") == wire.timer.fingerprint


def test_message_written_with_an_older_schema_is_read_by_the_current_one() -> None:
    registry = SchemaRegistry()
    wire = Wire(registry)
    # the "v0" Completion had no history_length; readers fill in the new field's default...
    old = copy.deepcopy(_raw_schema(registry, "everflow.Completion"))
    old["fields"] = [f for f in old["fields"] if f["name"] != "history_length"]
    old_id = registry.register("everflow.Completion", old)
    # ...as long as the current schema gives it one; pretend it does for this test
    current = _raw_schema(registry, "everflow.Completion")
    for f in current["fields"]:
        if f["name"] == "history_length":
            f["default"] = 0
    registry.current["everflow.Completion"] = registry.writers[
        registry.register("everflow.Completion", current)
    ][1]
    wire = Wire(registry)
    raw = wire.completion.encode_with(
        old_id,
        {
            "workflow_id": "wf",
            "run_id": "r",
            "workflow_type": "T",
            "status": "COMPLETED",
            "result": None,
            "failure": None,
            "start_time": 1,
            "close_time": 2,
        },
    )
    decoded = wire.completion.decode(raw)
    assert decoded.workflow_id == "wf" and decoded.history_length == 0
    assert decoded.status is RunStatus.COMPLETED


def test_events_written_before_search_attributes_sources_and_traces_read_with_defaults() -> None:
    """The history schema before search attributes, source locations and trace context
    (archived as everflow.HistoryEvent.983b3aecfbb73c71) still reads: the new fields take
    their defaults."""
    registry = SchemaRegistry()
    old_id = 0x983B3AECFBB73C71
    assert old_id in registry.writers
    wire = Wire(registry)
    raw = wire.event.encode_with(
        old_id,
        {
            "workflow_id": "wf", "run_id": "r", "event_id": 2, "time": 5,
            "attributes": (
                "everflow.history.ActivityScheduled",
                {
                    "activity_id": 1, "activity_type": "withdraw", "task_queue": "q",
                    "args": [], "start_to_close_timeout_ms": 1000,
                    "schedule_to_close_timeout_ms": None,
                    "retry_policy": {
                        "initial_interval_ms": 1000, "backoff_coefficient": 2.0,
                        "maximum_interval_ms": None, "maximum_attempts": 0,
                        "non_retryable_error_types": [],
                    },
                    "schedule_to_start_timeout_ms": None, "heartbeat_timeout_ms": None,
                    "cancellation_type": "try_cancel",
                },
            ),
        },
    )
    event = wire.event.decode(raw)
    assert isinstance(event.attributes, ActivityScheduled)
    assert event.attributes.source is None and event.attributes.trace == {}
    assert event.attributes.activity_type == "withdraw"


def _raw_schema(registry: SchemaRegistry, name: str) -> dict:  # type: ignore[type-arg]
    import json

    from fastavro.schema import load_schema

    path = registry.schema_dir / f"{name}.avsc"
    expanded = load_schema(str(path), _write_hint=False)
    return json.loads(json.dumps(expanded))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too short"),
        (b"garbage bytes here", "not Avro single-object encoding"),
        (b"\xc3\x01" + b"\x00" * 8 + b"xx", "unknown writer schema fingerprint"),
        (None, "tombstone"),
    ],
)
def test_undecodable_bytes_raise_one_clear_error(
    wire: Wire, data: bytes | None, reason: str
) -> None:
    with pytest.raises(PayloadDecodeError, match=reason):
        wire.command.decode(data)


def test_a_message_of_another_type_is_refused_by_name(wire: Wire) -> None:
    raw = wire.timer.encode(Timer("wf", "run", TimerKind.USER_TIMER, 1, 0, 5))
    with pytest.raises(
        PayloadDecodeError, match=r"expected a everflow\.Command, got a everflow\.Timer"
    ):
        wire.command.decode(raw)


def test_corrupt_body_error_names_where_it_was_read(wire: Wire) -> None:
    raw = wire.command.encode(Command("c", "wf", 1, CompleteActivity("r", 1, 1, P)))
    with pytest.raises(PayloadDecodeError) as caught:
        wire.command.decode(raw[:14])
    located = caught.value.at("everflow.commands", 3, 42)
    assert "everflow.commands[3]@42" in str(located)
    assert located.partition == 3 and located.offset == 42


def test_payload_metadata_survives(wire: Wire) -> None:
    p = Payload(b"\x00\xff", {"encoding": b"binary/plain", "x": b"y"})
    event = HistoryEvent("wf", "r", 1, 1, ActivityCompleted(1, 1, p))
    assert wire.event.decode(wire.event.encode(event)).attributes.result == p
