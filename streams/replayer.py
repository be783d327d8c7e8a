"""Replay recorded histories against the workflow code you have now, before you deploy it.

    from streams import Replayer
    results = Replayer(workflows=[MoneyTransferWorkflow]).replay_all(histories)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]

Each history is one run's events (from `handle.fetch_history()`, `everflow history export`,
or the history topic). A run whose replayed code issues other commands than its history
recorded, or more than it recorded, is reported as non-deterministic with the event and
the line of code; nothing is written anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from processors.run import replay_history
from processors.workflow_code.registry import Registry
from streams.encryption import configured_converter
from streams.payload import DataConverter
from streams.schedules.scheduler import ScheduleWorkflow
from streams.wire.events import HistoryEvent


@dataclass(frozen=True, slots=True)
class ReplayResult:
    workflow_id: str
    run_id: str
    workflow_type: str
    events: int
    error: str | None = None  # None: the code matches the history

    @property
    def ok(self) -> bool:
        return self.error is None


class Replayer:
    """Runs workflow code against recorded histories and reports mismatches."""

    def __init__(self, workflows: Sequence[type], converter: DataConverter | None = None) -> None:
        # schedules' histories replay too (`streams.schedules`)
        hosted = [*workflows, ScheduleWorkflow]
        self.registry = Registry(hosted, (), converter or configured_converter())

    def replay(self, history: Sequence[HistoryEvent]) -> ReplayResult:
        """Replays one run's events (in event ID order)."""
        if not history:
            raise ValueError("an empty history has nothing to replay")
        first = history[0]
        outcome = replay_history(history, self.registry)
        return ReplayResult(
            first.workflow_id, first.run_id, outcome.workflow_type, len(history), outcome.error
        )

    def replay_all(self, histories: Iterable[Sequence[HistoryEvent]]) -> list[ReplayResult]:
        return [self.replay(h) for h in histories]
