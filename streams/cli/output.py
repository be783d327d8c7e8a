"""How the `workflow` commands print: `-o text|json|jsonl`, `--time-format relative|iso|raw`,
`--color auto|always|never`, aligned tables, relative times and status colours.

Text is for people (tables, "3m ago", colours only on a terminal unless `--color always`);
`json` prints one document, `jsonl` one object per line (for lists and event streams), both
through orjson, so scripts read the same fields whichever command printed them.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import orjson

FORMATS = ("text", "json", "jsonl")
TIME_FORMATS = ("relative", "iso", "raw")
COLORS = ("auto", "always", "never")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RESET = "\x1b[0m"
_STATUS_COLORS = {  # ANSI SGR codes by status, upper-cased with underscores dropped
    "RUNNING": "36",  # cyan
    "COMPLETED": "32",  # green
    "FAILED": "31",  # red
    "TIMEDOUT": "31",
    "TERMINATED": "31",
    "CANCELED": "33",  # yellow
    "BLOCKED": "35",  # magenta
    "CONTINUEDASNEW": "2",  # dim
}


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """The output flags every `workflow` command takes."""
    parser.add_argument(
        "-o", "--output", choices=FORMATS, default="text", help="text (default), json or jsonl"
    )
    parser.add_argument(
        "--time-format",
        choices=TIME_FORMATS,
        default="relative",
        help="times in text output: relative ('3m ago', default), iso, or raw epoch ms",
    )
    parser.add_argument(
        "--color",
        choices=COLORS,
        default="auto",
        help="colour the text output: auto (only on a terminal, default), always, never",
    )


@dataclass(frozen=True, slots=True)
class Output:
    """Where and how a command prints; `Output.of(args)` reads the output flags."""

    format: str = "text"
    time_format: str = "relative"
    color: bool = False
    stream: TextIO | None = None  # None: sys.stdout at the time of printing
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    @classmethod
    def of(cls, args: argparse.Namespace, stream: TextIO | None = None) -> Output:
        out = stream or sys.stdout
        color = args.color == "always" or (args.color == "auto" and out.isatty())
        return cls(args.output, args.time_format, color, stream)

    @property
    def text(self) -> bool:
        return self.format == "text"

    def line(self, text: str = "") -> None:
        """One line of text, flushed (a follower sees it at once)."""
        out = self.stream or sys.stdout
        out.write((text if self.color else strip_ansi(text)) + "\n")
        out.flush()

    def json(self, value: Any) -> None:
        """`value` as one indented JSON document (json) or one compact line (text, jsonl)."""
        option = orjson.OPT_INDENT_2 if self.format == "json" else 0
        self.line(dumps(value, option))

    def time(self, value: datetime | int | None) -> str:
        """An instant (aware datetime or epoch ms) as the --time-format says; "" for None."""
        return format_time(value, self.time_format, self.now())

    def status(self, status: str) -> str:
        """A status, coloured when colours are on."""
        return paint(status, status_color(status)) if self.color else status

    def table(self, headers: Sequence[str] | None, rows: Iterable[Sequence[str]]) -> None:
        for text in table(headers, rows):
            self.line(text)


def dumps(value: Any, option: int = 0) -> str:
    """JSON text of `value` (datetimes as ISO 8601, timedeltas as seconds, others as str)."""
    return orjson.dumps(value, default=_plain, option=option | orjson.OPT_NON_STR_KEYS).decode()


def _plain(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def table(headers: Sequence[str] | None, rows: Iterable[Sequence[str]]) -> list[str]:
    """Lines of a table, each column as wide as its widest cell (colour codes not counted),
    two spaces apart, headers first (None: no header line); the last column is not padded."""
    body = [list(r) for r in rows]
    if headers is not None:
        body.insert(0, list(headers))
    if not body:
        return []
    widths = [0] * max(len(r) for r in body)
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], visible_len(cell))
    lines = []
    for row in body:
        cells = [pad(cell, widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return lines


def pad(cell: str, width: int) -> str:
    return cell + " " * (width - visible_len(cell))


def visible_len(text: str) -> int:
    return len(strip_ansi(text))


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def paint(text: str, sgr: str | None) -> str:
    return f"\x1b[{sgr}m{text}{_RESET}" if sgr else text


def status_color(status: str) -> str | None:
    """The colour of a status in either spelling (`TIMED_OUT` or `TimedOut`)."""
    return _STATUS_COLORS.get(status.replace("_", "").upper())


def format_time(value: datetime | int | None, time_format: str, now: datetime) -> str:
    """An instant as `relative` ("3m ago", "in 12s"), `iso` (UTC, seconds) or `raw` (ms)."""
    if value is None:
        return ""
    instant = value if isinstance(value, datetime) else datetime.fromtimestamp(value / 1000, UTC)
    if time_format == "raw":
        return str(int(instant.timestamp() * 1000))
    if time_format == "iso":
        return instant.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return relative(instant - now)


def relative(delta: timedelta) -> str:
    """A signed span as people say it: "3m ago", "in 12s", "just now" (under a second)."""
    seconds = delta.total_seconds()
    if abs(seconds) < 1:
        return "just now"
    span = short_duration(timedelta(seconds=abs(seconds)))
    return f"in {span}" if seconds > 0 else f"{span} ago"


def short_duration(span: timedelta) -> str:
    """A span in its largest unit, with the next one when it matters: 12s, 3m, 2h5m, 3d4h."""
    total = int(span.total_seconds())
    if total < 60:
        return f"{total}s"
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for i, (name, size) in enumerate(units):
        if total >= size:
            major, rest = divmod(total, size)
            minor_name, minor_size = units[i + 1]
            minor = rest // minor_size
            return (
                f"{major}{name}{minor}{minor_name}" if minor and name != "m" else f"{major}{name}"
            )
    return f"{total}s"  # unreachable: total >= 60 matched a unit
