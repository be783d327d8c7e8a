"""A schedule's decisions: what a due time does under each overlap policy, which late due
times are still taken, and the run IDs that make a due time start at most one run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams.schedules import ScheduleOverlapPolicy
from streams.schedules.scheduler import (
    Verdict,
    action_workflow_id,
    overlap_verdict,
    within_catchup,
)

P = ScheduleOverlapPolicy
START, BUFFER, SKIP = Verdict.START, Verdict.BUFFER, Verdict.SKIP


@pytest.mark.parametrize(
    ("policy", "running", "buffered", "verdict"),
    [
        (P.SKIP, 0, 0, START),
        (P.SKIP, 1, 0, SKIP),
        (P.BUFFER_ONE, 0, 0, START),
        (P.BUFFER_ONE, 1, 0, BUFFER),
        (P.BUFFER_ONE, 1, 1, SKIP),
        (P.BUFFER_ALL, 0, 0, START),
        (P.BUFFER_ALL, 1, 0, BUFFER),
        (P.BUFFER_ALL, 1, 5, BUFFER),
        (P.BUFFER_ALL, 0, 1, BUFFER),  # a buffered one goes first: no overtaking
        (P.ALLOW_ALL, 0, 0, START),
        (P.ALLOW_ALL, 3, 0, START),
    ],
)
def test_overlap_policy_decides_a_due_time(
    policy: ScheduleOverlapPolicy, running: int, buffered: int, verdict: Verdict
) -> None:
    assert overlap_verdict(policy, running, buffered) is verdict


def test_a_due_time_older_than_the_catchup_window_is_missed() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    window = timedelta(minutes=5)
    assert within_catchup(now - timedelta(minutes=5), now, window)
    assert within_catchup(now, now, window)
    assert not within_catchup(now - timedelta(minutes=5, milliseconds=1), now, window)


def test_run_ids_name_the_due_time_in_utc() -> None:
    due = datetime(2026, 12, 3, 9, 0, 0, tzinfo=UTC)
    assert action_workflow_id("report", due) == "report-2026-12-03T09:00:00Z"
    assert action_workflow_id("report", due, triggered=True) == "report-2026-12-03T09:00:00.000Z"
    late = due + timedelta(milliseconds=1250)
    assert action_workflow_id("report", late) == "report-2026-12-03T09:00:01.250Z"
