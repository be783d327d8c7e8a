"""Closed sets of option values: members equal their wire strings, callers may pass either,
and anything else is refused naming the accepted values."""

from __future__ import annotations

import ast
import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest

from streams import Client, IdConflictPolicy, IdReusePolicy, workflow
from streams.options import option
from streams.payload import DataConverter
from streams.retry import RetryPolicy
from streams.wire import Wire
from streams.wire.commands import Command, StartWorkflow
from streams.wire.events import ActivityScheduled, ChildWorkflowInitiated, HistoryEvent
from streams.wire.history_json import event_to_json
from streams.wire.records import RejectionCode, RunStatus
from streams.workflow import ActivityCancellationType, ParentClosePolicy

ROOT = Path(__file__).resolve().parents[2]


def test_a_member_or_its_string_gives_the_member() -> None:
    assert option(IdReusePolicy, "reject_duplicate", "id_reuse_policy") is (
        IdReusePolicy.REJECT_DUPLICATE
    )
    assert option(IdConflictPolicy, IdConflictPolicy.USE_EXISTING, "x") is (
        IdConflictPolicy.USE_EXISTING
    )
    assert ParentClosePolicy.ABANDON == "abandon" and RunStatus.FAILED == "FAILED"


def test_an_unknown_value_is_refused_naming_the_setting_and_the_accepted_values() -> None:
    with pytest.raises(ValueError, match="unknown id_conflict_policy 'ignore'") as refused:
        option(IdConflictPolicy, "ignore", "id_conflict_policy")
    assert "use one of 'fail', 'use_existing'" in str(refused.value)


def test_options_travel_as_the_same_strings() -> None:
    wire = Wire()
    body = StartWorkflow(
        "run",
        "T",
        "q",
        [],
        "client",
        id_reuse_policy=IdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        id_conflict_policy=IdConflictPolicy.USE_EXISTING,
    )
    raw = wire.command.encode(Command("cmd", "wf", 1, body))
    # Avro strings: zig-zag length, then the UTF-8 bytes of the value
    assert b"\x36allow_duplicate_failed_only\x18use_existing" in raw
    decoded = wire.command.decode(raw).body
    assert decoded.id_reuse_policy is IdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY


def test_history_json_shows_the_option_strings() -> None:
    scheduled = ActivityScheduled(
        1,
        "a",
        "q",
        [],
        1000,
        None,
        RetryPolicy(),
        cancellation_type=ActivityCancellationType.ABANDON,
    )
    child = ChildWorkflowInitiated(
        2, "child", "T", "q", parent_close_policy=ParentClosePolicy.REQUEST_CANCEL
    )
    for attrs, key, value in (
        (scheduled, "cancellation_type", "abandon"),
        (child, "parent_close_policy", "request_cancel"),
    ):
        shown = event_to_json(HistoryEvent("wf", "run", 1, 0, attrs), DataConverter())
        assert json.dumps(shown[key]) == f'"{value}"' and type(shown[key]) is str


def test_client_refuses_an_unknown_id_policy_before_sending_anything() -> None:
    client = Client.__new__(Client)  # not connected: the check comes first
    with pytest.raises(ValueError, match="unknown id_reuse_policy 'sometimes'; use one of"):
        asyncio.run(
            client.start_workflow("T", id="wf", task_queue="q", id_reuse_policy="sometimes")
        )
    with pytest.raises(ValueError, match="unknown id_conflict_policy 'replace'"):
        asyncio.run(
            client.start_workflow("T", id="wf", task_queue="q", id_conflict_policy="replace")
        )


def test_workflow_options_refuse_an_unknown_value_naming_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown cancellation_type 'later'.*'try_cancel'"):
        asyncio.run(
            workflow.execute_activity(
                "a", start_to_close_timeout=timedelta(seconds=1), cancellation_type="later"
            )
        )
    with pytest.raises(ValueError, match=r"unknown parent_close_policy 'orphan'.*'terminate'"):
        asyncio.run(workflow.start_child_workflow("T", id="c", parent_close_policy="orphan"))


def _rejection_codes(source: str) -> list[str]:
    """The codes given to Rejected(...) and StartRejected(...) calls: a string literal as
    itself, `RejectionCode.NAME` as `RejectionCode.NAME`, anything else as its source."""
    codes = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("Rejected", "StartRejected")
            and node.args
        ):
            code = node.args[0]
            codes.append(code.value if isinstance(code, ast.Constant) else ast.unparse(code))
    return codes


def test_every_rejection_code_the_engine_sends_is_a_rejection_code() -> None:
    sent = {
        code
        for path in (ROOT / "processors").rglob("*.py")
        for code in _rejection_codes(path.read_text())
    }
    named = {f"RejectionCode.{c.name}" for c in RejectionCode}
    expected = {"RejectionCode.NOT_FOUND", "RejectionCode.NOT_RUNNING"}
    assert expected | {"RejectionCode.ALREADY_STARTED"} <= sent  # the scan finds them
    assert sent <= named, f"not a RejectionCode member: {sent - named}"
