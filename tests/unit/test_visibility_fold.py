"""The run index's fold: history events into a run's row, and the guard that makes re-reads
harmless."""

from __future__ import annotations

import json
import random

import pytest

from processors.visibility.fold import attribute_types, fold
from streams.payload import Payload
from streams.retry import RetryPolicy
from streams.visibility.records import RunRow
from streams.wire.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityRetried,
    ActivityScheduled,
    ActivityStarted,
    EventAttributes,
    HistoryEvent,
    SearchAttributesUpserted,
    SignalReceived,
    TimerFired,
    TimerStarted,
    WorkflowBlocked,
    WorkflowCanceled,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowTerminated,
    WorkflowTimedOut,
    WorkflowUnblocked,
)
from streams.wire.records import Failure, SearchAttribute, SearchAttributeType

PAYLOAD = Payload(metadata={}, data=b"null")


def attr(name: str, type_: SearchAttributeType, value: object) -> SearchAttribute:
    return SearchAttribute(name, type_, json.dumps(value))


def history(*bodies: EventAttributes, run_id: str = "r1") -> list[HistoryEvent]:
    return [HistoryEvent("wf", run_id, i, 1000 + 10 * i, b) for i, b in enumerate(bodies, 1)]


def fold_all(events: list[HistoryEvent], row: RunRow | None = None) -> RunRow | None:
    for e in events:
        row = fold(row, e)
    return row


def started(**kw: object) -> WorkflowStarted:
    return WorkflowStarted("Transfer", "transfers", [], "c1", **kw)  # type: ignore[arg-type]


def scheduled(activity_id: int, maximum_attempts: int = 0) -> ActivityScheduled:
    policy = RetryPolicy(maximum_attempts=maximum_attempts)
    return ActivityScheduled(activity_id, "deposit", "transfers", [], None, None, policy)


def test_a_run_closes_with_its_status_times_and_history_length() -> None:
    row = fold_all(
        history(started(), TimerStarted(1, 5000), TimerFired(1), WorkflowCompleted(PAYLOAD))
    )
    assert row is not None
    assert (row.status, row.start_time, row.close_time) == ("Completed", 1010, 1040)
    assert row.execution_duration == 30
    assert row.last_event_id == 4
    assert (row.workflow_id, row.workflow_type, row.task_queue) == ("wf", "Transfer", "transfers")


def test_blocked_is_set_by_workflow_blocked_and_cleared_by_unblocked() -> None:
    failure = Failure("boom", "NonDeterminismError")
    events = history(started(), WorkflowBlocked("non-determinism", failure), WorkflowUnblocked())
    assert fold_all(events[:2]).status == "Blocked"  # type: ignore[union-attr]
    assert fold_all(events).status == "Running"  # type: ignore[union-attr]


def test_a_failing_activity_shows_attempt_last_failure_and_next_retry() -> None:
    events = history(
        started(),
        scheduled(1, maximum_attempts=5),
        ActivityStarted(1, 1),
        ActivityAttemptFailed(1, 1, Failure("card declined", "ApplicationError"), retry_at=9000),
        ActivityRetried(1, 2),
        ActivityStarted(1, 2),
        ActivityAttemptFailed(1, 2, Failure("card declined again", "ApplicationError"), 12000),
    )
    row = fold_all(events)
    assert row is not None
    (pending,) = row.activities
    assert (pending.attempt, pending.maximum_attempts) == (2, 5)
    assert (pending.last_failure, pending.next_retry_time) == ("card declined again", 12000)
    assert row.max_attempt == 2
    assert fold_all(events, row) is row  # nothing newer: the very same row
    done = fold(row, HistoryEvent("wf", "r1", 8, 2000, ActivityCompleted(1, 2, PAYLOAD)))
    assert done is not None and done.activities == () and done.max_attempt == 0


def test_search_attributes_are_typed_set_at_start_upserted_and_removed() -> None:
    events = history(
        started(search_attributes=[attr("Customer", SearchAttributeType.KEYWORD, "acme")]),
        SearchAttributesUpserted(
            [
                attr("Amount", SearchAttributeType.INT, 120),
                attr("Tags", SearchAttributeType.KEYWORD_LIST, ["vip", "eu"]),
            ]
        ),
        SearchAttributesUpserted(
            [SearchAttribute("Customer", SearchAttributeType.KEYWORD, "null")]
        ),
    )
    row = fold_all(events)
    assert row is not None
    assert row.search_attributes == {"Amount": 120, "Tags": ["vip", "eu"]}
    assert attribute_types(events[0]) == {"Customer": SearchAttributeType.KEYWORD}
    assert attribute_types(events[1])["Tags"] is SearchAttributeType.KEYWORD_LIST


def test_events_of_a_run_without_its_start_make_no_row() -> None:
    assert fold(None, history(started(), TimerStarted(1, 5))[1]) is None


def test_a_replayed_event_never_moves_a_closed_run_back() -> None:
    events = history(
        started(),
        ActivityScheduled(1, "a", "q", [], None, None, RetryPolicy()),
        WorkflowFailed(Failure("x", "E")),
    )
    closed = fold_all(events)
    assert closed is not None and closed.status == "Failed"
    assert fold_all(events, closed) == closed


def random_history(rng: random.Random, run_id: str) -> list[HistoryEvent]:
    bodies: list[EventAttributes] = [
        started(search_attributes=[attr("Region", SearchAttributeType.KEYWORD, "eu")])
    ]
    open_activities: dict[int, int] = {}
    next_id = 1
    for _ in range(rng.randint(0, 40)):
        roll = rng.random()
        if roll < 0.2 or not open_activities:
            open_activities[next_id] = 1
            bodies.append(scheduled(next_id, maximum_attempts=rng.choice([0, 3])))
            next_id += 1
            continue
        aid = rng.choice(sorted(open_activities))
        attempt = open_activities[aid]
        if roll < 0.4:
            bodies.append(ActivityStarted(aid, attempt))
        elif roll < 0.55:
            failure = Failure(f"failure {aid}/{attempt}", "E")
            bodies.append(ActivityAttemptFailed(aid, attempt, failure, 1000 * attempt))
            open_activities[aid] = attempt + 1
            bodies.append(ActivityRetried(aid, attempt + 1))
        elif roll < 0.65:
            bodies.append(ActivityCompleted(aid, attempt, PAYLOAD))
            del open_activities[aid]
        elif roll < 0.75:
            bodies.append(
                SearchAttributesUpserted([attr("Step", SearchAttributeType.INT, rng.randint(0, 9))])
            )
        elif roll < 0.85:
            bodies.append(WorkflowBlocked("stuck", Failure("x", "E")))
            bodies.append(WorkflowUnblocked())
        else:
            bodies.append(SignalReceived("poke"))
    if rng.random() < 0.6:
        bodies.append(rng.choice([WorkflowCompleted(PAYLOAD), WorkflowFailed(Failure("x", "E"))]))
    return history(*bodies, run_id=run_id)


@pytest.mark.parametrize("seed", range(200))
def test_re_reading_any_prefix_or_overlap_equals_one_fold_in_order(seed: int) -> None:
    """The projector may re-read from any earlier offset after a crash: the result must be
    the row of one in-order fold, whatever was applied before and again."""
    rng = random.Random(seed)
    events = random_history(rng, f"r{seed}")
    expected = fold_all(events)
    row: RunRow | None = None
    applied = 0  # events 1..applied are folded; a re-read restarts at or before the next one
    while applied < len(events):
        start = rng.randint(0, applied)
        end = rng.randint(applied + 1, len(events))
        row = fold_all(events[start:end], row)
        applied = end
        # and a later stray re-read of anything already applied changes nothing
        a, b = sorted(rng.sample(range(applied + 1), 2))
        assert fold_all(events[a:b], row) == row
    assert row == expected


@pytest.mark.parametrize(
    ("close", "status"),
    [
        (WorkflowCompleted(PAYLOAD), "Completed"),
        (WorkflowFailed(Failure("x", "E")), "Failed"),
        (WorkflowCanceled(), "Canceled"),
        (WorkflowTerminated("ops"), "Terminated"),
        (WorkflowTimedOut("execution"), "TimedOut"),
        (WorkflowContinuedAsNew("r2"), "ContinuedAsNew"),
    ],
)
def test_every_close_has_its_status_and_leaves_no_pending_activity(
    close: EventAttributes, status: str
) -> None:
    row = fold_all(history(started(), scheduled(1), close))
    assert row is not None
    assert (row.status, row.close_time, row.activities) == (status, 1030, ())
    blocked_late = fold(
        row, HistoryEvent("wf", "r1", 4, 2000, WorkflowBlocked("x", Failure("x", "E")))
    )
    assert blocked_late is not None and blocked_late.status == status
