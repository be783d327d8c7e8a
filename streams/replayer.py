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

from streams.payload import DataConverter
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
        from processors.workflow_code.registry import Registry

        self.registry = Registry(workflows, (), converter)

    def replay(self, history: Sequence[HistoryEvent]) -> ReplayResult:
        """Replays one run's events (in event ID order)."""
        from processors.run.state import Run
        from processors.workflow_code.registry import UnknownWorkflowError
        from processors.workflow_code.replay import NonDeterminismError

        if not history:
            raise ValueError("an empty history has nothing to replay")
        first = history[0]
        run = Run(first.workflow_id, first.run_id, 0)
        for event in history:
            run.apply(event)
        result = ReplayResult(first.workflow_id, first.run_id, run.workflow_type, len(history))
        try:
            step = run._replay(self.registry)
        except (NonDeterminismError, UnknownWorkflowError) as e:
            return _failed(result, str(e))
        if step.blocked is not None and run.blocked is None:
            return _failed(result, f"the code raised on replay: {step.blocked.message}")
        if step.decisions and run.blocked is None:
            extra = ", ".join(type(c).__name__ for c in step.decisions)
            return _failed(
                result,
                f"workflow {run.workflow_id!r} replayed to the end of its history (event "
                f"{len(history)}) and then issued commands the history does not have: {extra}",
            )
        return result

    def replay_all(self, histories: Iterable[Sequence[HistoryEvent]]) -> list[ReplayResult]:
        return [self.replay(h) for h in histories]


def _failed(result: ReplayResult, error: str) -> ReplayResult:
    return ReplayResult(
        result.workflow_id, result.run_id, result.workflow_type, result.events, error
    )
