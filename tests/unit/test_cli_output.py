"""How the `workflow` commands print: aligned tables, relative times, colours only on a
terminal, JSON through orjson; the pending activities and children folded from a history;
a batch's counts and summary; the exit codes errors map to."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import KafkaException

from streams.cli.common import exit_code
from streams.cli.output import Output, dumps, format_time, relative, strip_ansi, table
from streams.cli.workflow_history import details, pending_activities, pending_children
from streams.cli.workflow_list import (
    BatchResult,
    act_on,
    execution_json,
    print_count,
    print_executions,
    report_batch,
    report_dry_run,
)
from streams.errors import (
    BrokerError,
    EverflowError,
    RPCTimeoutError,
    WorkflowFailureError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from streams.payload import DataConverter
from streams.retry import RetryPolicy
from streams.visibility.records import PendingActivity, WorkflowCount, WorkflowExecution
from streams.wire.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityReset,
    ActivityRetried,
    ActivityScheduled,
    ActivityStarted,
    ChildWorkflowClosed,
    ChildWorkflowInitiated,
    ChildWorkflowStarted,
    EventAttributes,
    HistoryEvent,
    WorkflowStarted,
    WorkflowTerminated,
)
from streams.wire.records import Failure

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


def captured(output: str = "text", color: str = "auto", time_format: str = "relative") -> Output:
    args = argparse.Namespace(output=output, color=color, time_format=time_format)
    out = Output.of(args, io.StringIO())
    return Output(out.format, out.time_format, out.color, out.stream, lambda: NOW)


def printed(out: Output) -> str:
    assert isinstance(out.stream, io.StringIO)
    return out.stream.getvalue()


def run(
    status: str, workflow_id: str, start: timedelta, close: timedelta | None
) -> WorkflowExecution:
    return WorkflowExecution(
        workflow_id=workflow_id,
        run_id=f"run-{workflow_id}",
        workflow_type="Charge" if len(workflow_id) < 8 else "MoneyTransferWorkflow",
        task_queue="payments",
        status=status,
        start_time=NOW - start,
        close_time=None if close is None else NOW - close,
        execution_duration=None if close is None else start - close,
        history_length=6,
        parent_workflow_id=None,
        parent_run_id=None,
        search_attributes={"CustomerId": "c-1", "Due": NOW},
        pending_activities=(PendingActivity(1, "charge", 2, 5, "gateway down", NOW),),
    )


RUNS = [
    run("Running", "o-1", timedelta(minutes=3), None),
    run("Completed", "order-123456", timedelta(hours=2, minutes=5), timedelta(seconds=40)),
    run("Failed", "o-22", timedelta(days=3, hours=4), timedelta(days=3)),
]


def test_table_columns_align_under_their_headers() -> None:
    lines = table(("A", "LONGER HEADER", "LAST"), [["wide cell", "x", "end"], ["y", "z", "e"]])
    assert lines == [
        "A          LONGER HEADER  LAST",
        "wide cell  x              end",
        "y          z              e",
    ]


def test_listed_runs_print_as_an_aligned_table_with_relative_times() -> None:
    out = captured()
    print_executions(out, RUNS)
    lines = printed(out).splitlines()
    assert lines[0].split("  ")[0] == "STATUS"
    for header in ("WORKFLOW ID", "TYPE", "START TIME", "CLOSE TIME"):
        column = lines[0].index(header)
        assert all(line[column - 2 : column] == "  " for line in lines if len(line) > column)
        assert all(line[column] != " " for line in lines[1:] if len(line) > column), header
    assert lines[1].split() == ["Running", "o-1", "Charge", "3m", "ago"]
    assert lines[2].split()[-4:] == ["2h5m", "ago", "40s", "ago"]
    assert lines[3].split()[-4:] == ["3d4h", "ago", "3d", "ago"]


def test_colours_only_on_a_terminal_or_when_asked() -> None:
    plain = captured(color="auto")  # a StringIO is not a terminal
    print_executions(plain, RUNS)
    assert "\x1b[" not in printed(plain)
    never = captured(color="never")
    print_executions(never, RUNS)
    assert "\x1b[" not in printed(never)
    always = captured(color="always")
    print_executions(always, RUNS)
    coloured = printed(always)
    assert "\x1b[36mRunning\x1b[0m" in coloured and "\x1b[31mFailed\x1b[0m" in coloured
    assert strip_ansi(coloured) == printed(plain)  # colour codes do not shift the columns


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_colours_a_terminal() -> None:
    args = argparse.Namespace(output="text", color="auto", time_format="relative")
    assert Output.of(args, Terminal()).color
    assert not Output.of(args, io.StringIO()).color


@pytest.mark.parametrize(
    ("delta", "said"),
    [
        (timedelta(milliseconds=300), "just now"),
        (timedelta(seconds=-12), "12s ago"),
        (timedelta(seconds=12), "in 12s"),
        (timedelta(minutes=-3, seconds=-20), "3m ago"),
        (timedelta(minutes=59, seconds=50), "in 59m"),
        (timedelta(hours=-2, minutes=-5), "2h5m ago"),
        (timedelta(hours=5), "in 5h"),
        (timedelta(days=-3, hours=-4), "3d4h ago"),
    ],
)
def test_relative_times_read_as_people_say_them(delta: timedelta, said: str) -> None:
    assert relative(delta) == said


def test_time_formats_iso_raw_and_relative_from_datetimes_and_epoch_ms() -> None:
    ms = int((NOW - timedelta(seconds=90)).timestamp() * 1000)
    assert format_time(ms, "raw", NOW) == str(ms)
    assert format_time(ms, "iso", NOW) == "2026-12-02T11:58:30Z"
    assert format_time(NOW - timedelta(seconds=90), "relative", NOW) == "1m ago"
    assert format_time(None, "iso", NOW) == ""


def test_json_and_jsonl_outputs_parse() -> None:
    as_json = captured(output="json")
    as_json.json([execution_json(r) for r in RUNS])
    parsed = json.loads(printed(as_json))
    assert [p["workflow_id"] for p in parsed] == ["o-1", "order-123456", "o-22"]
    assert parsed[0]["start_time"] == "2026-12-02T11:57:00+00:00"
    assert parsed[1]["execution_duration"] == 7460.0
    assert parsed[0]["search_attributes"]["Due"] == "2026-12-02T12:00:00+00:00"
    assert parsed[0]["pending_activities"][0]["attempt"] == 2
    lines = captured(output="jsonl")
    for r in RUNS:
        lines.json(execution_json(r))
    assert [json.loads(line)["status"] for line in printed(lines).splitlines()] == [
        "Running",
        "Completed",
        "Failed",
    ]
    assert json.loads(dumps({"d": timedelta(seconds=2), 3: b"\x01"})) == {"d": 2.0, "3": "01"}


def history(*attributes: EventAttributes) -> list[HistoryEvent]:
    ms = int(NOW.timestamp() * 1000)
    return [HistoryEvent("wf", "r", i, ms, a) for i, a in enumerate(attributes, start=1)]


def started() -> WorkflowStarted:
    return WorkflowStarted("Charge", "q", [], "c-1")


def scheduled(activity_id: int, maximum: int) -> ActivityScheduled:
    policy = RetryPolicy(maximum_attempts=maximum)
    return ActivityScheduled(activity_id, "charge", "q", [], 10_000, None, policy)


def test_pending_activities_show_the_attempt_to_come_its_budget_and_the_last_failure() -> None:
    retry_at = int((NOW + timedelta(hours=1)).timestamp() * 1000)
    failure = Failure("gateway down", "ConnectionError")
    events = history(
        started(),
        scheduled(1, 5),
        ActivityStarted(1, 1),
        ActivityAttemptFailed(1, 1, failure, retry_at),
        scheduled(2, 0),
        scheduled(3, 3),
        ActivityCompleted(3, 1, DataConverter().to_payload("ok")),
    )
    assert pending_activities(events) == [
        PendingActivity(1, "charge", 2, 5, "gateway down", NOW + timedelta(hours=1)),
        PendingActivity(2, "charge", 1, 0, None, None),
    ]
    retried = pending_activities([*events, *history(ActivityRetried(1, 2), ActivityStarted(1, 2))])
    assert retried[0] == PendingActivity(1, "charge", 2, 5, "gateway down", None)
    # an operator's retry gives a fresh budget counted from the last attempt
    reset = pending_activities([*events, *history(ActivityReset(1), ActivityRetried(1, 2))])
    assert (reset[0].attempt, reset[0].maximum_attempts) == (2, 6)
    assert pending_activities([*events, *history(WorkflowTerminated("stop"))]) == []


def test_pending_children_are_those_initiated_and_not_closed() -> None:
    events = history(
        started(),
        ChildWorkflowInitiated(1, "kid-1", "Child", "q"),
        ChildWorkflowInitiated(2, "kid-2", "Child", "q"),
        ChildWorkflowStarted(1, "run-k1"),
        ChildWorkflowStarted(2, "run-k2"),
        ChildWorkflowClosed(2, "COMPLETED"),
        ChildWorkflowInitiated(3, "kid-3", "Child", "q"),
    )
    assert [(c.workflow_id, c.run_id) for c in pending_children(events)] == [
        ("kid-1", "run-k1"),
        ("kid-3", None),
    ]


def test_event_details_are_short_and_leave_out_the_empty_and_the_internal() -> None:
    out = captured(time_format="iso")
    line = details(
        {"event_id": 4, "type": "ActivityAttemptFailed", "activity_id": 1, "attempt": 1,
         "failure": {"message": "gateway down", "type": "E"}, "note": "", "args": [],
         "retry_at": int(NOW.timestamp() * 1000), "retry_policy": {"maximum_attempts": 3}},
        out,
    )  # fmt: skip
    assert line == "activity_id=1 attempt=1 failure=gateway down retry_at=2026-12-02T12:00:00Z"
    long = details({"args": ["x" * 300]}, out)
    assert len(long) == 100 and long.endswith("…")


def test_a_batch_counts_done_skipped_and_failed_runs() -> None:
    async def act(r: WorkflowExecution) -> None:
        if r.status == "Completed":
            raise WorkflowNotRunningError(f"{r.workflow_id} is closed")
        if r.status == "Failed":
            raise RPCTimeoutError("no answer")

    result = asyncio.run(act_on(RUNS, act))
    assert result == BatchResult(1, 1, (("o-22", "no answer"),))
    out = captured()
    report_batch(out, "terminate", 3, result)
    assert printed(out).splitlines() == [
        "failed: o-22: no answer",
        "terminate: 3 matched, 1 done, 1 skipped (already closed), 1 failed",
    ]
    as_json = captured(output="json")
    report_batch(as_json, "terminate", 3, result)
    assert json.loads(printed(as_json))["failed"] == 1


def test_counts_print_the_total_then_each_status_most_frequent_first() -> None:
    out = captured()
    print_count(out, WorkflowCount(12, {"Completed": 2, "Running": 9, "Failed": 1}))
    assert printed(out).splitlines() == [
        "Total: 12",
        "STATUS     COUNT",
        "Running    9",
        "Completed  2",
        "Failed     1",
    ]
    as_json = captured(output="json")
    print_count(as_json, WorkflowCount(3, {"Running": 3}))
    assert json.loads(printed(as_json)) == {"count": 3, "groups": {"Running": 3}}


def test_a_batch_without_yes_says_how_many_runs_match_and_that_nothing_was_done() -> None:
    out = captured()
    report_dry_run(out, "terminate", "WorkflowType = 'Charge'", 7)
    assert printed(out) == (
        "7 runs match \"WorkflowType = 'Charge'\"; nothing done: add --yes to terminate them\n"
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (WorkflowNotFoundError("no run of workflow 'x'"), 3),
        (BrokerError("topic does not exist"), 4),
        (RPCTimeoutError("no answer"), 4),
        (KafkaException("broker down"), 4),
        (WorkflowFailureError("x", "FAILED", None), 1),
        (EverflowError("anything else"), 1),
    ],
)
def test_errors_map_to_the_documented_exit_codes(error: BaseException, code: int) -> None:
    assert exit_code(error) == code
