"""When a schedule is due: cron expressions, calendars and intervals, the next due time, and
the schedule as JSON."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from streams.errors import ScheduleSpecError
from streams.schedules import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)
from streams.schedules.model import check_schedule, schedule_from_json, schedule_to_json
from streams.schedules.spec import due_times, next_due, parse_cron


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def cron_times(expression: str, after: str, n: int) -> list[str]:
    spec, out, t = ScheduleSpec(cron_expressions=[expression]), [], at(after)
    for _ in range(n):
        nxt = next_due(spec, t)
        assert nxt is not None
        out.append(nxt.strftime("%Y-%m-%d %H:%M:%S %a"))
        t = nxt
    return out


def test_every_fifteen_minutes_on_weekday_working_hours() -> None:
    # 2026-12-04 is a Friday
    assert cron_times("*/15 9-17 * * MON-FRI", "2026-12-04T17:40:00", 3) == [
        "2026-12-04 17:45:00 Fri",
        "2026-12-07 09:00:00 Mon",
        "2026-12-07 09:15:00 Mon",
    ]


def test_lists_ranges_with_steps_and_names() -> None:
    assert cron_times("5,35 0-6/3 * JAN,jul *", "2026-12-31T23:59:59", 4) == [
        "2027-01-01 00:05:00 Fri",
        "2027-01-01 00:35:00 Fri",
        "2027-01-01 03:05:00 Fri",
        "2027-01-01 03:35:00 Fri",
    ]


def test_a_start_with_a_step_runs_to_the_end_of_the_field() -> None:
    assert cron_times("50/5 12 * * *", "2026-12-03T12:00:00", 3) == [
        "2026-12-03 12:50:00 Thu",
        "2026-12-03 12:55:00 Thu",
        "2026-12-04 12:50:00 Fri",
    ]


def test_sunday_is_zero_or_seven() -> None:
    assert cron_times("0 8 * * 7", "2026-12-03T00:00:00", 1) == ["2026-12-06 08:00:00 Sun"]
    assert cron_times("0 8 * * 0", "2026-12-03T00:00:00", 1) == ["2026-12-06 08:00:00 Sun"]


def test_both_day_fields_restricted_match_either_as_in_cron() -> None:
    # the 13th, or any Friday
    assert cron_times("0 0 13 * FRI", "2026-12-03T00:00:00", 3) == [
        "2026-12-04 00:00:00 Fri",
        "2026-12-11 00:00:00 Fri",
        "2026-12-13 00:00:00 Sun",
    ]
    assert len(parse_cron("0 0 13 * FRI")) == 2
    assert len(parse_cron("0 0 13 * *")) == 1


def test_nicknames_and_a_leap_day() -> None:
    assert cron_times("@hourly", "2026-12-03T10:00:00", 1) == ["2026-12-03 11:00:00 Thu"]
    assert cron_times("@monthly", "2026-12-03T10:00:00", 1) == ["2027-01-01 00:00:00 Fri"]
    assert cron_times("0 12 29 2 *", "2026-12-03T00:00:00", 1) == ["2028-02-29 12:00:00 Tue"]


@pytest.mark.parametrize(
    ("expression", "named"),
    [
        ("* * * *", "needs five"),
        ("60 * * * *", "minute field '60' has 60, outside 0-59"),
        ("* 5-2 * * *", "start is after its end"),
        ("* * * FOO *", "not a number or a name"),
        ("*/0 * * * *", "step"),
        ("* * 0 * *", "day-of-month field '0'"),
    ],
)
def test_a_bad_cron_expression_names_its_field(expression: str, named: str) -> None:
    with pytest.raises(ScheduleSpecError, match="cron expression") as raised:
        parse_cron(expression)
    assert named in str(raised.value)


def test_an_interval_is_due_on_its_grid_from_the_epoch_plus_offset() -> None:
    spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(timedelta(hours=1), timedelta(minutes=5))])
    assert next_due(spec, at("2026-12-03T10:07:00")) == at("2026-12-03T11:05:00")
    assert next_due(spec, at("2026-12-03T10:04:59")) == at("2026-12-03T10:05:00")
    assert next_due(spec, at("2026-12-03T10:05:00")) == at("2026-12-03T11:05:00")  # strictly after
    every_second = ScheduleSpec(intervals=[ScheduleIntervalSpec(timedelta(seconds=1))])
    started = at("2026-12-03T10:00:00") + timedelta(milliseconds=250)
    assert list(due_times(every_second, started, started + timedelta(seconds=3))) == [
        at("2026-12-03T10:00:01"),
        at("2026-12-03T10:00:02"),
        at("2026-12-03T10:00:03"),
    ]


def test_a_calendar_with_seconds_and_the_union_of_specs() -> None:
    calendar = ScheduleCalendarSpec(
        second=(ScheduleRange(0, 59, 20),),
        minute=(ScheduleRange(0, 59),),
        hour=(ScheduleRange(9),),
        day_of_week=(ScheduleRange(1, 5),),
    )
    spec = ScheduleSpec(calendars=[calendar], cron_expressions=["30 9 * * SAT"])
    times = list(due_times(spec, at("2026-12-04T09:59:30"), at("2026-12-05T09:30:00")))
    assert times == [at("2026-12-04T09:59:40"), at("2026-12-05T09:30:00")]


def test_start_and_end_bound_the_due_times() -> None:
    spec = ScheduleSpec(
        intervals=[ScheduleIntervalSpec(timedelta(minutes=10))],
        start_at=at("2026-12-03T10:00:00"),
        end_at=at("2026-12-03T10:20:00"),
    )
    times = list(due_times(spec, at("2026-12-03T00:00:00"), at("2026-12-04T00:00:00")))
    assert times == [
        at("2026-12-03T10:00:00"),
        at("2026-12-03T10:10:00"),
        at("2026-12-03T10:20:00"),
    ]
    assert next_due(spec, at("2026-12-03T10:20:00")) is None


def test_a_calendar_that_never_matches_has_no_due_time() -> None:
    never = ScheduleCalendarSpec(day_of_month=(ScheduleRange(31),), month=(ScheduleRange(2),))
    assert next_due(ScheduleSpec(calendars=[never]), at("2026-12-03T00:00:00")) is None


def schedule(**spec: object) -> Schedule:
    action = ScheduleActionStartWorkflow("Report", "eu", 3, id="report", task_queue="q")
    return Schedule(action, ScheduleSpec(**spec))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({}, "no calendars, intervals or cron"),
        ({"intervals": [ScheduleIntervalSpec(timedelta(milliseconds=10))]}, "under one second"),
        (
            {"intervals": [ScheduleIntervalSpec(timedelta(minutes=1), timedelta(minutes=2))]},
            "offset",
        ),
        ({"calendars": [ScheduleCalendarSpec(hour=(ScheduleRange(24),))]}, "hour range 24-24"),
        ({"cron_expressions": ["* * *"]}, "five"),
        (
            {"cron_expressions": ["@daily"], "start_at": datetime(2026, 1, 1)},
            "naive",
        ),
    ],
)
def test_a_schedule_that_cannot_run_is_refused(bad: dict[str, object], named: str) -> None:
    with pytest.raises(ScheduleSpecError, match=named):
        check_schedule(schedule(**bad))


def test_a_schedule_round_trips_through_json() -> None:
    original = Schedule(
        action=ScheduleActionStartWorkflow("Report", {"region": "eu"}, 3, id="r", task_queue="q"),
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(hour=(ScheduleRange(1, 5, 2),), comment="odd")],
            intervals=[ScheduleIntervalSpec(timedelta(minutes=5), timedelta(seconds=30))],
            cron_expressions=["0 2 * * *"],
            start_at=at("2026-12-01T00:00:00"),
        ),
        policy=SchedulePolicy(ScheduleOverlapPolicy.BUFFER_ALL, timedelta(minutes=3), True),
        state=ScheduleState(paused=True, note="freeze"),
    )
    back = schedule_from_json(schedule_to_json(original))
    assert schedule_to_json(back) == schedule_to_json(original)
    assert back.action.args == ({"region": "eu"}, 3)
    assert back.policy.overlap is ScheduleOverlapPolicy.BUFFER_ALL
    assert back.spec.intervals[0].offset == timedelta(seconds=30)
    assert back.spec.start_at == at("2026-12-01T00:00:00")
    assert back.state == ScheduleState(True, "freeze")


def test_an_action_takes_its_arguments_as_positionals_or_args_and_can_be_replaced() -> None:
    positional = ScheduleActionStartWorkflow("Report", "eu", 3, id="r", task_queue="q")
    keyword = ScheduleActionStartWorkflow("Report", args=["eu", 3], id="r", task_queue="q")
    assert positional == keyword and keyword.args == ("eu", 3)
    moved = replace(positional, task_queue="other")
    assert (moved.args, moved.task_queue) == (("eu", 3), "other")
    with pytest.raises(TypeError, match="not both"):
        ScheduleActionStartWorkflow("Report", "eu", args=["eu"], id="r", task_queue="q")
