"""What a run's parts (activities, timers, children) may see and do of the run they belong
to: its identity, whether it is closed, and its history — append an event, or resolve one
the code waits on (append it and let the code go on)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from streams.wire.events import EventAttributes, HistoryEvent

if TYPE_CHECKING:
    from processors.run.effects import Effects


class RunLog(Protocol):
    """A run as its parts see it (`processors.run.state.Run` is one)."""

    @property
    def workflow_id(self) -> str: ...

    @property
    def run_id(self) -> str: ...

    @property
    def workflow_type(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    @property
    def trace(self) -> dict[str, str]:
        """The trace context of the run's RunWorkflow span (empty: not traced)."""
        ...

    def append(self, attrs: EventAttributes, now: int, fx: Effects) -> HistoryEvent:
        """Records an event and folds it into the run's state."""
        ...

    def resolve(self, attrs: EventAttributes, now: int, fx: Effects) -> None:
        """Records an event the code waits on, and lets the code go on."""
        ...
