"""A run's history as the run page shows it (pure, no I/O but `linecache`): payloads decoded
or named as undecodable, what the run waits on, the compact view (one line per activity,
timer, child or signal), the timeline's bars, the rows of the full table, and where the
code stands (the `__stack_trace` answer parsed, or the location recorded with the latest
command) with the source lines around it."""

from __future__ import annotations

import linecache
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams.errors import PayloadDecodeError, PayloadStoreError
from streams.payload import ENCODING, ENCRYPTED, KEY_ID, STORED, DataConverter, Payload
from streams.ui.context import format_millis
from streams.visibility.history_fold import CLOSES
from streams.wire.events import (
    ActivityAttemptFailed,
    ActivityCanceled,
    ActivityCompleted,
    ActivityFailed,
    ActivityRetried,
    ActivityScheduled,
    ActivityStarted,
    ChildWorkflowClosed,
    ChildWorkflowInitiated,
    ChildWorkflowStarted,
    ChildWorkflowStartFailed,
    HistoryEvent,
    SignalReceived,
    TimerCanceled,
    TimerFired,
    TimerStarted,
    WorkflowBlocked,
    WorkflowUnblocked,
)
from streams.wire.history_json import SUMMARY_QUIET, event_summary, event_to_json
from streams.wire.records import Failure, SourceLocation

# ---- payloads -----------------------------------------------------------------------------


def show_payload(converter: DataConverter, payload: Payload | None) -> str:
    """A payload as pretty JSON, or what it is when the converter cannot decode it (an
    unknown encoding, an encrypted payload without its codec): never an error."""
    if payload is None:
        return ""
    if payload.metadata.get(ENCODING) == STORED and _stored_size(payload) > SHOWN_STORED_BYTES:
        return stored(payload, "too large to show here")  # never fetched for a page
    try:
        value = converter.from_payload(payload)
    except PayloadStoreError as e:  # missing, corrupt, or no store configured here
        return stored(payload, str(e))
    except (PayloadDecodeError, ValueError, TypeError, orjson.JSONDecodeError):
        return undecodable(payload)
    return show_value(value)


SHOWN_STORED_BYTES = 1024 * 1024  # a stored payload larger than this is described, not shown


def _stored_size(payload: Payload) -> int:
    try:
        return int(payload.metadata.get("size", b"0"))
    except ValueError:
        return 0


def stored(payload: Payload, note: str) -> str:
    """A payload kept in the payload store, described by its reference."""
    meta = payload.metadata
    key = meta.get("key", b"?").decode("utf-8", "replace")
    return f"stored payload ({_stored_size(payload):,} bytes, key {key}): {note}"


def show_payloads(converter: DataConverter, payloads: list[Payload]) -> str:
    """Arguments: one payload shown alone, several as a JSON list (undecodable ones named)."""
    if len(payloads) == 1:
        return show_payload(converter, payloads[0])
    return "[\n" + ",\n".join(show_payload(converter, p) for p in payloads) + "\n]"


def undecodable(payload: Payload) -> str:
    encoding = payload.metadata.get(ENCODING, b"?").decode("utf-8", "replace")
    key_id = payload.metadata.get(KEY_ID)
    if encoding == ENCRYPTED.decode() and key_id is not None:
        return (
            f"encrypted payload (key {key_id.decode('utf-8', 'replace')!r}, "
            f"{len(payload.data)} bytes): this UI holds no such key; give it the key file "
            "(EVERFLOW_PAYLOAD_KEYS) or a codec server (EVERFLOW_CODEC_ENDPOINT)"
        )
    return f"encrypted or undecodable payload (encoding: {encoding}, {len(payload.data)} bytes)"


def show_value(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()
    except TypeError:
        return repr(value)


# ---- what the run waits on ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingTimer:
    """A timer started and neither fired nor canceled."""

    timer_id: int
    fire_at: int  # epoch ms
    source: SourceLocation | None


@dataclass(frozen=True, slots=True)
class Blocked:
    """Why the run is blocked (non-determinism): the reason and the failure with its stack."""

    reason: str
    failure: Failure


def pending_timers(events: list[HistoryEvent]) -> list[PendingTimer]:
    """The timers of the history still to fire, soonest first (none once the run closed)."""
    timers: dict[int, PendingTimer] = {}
    for event in events:
        a = event.attributes
        if isinstance(a, CLOSES):
            return []
        if isinstance(a, TimerStarted):
            timers[a.timer_id] = PendingTimer(a.timer_id, a.fire_at, a.source)
        elif isinstance(a, TimerFired | TimerCanceled):
            timers.pop(a.timer_id, None)
    return sorted(timers.values(), key=lambda t: t.fire_at)


def blocked(events: list[HistoryEvent]) -> Blocked | None:
    """The run's last WorkflowBlocked not followed by a WorkflowUnblocked or a close."""
    found: Blocked | None = None
    for event in events:
        a = event.attributes
        if isinstance(a, WorkflowBlocked):
            found = Blocked(a.reason, a.failure)
        elif isinstance(a, (WorkflowUnblocked, *CLOSES)):
            found = None
    return found


# ---- where the code stands ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of the stack query's answer: `file:line in function` and its source."""

    file: str
    line: int
    function: str
    source: str = ""


@dataclass(frozen=True, slots=True)
class SourceLine:
    number: int
    text: str
    current: bool


@dataclass(frozen=True, slots=True)
class RecordedLocation:
    """Where the code was when it issued its latest command (from history)."""

    event_id: int
    command: str  # "activity 'charge'", "a timer", "child workflow 'x'"
    source: SourceLocation


_FRAME = re.compile(r"^(?P<file>.+):(?P<line>\d+) in (?P<function>\S+)$")


def parse_stack(text: str) -> list[list[Frame]]:
    """The `__stack_trace` answer as one list of frames per task (outermost first)."""
    tasks: list[list[Frame]] = []
    for block in text.split("\n\n"):
        frames: list[Frame] = []
        for line in block.splitlines():
            match = _FRAME.match(line)
            if match:
                frames.append(Frame(match["file"], int(match["line"]), match["function"]))
            elif frames and line.startswith("    "):
                last = frames[-1]
                frames[-1] = Frame(last.file, last.line, last.function, line.strip())
        if frames:
            tasks.append(frames)
    return tasks


_NO_SOURCE_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


def readable_source(file: str) -> str | None:
    """`file` resolved, when it is a Python source this host may show: an existing regular
    file ending in .py (symlinks followed), outside /proc, /sys and /dev. The name comes
    from a run's history or a worker's answer, so nothing else on this host is read."""
    try:
        path = Path(file).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if path.suffix != ".py" or any(path.is_relative_to(r) for r in _NO_SOURCE_ROOTS):
        return None
    return str(path) if path.is_file() else None


def source_lines(file: str, line: int, around: int = 4) -> list[SourceLine]:
    """The lines of `file` around `line` (the current one marked), from this host's copy of
    the file (as it is now: a redeploy shows the new source); empty when this host does not
    have it or it is not a Python source file (see `readable_source`)."""
    path = readable_source(file)
    if path is None:
        return []
    linecache.checkcache(path)
    file = path
    lines = []
    for number in range(max(1, line - around), line + around + 1):
        text = linecache.getline(file, number)
        if not text and number >= line:
            break
        lines.append(SourceLine(number, text.rstrip("\n"), number == line))
    return lines if any(s.current and s.text for s in lines) else []


def recorded_location(events: list[HistoryEvent]) -> RecordedLocation | None:
    """The source location recorded with the run's latest ActivityScheduled, TimerStarted
    or ChildWorkflowInitiated (where the code was when it last scheduled something)."""
    for event in reversed(events):
        a = event.attributes
        if isinstance(a, ActivityScheduled) and a.source is not None:
            return RecordedLocation(event.event_id, f"activity {a.activity_type!r}", a.source)
        if isinstance(a, TimerStarted) and a.source is not None:
            return RecordedLocation(event.event_id, f"timer {a.timer_id}", a.source)
        if isinstance(a, ChildWorkflowInitiated) and a.source is not None:
            return RecordedLocation(event.event_id, f"child workflow {a.workflow_type!r}", a.source)
    return None


def awaits(stack: list[list[Frame]]) -> list[str]:
    """What the code awaits, read from the innermost frame of each task: a condition, a
    signal, a sleep…, as its source line says (`await workflow.wait_condition(…)`)."""
    found = []
    for frames in stack:
        inner = frames[-1]
        if inner.source:
            found.append(inner.source)
    return found


# ---- compact view -------------------------------------------------------------------------


@dataclass(slots=True)
class CompactRow:
    """One activity, timer, child or signal name: what happened to it, in order."""

    kind: str  # activity | timer | child | signal
    key: str
    label: str
    first_event_id: int
    steps: list[str] = field(default_factory=list)
    attempts: int = 0
    state: str = "pending"  # pending | completed | failed | canceled | fired | received
    failure: str = ""


def compact(events: list[HistoryEvent]) -> list[CompactRow]:
    """The history grouped: one row per activity / timer / child / signal name, in the order
    each first appears, with its steps (scheduled → started → completed) and attempts."""
    rows: dict[str, CompactRow] = {}

    def row(kind: str, key: object, label: str, event: HistoryEvent) -> CompactRow:
        k = f"{kind}:{key}"
        if k not in rows:
            rows[k] = CompactRow(kind, str(key), label, event.event_id)
        return rows[k]

    for event in events:
        a = event.attributes
        match a:
            case ActivityScheduled():
                r = row("activity", a.activity_id, a.activity_type, event)
                r.steps.append("scheduled locally" if a.local else "scheduled")
            case ActivityStarted() | ActivityRetried():
                r = row("activity", a.activity_id, "", event)
                verb = "started" if isinstance(a, ActivityStarted) else "retried"
                r.steps.append(f"{verb} #{a.attempt}")
                r.attempts = max(r.attempts, a.attempt)
            case ActivityAttemptFailed():
                r = row("activity", a.activity_id, "", event)
                r.steps.append(f"failed #{a.attempt}")
                r.failure = a.failure.message
                r.attempts = max(r.attempts, a.attempt)
            case ActivityCompleted() | ActivityFailed() | ActivityCanceled():
                r = row("activity", a.activity_id, "", event)
                r.attempts = max(r.attempts, a.attempt)
                if isinstance(a, ActivityCompleted):
                    r.steps.append("completed")
                    r.state = "completed"
                elif isinstance(a, ActivityFailed):
                    r.steps.append("failed")
                    r.state, r.failure = "failed", a.failure.message
                else:
                    r.steps.append("canceled")
                    r.state = "canceled"
            case TimerStarted():
                row("timer", a.timer_id, f"timer {a.timer_id}", event).steps.append("started")
            case TimerFired():
                r = row("timer", a.timer_id, f"timer {a.timer_id}", event)
                r.steps.append("fired")
                r.state = "fired"
            case TimerCanceled():
                r = row("timer", a.timer_id, f"timer {a.timer_id}", event)
                r.steps.append("canceled")
                r.state = "canceled"
            case ChildWorkflowInitiated():
                label = f"{a.workflow_type} {a.workflow_id}"
                row("child", a.seq, label, event).steps.append("initiated")
            case ChildWorkflowStarted():
                row("child", a.seq, "", event).steps.append("started")
            case ChildWorkflowStartFailed():
                r = row("child", a.seq, "", event)
                r.steps.append("start failed")
                r.state, r.failure = "failed", a.message
            case ChildWorkflowClosed():
                r = row("child", a.seq, "", event)
                r.steps.append(a.status.lower())
                r.state = "completed" if a.status == "Completed" else "failed"
            case SignalReceived():
                r = row("signal", a.signal_name, f"signal {a.signal_name}", event)
                r.attempts += 1
                r.state = "received"
            case _:
                pass
    for r in rows.values():
        if r.kind == "signal":
            r.steps = [f"received {r.attempts} time{'s' if r.attempts > 1 else ''}"]
    return list(rows.values())


# ---- timeline -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar of the timeline: an activity attempt or a timer, from start to end (epoch ms;
    end None: still open), as percentages of the timeline's width."""

    lane: int
    label: str
    kind: str  # activity | timer
    start: int
    end: int | None
    failed: bool
    left: float
    width: float


@dataclass(frozen=True, slots=True)
class Timeline:
    start: int
    end: int
    lanes: list[str]
    bars: list[Bar]


def timeline(events: list[HistoryEvent], now: int) -> Timeline:
    """Bars over time: one per activity attempt (from its start, retry or scheduling to
    its end; failures red) and one per timer (started to fired), each activity and timer on
    its own lane; positions and widths in percent of the run's span."""
    spans: list[tuple[str, str, int, int | None, bool]] = []  # lane key, kind, start, end, failed
    labels: dict[str, str] = {}
    open_attempt: dict[int, int] = {}
    timers: dict[int, int] = {}
    for event in events:
        a, t = event.attributes, event.time
        match a:
            case ActivityScheduled():
                local = " (local)" if a.local else ""
                labels[f"a{a.activity_id}"] = f"{a.activity_type} #{a.activity_id}{local}"
                open_attempt[a.activity_id] = t
            case ActivityStarted() | ActivityRetried():
                open_attempt[a.activity_id] = t  # the attempt really began here
            case ActivityAttemptFailed() | ActivityFailed():
                begin = min(open_attempt.pop(a.activity_id, t), t)
                spans.append((f"a{a.activity_id}", "activity", begin, t, True))
            case ActivityCompleted() | ActivityCanceled():
                begin = min(open_attempt.pop(a.activity_id, t), t)
                spans.append((f"a{a.activity_id}", "activity", begin, t, False))
            case TimerStarted():
                labels[f"t{a.timer_id}"] = f"timer {a.timer_id}"
                timers[a.timer_id] = t
            case TimerFired() | TimerCanceled():
                begin = timers.pop(a.timer_id, t)
                spans.append((f"t{a.timer_id}", "timer", begin, t, False))
            case _:
                pass
    spans += [(f"a{i}", "activity", s, None, False) for i, s in open_attempt.items()]
    spans += [(f"t{i}", "timer", s, None, False) for i, s in timers.items()]
    start = events[0].time if events else now
    closed = bool(events) and isinstance(events[-1].attributes, CLOSES)
    end = events[-1].time if closed else now
    end = max([end, start + 1, *(s[3] or s[2] for s in spans)])
    lanes = list(dict.fromkeys(key for key, *_ in sorted(spans, key=lambda s: s[2])))
    span_ms = end - start
    bars = []
    for key, kind, begin, finish, failed in spans:
        stop = finish if finish is not None else end
        left = 100 * (begin - start) / span_ms
        width = max(0.3, 100 * (stop - begin) / span_ms)
        bars.append(
            Bar(lanes.index(key), labels.get(key, key), kind, begin, finish, failed,
                round(left, 3), round(min(width, 100 - left), 3))
        )  # fmt: skip
    return Timeline(start, end, [labels.get(k, k) for k in lanes], bars)


# ---- the full table -----------------------------------------------------------------------

# the table also leaves out the trace context and the recorded source location
_QUIET = SUMMARY_QUIET | {"trace", "source"}


@dataclass(frozen=True, slots=True)
class EventRow:
    event_id: int
    time: int
    type: str
    details: str
    failed: bool
    json: str


def event_rows(events: list[HistoryEvent], converter: DataConverter) -> list[EventRow]:
    """The full table's rows: ID, time, type, a one-line summary, the event as JSON."""
    rows = []
    for event in events:
        data = event_to_json(event, converter)
        rows.append(
            EventRow(
                event.event_id,
                event.time,
                data["type"],
                summary(data),
                "Failed" in data["type"] or data["type"] == "WorkflowBlocked",
                orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode(),
            )
        )
    return rows


def summary(data: dict[str, Any], limit: int = 160) -> str:
    """The attributes of an event (`event_to_json`) on one line (`event_summary`), instants
    in UTC, cut at `limit` characters."""
    return event_summary(data, instant=format_millis, limit=limit, quiet=_QUIET)
