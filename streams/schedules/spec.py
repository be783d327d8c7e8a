"""When a schedule is due: calendars, intervals and cron expressions, and the next due time.

Pure functions of the spec and an instant (no clock): the schedule workflow asks them with
`workflow.now()`, so a replay computes the same times. Every time is UTC.

- A calendar (`ScheduleCalendarSpec`) matches the instants whose second, minute, hour, day of
  the month, month and day of the week are each in the field's ranges (all must match).
- An interval (`ScheduleIntervalSpec(every, offset)`) is due at `epoch + offset + k * every`
  for every whole k (epoch: 1970-01-01T00:00:00Z), so `every=timedelta(hours=1),
  offset=timedelta(minutes=5)` fires at five past each hour, whenever it was created.
- A cron expression has five fields, `minute hour day-of-month month day-of-week`, each `*`,
  a number, a range `a-b`, a step `*/n`, `a-b/n` or `a/n`, or a comma list of them; months
  and weekdays also by name (`JAN`, `MON`), Sunday as 0 or 7; `@yearly`, `@monthly`,
  `@weekly`, `@daily`, `@hourly` stand for their usual expressions. As in cron, when both
  day fields are restricted a day matching either one matches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from streams.errors import ScheduleSpecError

__all__ = [
    "ScheduleCalendarSpec",
    "ScheduleIntervalSpec",
    "ScheduleRange",
    "ScheduleSpec",
    "due_times",
    "next_due",
    "parse_cron",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SEARCH_YEARS = 5  # a calendar with no match within this many years matches never


@dataclass(frozen=True, slots=True)
class ScheduleRange:
    """The values `start`, `start + step`, … up to `end` (inclusive; None: `start` only)."""

    start: int
    end: int | None = None
    step: int = 1

    def values(self) -> range:
        return range(self.start, (self.start if self.end is None else self.end) + 1, self.step)


ALL_DAYS = (ScheduleRange(1, 31),)
ALL_MONTHS = (ScheduleRange(1, 12),)
ALL_WEEKDAYS = (ScheduleRange(0, 6),)


@dataclass(frozen=True, slots=True)
class ScheduleCalendarSpec:
    """Instants whose every field is in its ranges (UTC). Defaults: second 0, minute 0,
    hour 0, any day of the month, any month, any day of the week (0 is Sunday) — so
    `ScheduleCalendarSpec(hour=(ScheduleRange(9),))` is every day at 09:00:00."""

    second: Sequence[ScheduleRange] = (ScheduleRange(0),)
    minute: Sequence[ScheduleRange] = (ScheduleRange(0),)
    hour: Sequence[ScheduleRange] = (ScheduleRange(0),)
    day_of_month: Sequence[ScheduleRange] = ALL_DAYS
    month: Sequence[ScheduleRange] = ALL_MONTHS
    day_of_week: Sequence[ScheduleRange] = ALL_WEEKDAYS
    comment: str = ""


@dataclass(frozen=True, slots=True)
class ScheduleIntervalSpec:
    """Due at `epoch + offset + k * every` (see the module's docstring)."""

    every: timedelta
    offset: timedelta = timedelta(0)


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """When the schedule is due: the union of its calendars, intervals and cron
    expressions, from `start_at` (inclusive) to `end_at` (inclusive), both optional."""

    calendars: Sequence[ScheduleCalendarSpec] = ()
    intervals: Sequence[ScheduleIntervalSpec] = ()
    cron_expressions: Sequence[str] = ()
    start_at: datetime | None = None
    end_at: datetime | None = None


# ---- checking -----------------------------------------------------------------------------
_BOUNDS = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day_of_month": (1, 31),
    "month": (1, 12),
    "day_of_week": (0, 6),
}


def check_spec(spec: ScheduleSpec) -> None:
    """Raises ScheduleSpecError for a spec that can never be due or is malformed."""
    if not (spec.calendars or spec.intervals or spec.cron_expressions):
        raise ScheduleSpecError(
            "the schedule spec has no calendars, intervals or cron expressions; give it one"
        )
    for interval in spec.intervals:
        if interval.every < timedelta(seconds=1):
            raise ScheduleSpecError(f"interval every={interval.every} is under one second")
        if not timedelta(0) <= interval.offset < interval.every:
            raise ScheduleSpecError(
                f"interval offset={interval.offset} must be at least 0 and less than "
                f"every={interval.every}"
            )
    for calendar in spec.calendars:
        _check_calendar(calendar)
    for expression in spec.cron_expressions:
        parse_cron(expression)
    for name, at in (("start_at", spec.start_at), ("end_at", spec.end_at)):
        if at is not None and at.tzinfo is None:
            raise ScheduleSpecError(f"{name}={at} is naive; give an aware datetime (UTC)")


def _check_calendar(calendar: ScheduleCalendarSpec) -> None:
    for name, (low, high) in _BOUNDS.items():
        ranges = getattr(calendar, name)
        if not ranges:
            raise ScheduleSpecError(f"calendar field {name} has no ranges; it would never match")
        for r in ranges:
            end = r.start if r.end is None else r.end
            if r.step < 1 or not low <= r.start <= end <= high:
                raise ScheduleSpecError(
                    f"calendar field {name} range {r.start}-{end}/{r.step} is outside "
                    f"{low}-{high} (or its step is under 1)"
                )


# ---- cron ---------------------------------------------------------------------------------
_MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
_WEEKDAYS = "SUN MON TUE WED THU FRI SAT".split()
_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day_of_month", 1, 31, {}),
    ("month", 1, 12, {name: i + 1 for i, name in enumerate(_MONTHS)}),
    ("day_of_week", 0, 7, {name: i for i, name in enumerate(_WEEKDAYS)}),
)


def parse_cron(expression: str) -> list[ScheduleCalendarSpec]:
    """The calendars a five-field cron expression stands for (two when both day fields are
    restricted: a day matching either one matches). ScheduleSpecError names the bad field."""
    text = _NICKNAMES.get(expression.strip().lower(), expression)
    fields = text.split()
    if len(fields) != 5:
        raise ScheduleSpecError(
            f"cron expression {expression!r} has {len(fields)} fields; it needs five: "
            "minute hour day-of-month month day-of-week (or @daily, @hourly, ...)"
        )
    parsed: dict[str, tuple[ScheduleRange, ...]] = {}
    for text_field, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        try:
            parsed[name] = _cron_field(text_field, low, high, names)
        except ValueError as e:
            raise ScheduleSpecError(
                f"cron expression {expression!r}: {name.replace('_', '-')} field {text_field!r} {e}"
            ) from None
    weekdays = _fold_sunday(parsed["day_of_week"])
    common = {"second": (ScheduleRange(0),), "minute": parsed["minute"], "hour": parsed["hour"]}
    month, comment = parsed["month"], f"cron {expression}"
    days_restricted = not fields[2].startswith("*")
    weekdays_restricted = not fields[4].startswith("*")
    if days_restricted and weekdays_restricted:
        return [
            ScheduleCalendarSpec(
                **common, day_of_month=parsed["day_of_month"], month=month, comment=comment
            ),
            ScheduleCalendarSpec(**common, month=month, day_of_week=weekdays, comment=comment),
        ]
    return [
        ScheduleCalendarSpec(
            **common,
            day_of_month=parsed["day_of_month"],
            month=month,
            day_of_week=weekdays,
            comment=comment,
        )
    ]


def _cron_field(text: str, low: int, high: int, names: dict[str, int]) -> tuple[ScheduleRange, ...]:
    def number(word: str) -> int:
        value = names.get(word.upper())
        if value is None:
            if not word.isdigit():
                raise ValueError(f"has {word!r}, which is not a number or a name")
            value = int(word)
        if not low <= value <= high:
            raise ValueError(f"has {value}, outside {low}-{high}")
        return value

    ranges: list[ScheduleRange] = []
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        if step_text and (not step_text.isdigit() or int(step_text) < 1):
            raise ValueError(f"has step {step_text!r}; a step is a whole number of 1 or more")
        step = int(step_text) if step_text else 1
        if span == "*":
            start, end = low, high
        elif "-" in span:
            first, _, last = span.partition("-")
            start, end = number(first), number(last)
            if start > end:
                raise ValueError(f"has the range {span!r}, whose start is after its end")
        else:
            start = number(span)
            end = high if step_text else start  # `5/10`: from 5 in steps of 10
        ranges.append(ScheduleRange(start, end, step))
    return tuple(ranges)


def _fold_sunday(ranges: tuple[ScheduleRange, ...]) -> tuple[ScheduleRange, ...]:
    """Cron allows 7 for Sunday; calendars count 0-6."""
    days = sorted({d % 7 for r in ranges for d in r.values()})
    return tuple(ScheduleRange(d) for d in days)


# ---- next due time ------------------------------------------------------------------------
def next_due(spec: ScheduleSpec, after: datetime) -> datetime | None:
    """The first instant strictly after `after` at which `spec` is due, or None (past
    `end_at`, or no calendar matches within five years)."""
    if spec.start_at is not None and after < spec.start_at:
        after = spec.start_at - timedelta(microseconds=1)
    candidates: list[datetime | None] = [_next_interval(i, after) for i in spec.intervals]
    calendars = [*spec.calendars, *(c for e in spec.cron_expressions for c in parse_cron(e))]
    candidates += [_next_calendar(c, after) for c in calendars]
    found = [c for c in candidates if c is not None]
    if not found:
        return None
    first = min(found)
    return None if spec.end_at is not None and first > spec.end_at else first


def due_times(spec: ScheduleSpec, after: datetime, until: datetime) -> Iterator[datetime]:
    """Every due time in (`after`, `until`], in order."""
    at = next_due(spec, after)
    while at is not None and at <= until:
        yield at
        at = next_due(spec, at)


def _next_interval(interval: ScheduleIntervalSpec, after: datetime) -> datetime:
    k = (after - EPOCH - interval.offset) // interval.every + 1  # exact, floored
    return EPOCH + interval.offset + k * interval.every


def _next_calendar(calendar: ScheduleCalendarSpec, after: datetime) -> datetime | None:
    sets = {name: _value_set(getattr(calendar, name)) for name in _BOUNDS}
    at = after.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
    limit = at + timedelta(days=366 * SEARCH_YEARS)
    # walk down the fields: a field that does not match moves to its next unit's start,
    # so the walk takes at most a few steps per day of the search, never per second
    while at < limit:
        if at.month not in sets["month"]:
            at = _next_month(at)
        elif at.day not in sets["day_of_month"] or _weekday(at) not in sets["day_of_week"]:
            at = at.replace(hour=0, minute=0, second=0) + timedelta(days=1)
        elif at.hour not in sets["hour"]:
            at = at.replace(minute=0, second=0) + timedelta(hours=1)
        elif at.minute not in sets["minute"]:
            at = at.replace(second=0) + timedelta(minutes=1)
        elif at.second not in sets["second"]:
            at += timedelta(seconds=1)
        else:
            return at
    return None


def _value_set(ranges: Sequence[ScheduleRange]) -> frozenset[int]:
    return frozenset(v for r in ranges for v in r.values())


def _weekday(at: datetime) -> int:
    return (at.weekday() + 1) % 7  # Python: Monday 0; calendars: Sunday 0


def _next_month(at: datetime) -> datetime:
    year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
    return at.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
