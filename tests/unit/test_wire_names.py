"""One vocabulary on the wire: a Python record class has the name of its Avro record, and a
record renamed in the schemas still reads what its old name wrote."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import fastavro
import pytest
from fastavro.schema import parse_schema

from schemas import ARCHIVE_DIR
from streams.payload import to_payload
from streams.wire import RECORD_MODULES, Wire
from streams.wire.avro import _CLASSES, schema_fingerprint
from streams.wire.commands import (
    Command,
    CompleteActivity,
    FailActivity,
    HeartbeatActivity,
    ReportChildClosed,
    ReportChildStarted,
    ReportChildStartFailed,
    StartActivity,
)
from streams.wire.records import ActivityCancelRequest, Failure, Reply

P = to_payload({"amount": 10})
P_RAW = {"metadata": {"encoding": b"json/plain"}, "data": P.data}
F_RAW = {
    "message": "boom",
    "type": "ValueError",
    "kind": "application",
    "stack": "",
    "non_retryable": False,
    "details": [],
    "timeout_type": None,
    "cause": None,
}

# the writer schemas from before the commands took imperative names
OLD_COMMAND = ARCHIVE_DIR / "everflow.Command.7d49aea43924035b.avsc"
OLD_REPLY = ARCHIVE_DIR / "everflow.Reply.c305cfc8188bb4de.avsc"


def _registered() -> list[tuple[str, type]]:
    assert RECORD_MODULES  # importing streams.wire registers every record class
    return sorted(_CLASSES.items())


@pytest.mark.parametrize(("avro_name", "cls"), _registered(), ids=lambda v: str(v))
def test_python_class_has_the_name_of_its_avro_record(avro_name: str, cls: type) -> None:
    assert avro_name.rsplit(".", 1)[-1] == cls.__name__


def _records(schema: Any, found: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            found[schema["name"]] = schema
        for value in schema.values():
            _records(value, found)
    elif isinstance(schema, list):
        for value in schema:
            _records(value, found)
    return found


def test_every_registered_class_names_a_record_of_the_current_schemas() -> None:
    registry = Wire().registry
    records: dict[str, Any] = {}
    for schema in registry.current.values():
        _records(schema, records)
    assert sorted(set(_CLASSES) - set(records)) == []


def _single_object(schema: Any, record: dict[str, Any]) -> bytes:
    """What an Everflow of that schema wrote: C3 01, the fingerprint, the Avro body."""
    buf = io.BytesIO()
    buf.write(struct.pack("<2sQ", b"\xc3\x01", schema_fingerprint(schema)))
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def _old(path: Any) -> Any:
    return parse_schema(json.loads(path.read_text()))


OLD_COMMAND_BODIES = [
    (
        "ActivityCompleted",
        {"run_id": "r", "activity_id": 1, "attempt": 2, "result": P_RAW},
        CompleteActivity("r", 1, 2, P),
    ),
    (
        "ActivityFailed",
        {"run_id": "r", "activity_id": 1, "attempt": 2, "failure": F_RAW},
        FailActivity("r", 1, 2, Failure("boom", "ValueError")),
    ),
    (
        "ActivityStarted",
        {"run_id": "r", "activity_id": 1, "attempt": 2},
        StartActivity("r", 1, 2),
    ),
    (
        "ActivityHeartbeat",
        {"run_id": "r", "activity_id": 1, "attempt": 2, "details": [P_RAW], "reply_to": "w"},
        HeartbeatActivity("r", 1, 2, [P], "w"),
    ),
    (
        "ChildWorkflowStarted",
        {"parent_run_id": "p", "seq": 3, "child_run_id": "c"},
        ReportChildStarted("p", 3, "c"),
    ),
    (
        "ChildWorkflowStartFailed",
        {"parent_run_id": "p", "seq": 3, "message": "taken"},
        ReportChildStartFailed("p", 3, "taken"),
    ),
    (
        "ChildWorkflowClosed",
        {
            "parent_run_id": "p",
            "seq": 3,
            "child_run_id": "c",
            "status": "COMPLETED",
            "result": P_RAW,
            "failure": None,
        },
        ReportChildClosed("p", 3, "c", "COMPLETED", P),
    ),
]


@pytest.mark.parametrize(
    ("old_name", "raw", "expected"), OLD_COMMAND_BODIES, ids=[b[0] for b in OLD_COMMAND_BODIES]
)
def test_a_command_written_under_its_old_name_decodes_to_the_renamed_class(
    old_name: str, raw: dict[str, Any], expected: object
) -> None:
    old = _old(OLD_COMMAND)
    data = _single_object(
        old,
        {
            "command_id": "cmd-1",
            "workflow_id": "wf-1",
            "sent_at": 5,
            "body": (f"everflow.command.{old_name}", raw),
        },
    )
    wire = Wire()
    assert int.from_bytes(data[2:10], "little") != wire.command.fingerprint  # an old writer
    assert wire.command.decode(data) == Command("cmd-1", "wf-1", 5, expected)  # type: ignore[arg-type]


def test_an_activity_cancel_request_written_under_its_old_name_decodes() -> None:
    old = _old(OLD_REPLY)
    raw = {"workflow_id": "wf", "run_id": "r", "activity_id": 1, "attempt": 2}
    data = _single_object(
        old,
        {
            "client_id": "runner-1",
            "request_id": "req-1",
            "body": ("everflow.reply.ActivityCancelRequested", raw),
        },
    )
    assert Wire().reply.decode(data) == Reply(
        "runner-1", "req-1", ActivityCancelRequest("wf", "r", 1, 2)
    )


def test_the_archive_holds_the_writer_schemas_of_the_old_names() -> None:
    for path, old_name in [
        (OLD_COMMAND, "everflow.command.ActivityCompleted"),
        (OLD_REPLY, "everflow.reply.ActivityCancelRequested"),
    ]:
        schema = _old(path)
        assert f"{schema_fingerprint(schema):016x}" == path.name.rsplit(".", 2)[1]
        assert old_name in _records(schema, {})


def test_the_wire_leaves_the_user_api_classes_untouched() -> None:
    """RetryPolicy and Payload travel as records without the wire adding to their classes."""
    from datetime import timedelta

    from streams.payload import Payload
    from streams.retry import RetryPolicy
    from streams.wire.avro import avro_name
    from streams.wire.events import ActivityScheduled, HistoryEvent

    for cls in (RetryPolicy, Payload):
        assert not [a for a in vars(cls) if "avro" in a]
    assert avro_name(RetryPolicy) == "everflow.RetryPolicy"
    policy = RetryPolicy(
        initial_interval=timedelta(milliseconds=250),
        maximum_interval=timedelta(seconds=3),
        maximum_attempts=4,
        non_retryable_error_types=("CardDeclined",),
    )
    event = HistoryEvent(
        "wf", "r", 1, 0, ActivityScheduled(1, "charge", "q", [P], 1000, None, policy)
    )
    wire = Wire()
    assert wire.event.decode(wire.event.encode(event)) == event


def test_a_registration_with_one_conversion_function_is_refused() -> None:
    from streams.wire.avro import avro_record

    class Lonely:
        pass

    with pytest.raises(TypeError, match="both to_avro and from_avro"):
        avro_record("everflow.Lonely", Lonely, to_avro=lambda _: {})
