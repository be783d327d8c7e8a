"""Invariants of a history, checked one event at a time (the pure part of `everflow audit`).

Per run: event IDs are 1, 2, 3… with no gap or repeat; the first event is the one start and
there is at most one close, with nothing after it; every activity result or attempt failure
is for a scheduled activity, and each attempt has at most one outcome; a timer fires at most
once, only if it was started, and not before it was due; a closed run has a record on
`completions`. Memory stays bounded: an open run keeps a small state, a closed one only a
64-bit fingerprint (so events arriving after its close are still caught).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from streams.wire.events import (
    ActivityAttemptFailed,
    ActivityCanceled,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    HistoryEvent,
    TimerCanceled,
    TimerFired,
    TimerStarted,
    WorkflowCanceled,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowTerminated,
    WorkflowTimedOut,
)

CLOSES = (
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowCanceled,
    WorkflowTerminated,
    WorkflowTimedOut,
    WorkflowContinuedAsNew,
)
OUTCOMES = (ActivityCompleted, ActivityFailed, ActivityAttemptFailed, ActivityCanceled)


@dataclass(frozen=True, slots=True)
class Violation:
    workflow_id: str
    run_id: str
    rule: str
    detail: str
    where: str  # topic/partition/offset

    def __str__(self) -> str:
        return f"{self.where} {self.workflow_id}/{self.run_id}: {self.rule}: {self.detail}"


@dataclass(slots=True)
class _Run:
    workflow_type: str
    last_id: int = 0
    scheduled: set[int] = field(default_factory=set)
    outcomes: set[tuple[int, int]] = field(default_factory=set)
    timers: dict[int, int] = field(default_factory=dict)  # started, not fired: id -> due


def fingerprint(workflow_id: str, run_id: str) -> int:
    digest = hashlib.blake2b(f"{workflow_id}\0{run_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class Auditor:
    """Feeds on history events in partition order; collects violations and counts."""

    def __init__(
        self,
        workflow_type: str | None = None,
        completions: set[int] | None = None,
        completions_since: int = 0,
        max_violations: int = 1000,
    ) -> None:
        """`completions`: fingerprints of the runs on `completions`, whose oldest record is
        from `completions_since` (ms); runs closed before that are not asked for one."""
        self.workflow_type = workflow_type
        self.completions = completions
        self.completions_since = completions_since
        self.max_violations = max_violations
        self.violations: list[Violation] = []
        self.violation_count = 0
        self.open: dict[tuple[str, str], _Run] = {}
        self.closed: set[int] = set()
        self.skipped: set[int] = set()  # runs of other workflow types
        self.events = 0
        self.runs = 0

    def _flag(self, event: HistoryEvent, rule: str, detail: str, where: str) -> None:
        self.violation_count += 1
        if len(self.violations) < self.max_violations:
            self.violations.append(Violation(event.workflow_id, event.run_id, rule, detail, where))

    def feed(self, event: HistoryEvent, where: str) -> None:
        key = (event.workflow_id, event.run_id)
        a = event.attributes
        run = self.open.get(key)
        if run is None:
            fp = fingerprint(*key)
            if fp in self.skipped:
                return
            if fp in self.closed:
                self.events += 1
                self._flag(event, "event after close", f"event {event.event_id}", where)
                return
            if not isinstance(a, WorkflowStarted):
                self.events += 1
                self._flag(
                    event,
                    "event for an unknown run",
                    f"event {event.event_id} ({type(a).__name__}) without a WorkflowStarted",
                    where,
                )
                return
            if self.workflow_type is not None and a.workflow_type != self.workflow_type:
                self.skipped.add(fp)
                return
            run = self.open[key] = _Run(a.workflow_type)
            self.runs += 1
        elif isinstance(a, WorkflowStarted):
            self._flag(event, "second start", f"event {event.event_id}", where)
        self.events += 1
        self._check(run, event, where)
        if isinstance(a, CLOSES):
            del self.open[key]
            fp = fingerprint(*key)
            self.closed.add(fp)
            if (
                self.completions is not None
                and event.time >= self.completions_since
                and fp not in self.completions
            ):
                self._flag(event, "closed without a completion record", type(a).__name__, where)

    def _check(self, run: _Run, event: HistoryEvent, where: str) -> None:
        expected = run.last_id + 1
        if event.event_id != expected:
            rule = "duplicate event" if event.event_id <= run.last_id else "gap in event ids"
            self._flag(event, rule, f"event {event.event_id}, expected {expected}", where)
        run.last_id = max(run.last_id, event.event_id)
        a = event.attributes
        match a:
            case ActivityScheduled():
                run.scheduled.add(a.activity_id)
            case (
                ActivityCompleted()
                | ActivityFailed()
                | ActivityAttemptFailed()
                | ActivityCanceled()
            ):
                name = type(a).__name__
                if a.activity_id not in run.scheduled:
                    self._flag(
                        event, "result of an unscheduled activity", f"{name} {a.activity_id}", where
                    )
                outcome = (a.activity_id, a.attempt)
                if outcome in run.outcomes:
                    self._flag(
                        event,
                        "second outcome of one attempt",
                        f"{name} activity {a.activity_id} attempt {a.attempt}",
                        where,
                    )
                run.outcomes.add(outcome)
            case TimerStarted():
                run.timers[a.timer_id] = a.fire_at
            case TimerFired():
                due = run.timers.pop(a.timer_id, None)
                if due is None:
                    self._flag(
                        event, "timer fired twice or never started", f"timer {a.timer_id}", where
                    )
                elif event.time < due:
                    self._flag(
                        event,
                        "timer fired early",
                        f"timer {a.timer_id} {due - event.time} ms early",
                        where,
                    )
            case TimerCanceled():
                run.timers.pop(a.timer_id, None)
            case _:
                pass
