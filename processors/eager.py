"""Eager dispatch: a worker that runs both halves hands the activity tasks its processor
schedules on its own task queue straight to its runner, and the runner's reports straight
back, instead of waiting for a trip through `tasks.<queue>` and another through `commands`.

The processor claims a task for its runner while it writes the task, if the runner has a
free slot: the record goes to `tasks.<queue>` as always (the history of what was dispatched,
for audit, export and replay), with a `CLAIM_HEADER` naming the runner. Once the transaction
that wrote it commits, the commit thread hands the claimed tasks to the runner
(`EagerRunner.start_eager`); a transaction that aborts hands nothing, and its records are
never seen by read_committed readers. Every runner that reads a claimed record skips it, so
an attempt runs once: by the runner that claimed it.

The runner's report of an eager attempt (started, completed, failed) is offered to the
processor (`EagerReports.offer`), which records it in its next batch with the same attempt
fence as a report read from `commands`: the run goes on without waiting for a round trip.
The runner also sends the report to `commands`, as it would without eager dispatch: that
copy keeps the outcome durable. A processor that dies before committing the in-process
report reads the copy after its restore (so a finished attempt is not run again); a
processor that no longer owns the run's partition leaves the report to its new owner, who
reads the copy; otherwise the copy arrives after the run moved on and is dropped as a
duplicate, its offset committed with the next transaction that writes something.

A worker that dies takes its claimed attempts with it, as it would take attempts it had read
from the tasks topic: the run's next owner sees the attempt in flight and its start-to-close
(or heartbeat) timeout schedules the next one. Starting the lost attempt again from the topic
record instead could run it twice before its timeout; it is not done.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from streams.tracing import Headers
from streams.wire.commands import CommandBody
from streams.wire.records import ActivityTask

CLAIM_HEADER = "everflow-claim"
"""Record header of a task claimed by the runner it names: other runners skip the record."""


@dataclass(frozen=True, slots=True)
class EagerTask:
    """A claimed task, handed to the runner once its transaction committed."""

    task: ActivityTask
    headers: Headers | None  # the record's trace context, if any


@dataclass(frozen=True, slots=True)
class Report:
    """A runner's report of an eager attempt, on its way to the processor."""

    partition: int
    workflow_id: str
    body: CommandBody  # StartActivity, CompleteActivity or FailActivity


class EagerRunner(Protocol):
    """What the processor needs of the runner it hands tasks to."""

    @property
    def task_queue(self) -> str: ...

    @property
    def runner_id(self) -> str: ...

    @property
    def eager_running(self) -> int:
        """Eager attempts started and not finished."""
        ...

    def free_slots(self) -> int:
        """Attempts it can start now (0 when stopping)."""
        ...

    def start_eager(self, tasks: list[EagerTask]) -> None:
        """Starts claimed tasks (called from the processor's commit thread)."""
        ...


class EagerReports:
    """The runner's reports of eager attempts, queued for the processor's next batch.

    `owned(partition)` tells whether the processor owns a partition now; a report for one it
    does not own is refused (its copy in `commands` reaches the partition's owner).
    """

    def __init__(self, owned: Callable[[int], bool]) -> None:
        self._owned = owned
        self._queue: queue.SimpleQueue[Report] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._open = True

    def offer(self, report: Report) -> bool:
        """Queues a report for the processor; False when it does not take it."""
        with self._lock:
            if not self._open or not self._owned(report.partition):
                return False
            self._queue.put(report)
            return True

    def take(self) -> list[Report]:
        """The reports queued since the last call (never blocks)."""
        out: list[Report] = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> list[Report]:
        """Takes no more reports; returns the ones still queued."""
        with self._lock:
            self._open = False
            return self.take()
