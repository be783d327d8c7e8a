"""The audit's invariants, event by event (pure)."""

from __future__ import annotations

from processors.audit import Auditor, fingerprint
from streams.payload import to_payload
from streams.retry import RetryPolicy
from streams.wire.events import (
    ActivityCompleted,
    ActivityScheduled,
    HistoryEvent,
    SignalReceived,
    TimerFired,
    TimerStarted,
    WorkflowCompleted,
    WorkflowStarted,
)

START = WorkflowStarted("T", "q", [], "c")


def ev(i: int, attrs: object, t: int = 0, wf: str = "w") -> HistoryEvent:
    return HistoryEvent(wf, "r", i, t, attrs)  # type: ignore[arg-type]


def rules(auditor: Auditor) -> list[str]:
    return [v.rule for v in auditor.violations]


def test_a_well_formed_run_passes_and_is_counted() -> None:
    a = Auditor(completions={fingerprint("w", "r")})
    sched = ActivityScheduled(1, "act", "q", [], 1000, None, RetryPolicy())
    for e in [
        ev(1, START),
        ev(2, sched),
        ev(3, ActivityCompleted(1, 1, to_payload(1))),
        ev(4, TimerStarted(1, 100)),
        ev(5, TimerFired(1), t=100),
        ev(6, WorkflowCompleted(to_payload("ok"))),
    ]:
        a.feed(e, "h/0/0")
    assert rules(a) == [] and a.runs == 1 and a.events == 6 and not a.open


def test_each_broken_invariant_is_named() -> None:
    a = Auditor(completions=set())
    sched = ActivityScheduled(1, "act", "q", [], 1000, None, RetryPolicy())
    for e in [
        ev(1, START),
        ev(2, ActivityCompleted(9, 1, to_payload(1))),  # never scheduled
        ev(3, sched),
        ev(4, ActivityCompleted(1, 1, to_payload(1))),
        ev(5, ActivityCompleted(1, 1, to_payload(1))),  # second outcome of attempt 1
        ev(6, TimerStarted(1, 500)),
        ev(7, TimerFired(1), t=400),  # early
        ev(8, TimerFired(1), t=600),  # twice
        ev(8, SignalReceived("x")),  # duplicate id
        ev(10, SignalReceived("x")),  # gap
        ev(11, START),  # second start
        ev(12, WorkflowCompleted(to_payload("ok"))),  # no completion record
        ev(13, SignalReceived("late")),  # after close
        ev(2, SignalReceived("x"), wf="unknown"),
    ]:
        a.feed(e, "h/0/0")
    assert rules(a) == [
        "result of an unscheduled activity",
        "second outcome of one attempt",
        "timer fired early",
        "timer fired twice or never started",
        "duplicate event",
        "gap in event ids",
        "second start",
        "closed without a completion record",
        "event after close",
        "event for an unknown run",
    ]


def test_a_workflow_type_filter_skips_other_runs_entirely() -> None:
    a = Auditor(workflow_type="Other")
    a.feed(ev(1, START), "h/0/0")
    a.feed(ev(3, SignalReceived("gap, but not audited")), "h/0/1")
    assert a.runs == 0 and rules(a) == []
