"""The crash-loop breaker: a command that kills the worker process whenever it is processed
(a segfault in a library, `os._exit` in workflow code, the OOM killer) must not kill it
forever. A dead-letter needs a living process to write it, so the process leaves a note
instead: before each batch it writes which offsets of which partitions it is processing
(`Inflight`, a small file under the data dir, one per processor instance and deployment).

At the next assignment the note is read against the committed offsets: a batch whose offsets
were never committed did not finish, so the process died while processing it. Its
partition is then read one command per batch until past that batch (so the next note names
the one command), and a command at which the process died `CRASH_LIMIT` times is
dead-lettered, with the reason, when it is read again. The note is written with one
`pwrite` and no fsync: a process that dies leaves the page cache behind (a machine that
dies loses the note, and with it only the count).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CRASH_LIMIT = 3
_NOTE_BYTES = 4096  # a note is padded with spaces to this (or to the longest one written)


@dataclass(frozen=True, slots=True)
class Span:
    """Offsets first..last of one partition in one batch; `crashes` at `first`, when the
    span is that one offset, counted before this batch."""

    first: int
    last: int
    crashes: int = 0


@dataclass(slots=True)
class Breaker:
    """What the note says about the partitions this process owns (see the module doc)."""

    path: Path | None
    left: dict[int, Span] = field(default_factory=dict)  # the note the last process left
    crashes: dict[tuple[int, int], int] = field(default_factory=dict)  # (p, offset) -> count
    suspects: dict[int, int] = field(default_factory=dict)  # partition -> last suspect offset
    doomed: set[tuple[int, int]] = field(default_factory=set)  # (p, offset) to dead-letter
    _fd: int = -1
    _size: int = _NOTE_BYTES

    @classmethod
    def open(cls, path: Path | None) -> Breaker:
        """The breaker of the note at `path` (None: off), with what it says now."""
        breaker = cls(path)
        if path is not None:
            breaker.left = _read(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            breaker._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        return breaker

    def assigned(self, partition: int, committed: int) -> None:
        """Weighs the note for a partition just assigned, whose committed offset is
        `committed`: a span not committed means the process died processing it."""
        span = self.left.pop(partition, None)
        if span is None or committed > span.first:
            return  # no note, or its batch committed: not a crash
        self.suspects[partition] = max(self.suspects.get(partition, -1), span.last)
        if span.first != span.last:
            log.warning(
                "the worker process died while processing partition=%d offsets %d..%d; "
                "reading them one at a time to find the command",
                partition, span.first, span.last,
            )  # fmt: skip
            return
        count = span.crashes + 1
        self.crashes[(partition, span.first)] = count
        log.error(
            "the worker process died while processing partition=%d offset=%d (%d of %d)",
            partition, span.first, count, CRASH_LIMIT,
        )  # fmt: skip
        if count >= CRASH_LIMIT:
            self.doomed.add((partition, span.first))

    @property
    def stepping(self) -> bool:
        """Whether a partition is read one command per batch (a suspect is not past yet)."""
        return bool(self.suspects)

    def processing(self, spans: dict[int, tuple[int, int]]) -> None:
        """Notes the offsets (first, last) per partition this batch processes."""
        if self._fd < 0:
            return
        note = {
            str(p): [first, last, self.crashes.get((p, first), 0) if first == last else 0]
            for p, (first, last) in spans.items()
        }
        data = json.dumps(note, separators=(",", ":")).encode()
        self._size = max(self._size, len(data))  # a longer note once: pad to it from then on
        os.pwrite(self._fd, data.ljust(self._size), 0)

    def passed(self, partition: int, offset: int) -> None:
        """A command of the partition was processed: past the last suspect, stepping ends."""
        last = self.suspects.get(partition)
        if last is not None and offset >= last:
            del self.suspects[partition]

    def reason(self, partition: int, offset: int) -> str | None:
        """Why to dead-letter the command at `offset` unread, or None to process it."""
        if (partition, offset) not in self.doomed:
            return None
        self.doomed.discard((partition, offset))
        return (
            f"the worker process died {self.crashes.get((partition, offset), CRASH_LIMIT)} "
            f"times while processing this command (partition {partition} offset {offset}); "
            "it is dead-lettered so that the partition goes on (see the workers' logs for "
            "how they died)"
        )

    def revoked(self, partition: int) -> None:
        self.suspects.pop(partition, None)
        self.doomed = {(p, o) for p, o in self.doomed if p != partition}

    def close(self) -> None:
        """A clean stop: nothing is in flight, the note is emptied."""
        if self._fd >= 0:
            os.pwrite(self._fd, b"{}".ljust(self._size), 0)
            os.close(self._fd)
            self._fd = -1


def _read(path: Path) -> dict[int, Span]:
    try:
        raw = path.read_bytes().strip()
        note = json.loads(raw) if raw else {}
        return {int(p): Span(int(v[0]), int(v[1]), int(v[2])) for p, v in note.items()}
    except FileNotFoundError:
        return {}
    except (ValueError, TypeError, IndexError) as e:  # a note cut short: nothing to go by
        log.warning("ignoring an unreadable in-flight note %s: %s", path, e)
        return {}
