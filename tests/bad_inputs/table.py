"""The bad-input table: what each test of `tests/bad_inputs` saw, printed at the end."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path


class Outcome(enum.Enum):
    """What became of a bad input. The first four are the issue's three outcomes, with a
    run's end split in two; the last two are for input that is harmless by design."""

    DEAD_LETTERED = "dead-lettered"  # to dead-letters with its reason, in the offset's txn
    CLIENT_ERROR = "client error"  # a named error at the client; nothing was sent
    RUN_BLOCKED = "run blocked"  # the run waits, with the reason shown; others go on
    RUN_FAILED = "run failed"  # the run closed as failed, with the reason
    REJECTED = "rejected"  # refused with an error reply to the sender; no history written
    IGNORED = "ignored"  # a no-op by design (a duplicate, a stale report), counted or logged


@dataclass(frozen=True, slots=True)
class Row:
    number: int  # the catalogue's row number (reliability.md §2), 0 for additions
    kind: str
    outcome: Outcome
    reason: str  # the reason text as the user sees it (dead letter header, error, status)
    test: str


ROWS: list[Row] = []

REPORT = Path(__file__).resolve().parent.parent / "reports" / "bad-inputs.md"


def render(rows: list[Row]) -> str:
    """The table as Markdown, in catalogue order."""
    lines = [
        "| # | bad input | outcome | reason text |",
        "|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: (r.number or 999, r.kind)):
        reason = " ".join(row.reason.split()).replace("|", "\\|")
        if len(reason) > 160:
            reason = reason[:157] + "..."
        number = str(row.number) if row.number else "+"
        lines.append(f"| {number} | {row.kind} | {row.outcome.value} | {reason} |")
    return "\n".join(lines) + "\n"
